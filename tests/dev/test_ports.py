"""`port_free` (voxplane/dev/ports.py) answers as a server's listener would bind: a listening port
is taken, and a stopped server's port is free again at once, even while its last connections
wait out TIME_WAIT (`make cluster-down && make demo` restarts Prometheus on its fixed port)."""

from __future__ import annotations

import socket

from voxplane.dev.ports import LOOPBACK, port_free


def test_a_listening_port_is_taken_and_free_once_its_server_stopped_despite_time_wait() -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((LOOPBACK, 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection((LOOPBACK, port))
    accepted, _ = server.accept()
    assert not port_free(port)
    # The server closes first: its side of the connection, on `port`, waits in TIME_WAIT.
    accepted.close()
    client.recv(1)
    client.close()
    server.close()
    plain = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        plain.bind((LOOPBACK, port))
        waited = False
    except OSError:
        waited = True  # the TIME_WAIT this test is about is there
    finally:
        plain.close()
    assert waited
    assert port_free(port)
