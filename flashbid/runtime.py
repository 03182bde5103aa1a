"""The runtime folder of a checkout (FLASHBID_RUNTIME_DIR, default var/, ignored by git): what its
processes generate for themselves and must share, such as the development SECRET_KEY.

Imported by the settings module, so it imports nothing from Django.
"""

import os
import secrets
import stat
import tempfile
from pathlib import Path


class RuntimeSecretError(Exception):
    """A generated secret that cannot be created or trusted."""


def shared_secret(path: Path, *, nbytes: int = 50) -> str:
    """The secret kept in `path`, generated there first if it is missing.

    Every process of one checkout (daphne, the worker, beat, manage.py, the tests) must sign with
    the same key, and they may all start at once: the value is written whole to a private temporary
    file (mkstemp: mode 0600) and then hard-linked into place, which fails if another process got
    there first. Whoever loses the race reads the winner's value; nobody ever reads a half-written
    file. A file others may read is refused rather than trusted."""
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise RuntimeSecretError(f"cannot create {path}: {exc}") from exc
    try:
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(nbytes))
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race: its value is the one
    finally:
        os.unlink(tmp)
    return _read(path)


def _read(path: Path) -> str:
    with open(path) as file:
        mode = os.fstat(file.fileno()).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise RuntimeSecretError(f"{path} is readable by others (mode {stat.filemode(mode)}): chmod 600 it")
        value = file.read().strip()
    if not value:
        raise RuntimeSecretError(f"{path} is empty: delete it and a new one is generated")
    return value
