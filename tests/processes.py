"""Start real FlashBid processes (daphne, deploy/Procfile's web line, Celery worker, beat) against
the test database and the test Redis database, and stop them reliably."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

from bench import ports
from tests.xdist_env import worker_index

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


# The ports free_port hands out: a block of its own for each test process (pytest-xdist, up to
# four), below the kernel's ephemeral range (32768 up, where every client socket takes its port),
# between the test Redis Clusters' ports (tests/redis_cluster.py: 7101 to 9000) and their bus ports
# (17101 up). A port the kernel picks for port 0 is free only until someone else asks: two test
# processes, or two calls for one scale-out, got the same one and a server failed to bind it.
_PORT_BLOCK = 1_500
_FIRST_PORT = 11_000
_next_port = 0


def free_port() -> int:
    """A loopback port free now, not handed out before by this process (until its block of
    ports wraps) and never by another test process."""
    global _next_port
    first = _FIRST_PORT + _PORT_BLOCK * worker_index()
    for _ in range(_PORT_BLOCK):
        port = first + _next_port
        _next_port = (_next_port + 1) % _PORT_BLOCK
        if ports.port_free(port):
            return port
    raise RuntimeError(f"no free port in {first}..{first + _PORT_BLOCK - 1}")


def test_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: the test database (as created by pytest-django) and
    the test's Redis (the engine's, maybe a cluster, and the plain one of the broker, channel
    layer and cache)."""
    db = settings.DATABASES["default"]
    env = dict(os.environ)
    env.update({
        "DJANGO_SETTINGS_MODULE": "flashbid.settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{connection.settings_dict['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "REDIS_CLUSTER": "true" if settings.REDIS_CLUSTER else "false",
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CHANNEL_LAYER_URL": settings.CHANNEL_LAYER_URL,
        "CACHE_URL": settings.CACHE_URL,
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


class Process:
    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self._terminated = False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.log()[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"{self.name}: no {text!r} within {timeout}s:\n{self.log()[-3000:]}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=30)

    def terminate(self) -> None:
        """SIGTERM to its process group, once; `stop` then waits for it."""
        if self.proc.poll() is None and not self._terminated:
            self._terminated = True
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        self.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()
        self._log.close()


def stop_all(running: list[Process]) -> None:
    """Stop these processes with their shutdowns overlapping: SIGTERM to every one, then wait for
    each (a Celery worker's warm shutdown, a web server's graceful one: a second or two each,
    which one after the other added up over the suite)."""
    for process in running:
        process.terminate()
    for process in running:
        process.stop()


def celery_worker(log_dir: Path, name: str = "worker", **env: str) -> Process:
    return Process(name, [str(BIN / "celery"), "-A", "flashbid", "worker", "--pool=solo", "--loglevel=INFO",
                          "--without-gossip", "--without-mingle", "-n", f"{name}@%h"],
                   test_env(**env), log_dir)


def celery_beat(log_dir: Path, name: str = "beat", **env: str) -> Process:
    schedule = log_dir / f"{name}-schedule"
    return Process(name, [str(BIN / "celery"), "-A", "flashbid", "beat", "--loglevel=INFO", "-s", str(schedule)],
                   test_env(**env), log_dir)


def redis_server(log_dir: Path, port: int) -> Process:
    """A Redis server of one test's own (no persistence): for tests that change or count what is
    server-wide (the script cache, INFO's counters), which the suite's Redis shares with the other
    test process (deploy/test.sh runs two)."""
    process = Process("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no"], dict(os.environ), log_dir)
    wait_for_port(port, process)
    return process


def daphne(log_dir: Path, port: int, name: str = "daphne", *, wait: bool = True, **env: str) -> Process:
    """daphne on `port`; returns once it listens, or at once with wait=False (then wait_for_port:
    several started at once boot side by side)."""
    process = Process(name, [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "flashbid.asgi:application"],
                      test_env(**env), log_dir)
    if wait:
        wait_for_port(port, process)
    return process


def procfile_web(log_dir: Path, port: int, name: str = "web", **env: str) -> Process:
    """The `web` line of deploy/Procfile, as `make up` runs it (through bash, for its ${VAR:-default}s),
    on `port`; FLASHBID_WEB_PROCESSES in `env` sets its process count."""
    from bench.run import procfile_web_line

    process = Process(name, ["bash", "-c", "exec " + procfile_web_line()],
                      test_env(FLASHBID_WEB_PORT=str(port), **env), log_dir)
    wait_for_port(port, process)
    return process


def wait_for_port(port: int, process: Process, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.proc.poll() is not None:
            raise RuntimeError(f"{process.name} exited:\n{process.log()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{process.name} did not listen on {port}")


def wait_until(predicate, timeout: float, interval: float = 0.2, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{message} not met within {timeout}s")
