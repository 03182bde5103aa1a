"""The Lua script registry: each script registered once per Redis client.

redis-py's Script runs EVALSHA and falls back to EVAL when Redis answers NOSCRIPT (after a restart
or SCRIPT FLUSH), so no caller ever sees that. The apps own their scripts (files next to their
code) and hand the source in; this module only keeps the registrations."""

from pathlib import Path

_scripts: dict[tuple[int, str], object] = {}


def lua_sources(directory: Path, *names: str) -> dict[str, str]:
    """{name: source} of `<directory>/<name>.lua` for each name, read once at import."""
    return {name: (directory / f"{name}.lua").read_text() for name in names}


def script(client, name: str, source: str):
    """The registered script `name` (with `source`) for this client: one registration per client."""
    cache_key = (id(client), name)
    registered = _scripts.get(cache_key)
    if registered is None:
        registered = _scripts[cache_key] = client.register_script(source)
    return registered
