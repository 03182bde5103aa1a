"""A Redis Cluster of 3 masters for the tests: Debian's redis-server on spare loopback ports (each
with its cluster bus port, +10000, free too), no persistence, joined by deploy/redis-cluster.sh.
Started once per test session (conftest.py: `redis_cluster_url`), stopped at its end."""

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench import ports
from tests.xdist_env import worker_index

ROOT = Path(__file__).resolve().parent.parent
MASTERS = 3
FIRST_PORT = 7101  # searched upwards from here for free ports


def spare_ports(count: int, first: int = FIRST_PORT) -> list[int]:
    """`count` ports from `first` up (below 9000) whose cluster bus ports (+10000) are free too;
    each test process (pytest-xdist) searches from a start of its own, 400 ports apart."""
    return ports.spare_ports(count, first=first + 400 * worker_index(), last=9000)


@dataclass
class LocalCluster:
    directory: Path
    ports: list[int]
    processes: list[subprocess.Popen]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    @classmethod
    def start(cls, directory: Path) -> "LocalCluster":
        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError("redis-server is not installed (Debian: apt install redis-server), "
                               "or run with --redis-cluster=off")
        ports = spare_ports(MASTERS)
        cluster = cls(directory, ports, [])
        try:
            for port in ports:
                node_dir = directory / str(port)
                node_dir.mkdir(parents=True, exist_ok=True)
                with open(node_dir / "redis.log", "wb") as log:
                    cluster.processes.append(subprocess.Popen(
                        [server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                         "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
                         "--dir", str(node_dir), "--save", "", "--appendonly", "no", "--daemonize", "no"],
                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            created = subprocess.run([str(ROOT / "deploy" / "redis-cluster.sh"), "create",
                                      *(f"127.0.0.1:{port}" for port in ports)],
                                     capture_output=True, text=True, timeout=90)
            if created.returncode:
                raise RuntimeError(f"the test Redis Cluster did not form:\n{created.stdout}\n{created.stderr}")
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
