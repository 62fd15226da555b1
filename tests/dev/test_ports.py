"""voxplane/dev/ports.py: `port_free` answers as a server's listener would bind: a listening port
is taken, and a stopped server's port is free again at once, even while its last connections
wait out TIME_WAIT (`make cluster-down && make demo` restarts Prometheus on its fixed port).
Picked ports lie below the kernel's ephemeral range, where no outgoing connection takes one before
its server starts (a CI run's dev cluster once lost its Prometheus port that way), each test lane
picks from its own share of them (another run lost a KEDA port to the other lane), and the dev
cluster's own ports keep clear of the one a region's Prometheus URL names."""

from __future__ import annotations

import socket

import pytest

from voxplane.dev.ports import FIRST_PICKED, LOOPBACK, SHARE_VARIABLE, Ports, free_ports, picked_range, port_free, \
    share_of


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


def _ephemeral_start() -> int:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        return int(f.read().split()[0])


def test_picked_ports_are_distinct_free_and_below_the_kernels_ephemeral_range() -> None:
    # An ephemeral port may go to any outgoing connection between its pick and its server's start.
    for kind in ("tcp", "udp"):
        ports = free_ports(40, kind)
        assert len(set(ports)) == 40
        assert all(FIRST_PICKED <= p < _ephemeral_start() for p in ports), ports
        assert all(port_free(p, kind) for p in ports)


def test_a_picked_port_is_never_one_excluded() -> None:
    picked = picked_range()
    middle = picked.start + len(picked) // 2
    ports = free_ports(20, exclude=set(range(picked.start, middle)))
    assert all(middle <= p < picked.stop for p in ports), ports


def test_each_share_of_the_range_is_its_own_and_together_they_leave_none_twice() -> None:
    whole = range(FIRST_PICKED, _ephemeral_start())
    parts = [share_of(whole, f"{i}/3") for i in range(3)]
    assert all(len(p) == len(whole) // 3 for p in parts)
    assert sum(len(set(p)) for p in parts) == len(set().union(*parts)), "the shares overlap"
    assert share_of(whole, "") == whole
    for bad in ("2", "a/b", "3/3", "-1/2", "1/0"):
        with pytest.raises(ValueError, match=SHARE_VARIABLE):
            share_of(whole, bad)


def test_a_process_with_a_share_picks_only_from_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # The test lanes pick at the same time: each from its own share, never the other's.
    monkeypatch.setenv(SHARE_VARIABLE, "1/2")
    mine = share_of(range(FIRST_PICKED, _ephemeral_start()), "1/2")
    assert picked_range() == mine
    for kind in ("tcp", "udp"):
        assert all(p in mine for p in free_ports(40, kind))


def test_a_restarted_cluster_keeps_its_ports_unless_the_regions_prometheus_port_is_one_of_them() -> None:
    previous = Ports.pick(None).__dict__
    assert Ports.pick(previous) == Ports(**previous)
    kept = Ports.pick(previous, prometheus=previous["prometheus"])
    assert kept == Ports(**previous)
    clash = Ports.pick(previous, prometheus=previous["apiserver"])
    assert clash.prometheus == previous["apiserver"]
    others = [v for k, v in clash.__dict__.items() if k != "prometheus"]
    assert previous["apiserver"] not in others and len(set(others)) == len(others)
