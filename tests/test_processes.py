"""The tests' own helper for the processes they start: the ports it hands out."""

import socket

from tests import processes
from tests.xdist_env import worker_index


def test_free_ports_are_distinct_in_this_test_process_block_and_skip_a_port_in_use():
    first = processes._FIRST_PORT + processes._PORT_BLOCK * worker_index()
    ports = [processes.free_port() for _ in range(10)]
    assert len(set(ports)) == 10
    assert all(first <= port < first + processes._PORT_BLOCK for port in ports)
    assert max(ports) < 17_000  # under the test Redis Clusters' bus ports and the kernel's ephemeral range

    # A port someone listens on is not handed out again, even once the block has wrapped.
    with socket.socket() as taken:
        port = processes.free_port()
        taken.bind(("127.0.0.1", port))
        taken.listen()
        assert port not in {processes.free_port() for _ in range(processes._PORT_BLOCK)}
