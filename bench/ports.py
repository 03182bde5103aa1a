"""Free loopback ports for the processes the benchmarks, the chaos run and the tests start."""

import random
import socket


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def spare_ports(count: int, *, first: int | None = None, last: int = 65_535 - 10_000, bus: bool = True) -> list[int]:
    """`count` free ports from `first` up (a random start from 20000 when None), each with its
    Redis Cluster bus port (+10000) free too unless `bus` is false."""
    ports, port = [], random.randint(20_000, 40_000) if first is None else first
    while len(ports) < count:
        if port > last:
            raise RuntimeError(f"no {count} spare ports between {first} and {last}")
        if port_free(port) and (not bus or port_free(port + 10_000)):
            ports.append(port)
        port += 1
    return ports
