"""Under systemd: READY=1 once the terminal can sell, WATCHDOG=1 from the loop while it turns (and none while it
stalls), STOPPING=1 at a clean stop — over a real unix datagram socket, as systemd listens."""

from __future__ import annotations

import socket
import threading
import time

from conftest import sim_config
from firmware.shell import watchdog


def listen(path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    return sock


def received(sock) -> list[str]:
    out = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(4096).decode())
    except BlockingIOError:
        pass
    sock.settimeout(5)
    return out


def test_environment_decides():
    assert watchdog.from_environment({}) is None
    n = watchdog.from_environment({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "10000000"})
    assert n is not None and n.interval == 5.0
    n.close()
    n = watchdog.from_environment({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"})
    assert n is not None and n.interval == 0.0  # the watchdog is for another process
    n.close()
    n = watchdog.from_environment({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "١٠"})  # not ASCII digits
    assert n is not None and n.interval == 0.0
    n.close()


def test_a_dead_socket_is_not_fatal(tmp_path):
    n = watchdog.Notifier(str(tmp_path / "nobody-listens"))
    n.notify("READY=1")  # logged once, not raised
    n.close()


def test_ready_pings_and_a_stalled_loop(tmp_path, monkeypatch):
    from hwsim import Simulator

    sock = listen(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # a ping every 0.1 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    sim = Simulator(tmp_path / "data", sim_config(host=2.0))
    sim.start()
    try:
        first = sock.recv(4096).decode()
        assert first.startswith("READY=1") and "SIM00001" in first
        assert sock.recv(4096) == b"WATCHDOG=1"
        stalled, resumed = threading.Event(), threading.Event()

        def hang() -> None:  # the loop hangs for a second
            stalled.set()
            time.sleep(1.0)
            resumed.set()

        sim._loop.call_soon_threadsafe(hang)
        assert stalled.wait(5)
        received(sock)  # what was sent before the stall
        time.sleep(0.5)
        assert received(sock) == [] and not resumed.is_set()  # no pings while it is stuck
        assert resumed.wait(5)
        assert sock.recv(4096) == b"WATCHDOG=1"  # and they resume when it turns again
    finally:
        sim.close()
    assert "STOPPING=1" in received(sock)
    sock.close()
