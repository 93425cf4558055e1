"""A private pcscd with its own virtual reader (vsmartcard-vpcd), for tests and the simulator's chip slot.

It never meets the machine's pcscd nor another suite's: it runs in a mount namespace of its own (`unshare -m`)
where a temporary folder is bind-mounted on /run/pcscd (socket and pid file) and an empty one on pcscd's USB
drivers folder (so it never claims a real reader another pcscd serves), with its own reader.conf whose vpcd slots
listen on a free port pair. PC/SC clients find it through PCSCLITE_CSOCK_NAME (pcsc-lite reads it once per process,
at the first call), the simulated card through the port: `environ()` gives both.
"""

from __future__ import annotations

import errno
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FRIENDLY_NAME = "hwsim chip slot"
READER = f"{FRIENDLY_NAME} 00 00"  # vpcd's first slot; the second ("... 00 01") listens on port + 1
VPCD_DRIVERS = (
    "/usr/lib/pcsc/drivers/serial/libifdvpcd.so",  # Debian, Raspberry Pi OS
    "/usr/lib64/pcsc/drivers/serial/libifdvpcd.so",
    "/usr/local/lib/pcsc/drivers/serial/libifdvpcd.so",  # built from source
)
USB_DRIVERS = "/usr/lib/pcsc/drivers"  # where pcscd 1.9 looks for USB reader bundles (compiled in)
START_TIMEOUT = 10.0  # seconds for pcscd to open its socket
SOCKET_ENV = "PCSCLITE_CSOCK_NAME"
PORT_ENV = "HWSIM_VPCD_PORT"  # where the simulator's chip slot finds vpcd (default: Debian's 35963)
DEFAULT_VPCD_PORT = 0x8C7B


class PcscdUnavailable(RuntimeError):
    """This machine cannot run a private pcscd (no pcscd, no vpcd driver, or no right to make a mount namespace)."""


def vpcd_port() -> int:
    """The vpcd port the simulated card connects to: a private pcscd's (HWSIM_VPCD_PORT), else Debian's default."""
    return int(os.environ.get(PORT_ENV, DEFAULT_VPCD_PORT))


def _vpcd_driver() -> str:
    for path in VPCD_DRIVERS:
        if os.path.exists(path):
            return path
    raise PcscdUnavailable("the vpcd driver is not installed (Debian: apt-get install vsmartcard-vpcd)")


def _bound(port: int) -> socket.socket | None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("0.0.0.0", port))  # vpcd listens on every interface
    except OSError:
        s.close()
        return None
    return s


def _free_port_pair() -> int:
    """A port p with p and p + 1 both free (vpcd's two slots)."""
    for _ in range(50):
        first = _bound(0)
        if first is None:
            continue
        port = first.getsockname()[1]
        second = _bound(port + 1) if port < 65535 else None
        first.close()
        if second is not None:
            second.close()
            return port
    raise PcscdUnavailable("no free pair of TCP ports for vpcd")


def _listening_inodes(port: int) -> set[str]:
    """The inodes of the TCP sockets listening on `port` in this network namespace (/proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                found.add(f"socket:[{f[9]}]")
    return found


def _listens(pid: int, port: int) -> bool:
    """Whether process `pid` itself listens on `port`: another suite's vpcd on this machine may hold the port
    ours was given (ports are chosen by binding and letting go), and then our card would reach theirs."""
    wanted = _listening_inodes(port)
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                return True
        except OSError:
            continue
    return False


class PrivatePcscd:
    """`pcscd -f` in its own mount namespace, with one vpcd reader (two slots) on a free port pair."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="hwsim-pcscd-"))
        self.socket = self.dir / "pcscd.comm"
        self.port = 0  # vpcd's first slot, once started
        self.reader = READER
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PrivatePcscd:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def environ(self) -> dict[str, str]:
        """What a PC/SC client (PCSCLITE_CSOCK_NAME) and the simulated card (HWSIM_VPCD_PORT) need to find it."""
        return {SOCKET_ENV: str(self.socket), PORT_ENV: str(self.port)}

    @property
    def running(self) -> bool:
        """pcscd is up (started and not stopped, and it did not die)."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start pcscd (again, after stop(), on the same socket path and ports); returns once its socket is open."""
        if self.running:
            return
        for name in ("pcscd.comm", "pcscd.pid"):  # left by a pcscd that was killed
            (self.dir / name).unlink(missing_ok=True)
        pcscd, unshare = shutil.which("pcscd") or "/usr/sbin/pcscd", shutil.which("unshare")
        if not os.path.exists(pcscd) or unshare is None:
            raise PcscdUnavailable("pcscd or unshare is missing (Debian: apt-get install pcscd util-linux)")
        driver = self.dir / "libifdvpcd.so"
        if not driver.exists():
            shutil.copyfile(_vpcd_driver(), driver)  # outside the drivers folder that gets hidden
        (self.dir / "no-usb-drivers").mkdir(exist_ok=True)
        for _attempt in range(3):
            if not self.port:
                self.port = _free_port_pair()
            self._spawn(unshare, pcscd, driver)
            if self._proc is not None and _listens(self._proc.pid, self.port):
                return
            log.warning("pcscd: vpcd is not the one listening on port %d; trying other ports", self.port)
            self.stop()
            self.port = 0
        raise PcscdUnavailable(f"pcscd started but vpcd never listened; see {self.dir / 'pcscd.log'}")

    def _spawn(self, unshare: str, pcscd: str, driver: Path) -> None:
        conf = self.dir / "reader.conf"
        conf.write_text(
            f'FRIENDLYNAME "{FRIENDLY_NAME}"\n'
            f"DEVICENAME /dev/null:{self.port:#x}\n"
            f"LIBPATH {driver}\n"
            f"CHANNELID {self.port:#x}\n",
            encoding="ascii",
        )
        if not os.path.isdir("/run/pcscd"):
            if os.geteuid() != 0:
                raise PcscdUnavailable("/run/pcscd is missing (it comes with Debian's pcscd package)")
            os.makedirs("/run/pcscd")
        mounts = f"mount --bind {shlex.quote(str(self.dir))} /run/pcscd"
        if os.path.isdir(USB_DRIVERS):
            mounts += f" && mount --bind {shlex.quote(str(self.dir / 'no-usb-drivers'))} {USB_DRIVERS}"
        # -r: a user namespace where root is not at hand (a developer's own account); as root, none is needed
        command = [unshare, "-m"] + ([] if os.geteuid() == 0 else ["-r"])
        command += ["sh", "-c", f'{mounts} && exec "$0" -f -c "$1"', pcscd, str(conf)]
        env = {**os.environ, "PCSCLITE_HP_DROPDIR": str(self.dir / "no-usb-drivers")}  # pcscd >= 2.0 reads it
        with open(self.dir / "pcscd.log", "ab") as out:
            self._proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        deadline = time.monotonic() + START_TIMEOUT
        # pcscd starts the reader.conf readers before it opens its socket: once the socket is there, vpcd listens
        while not self.socket.exists():
            if self._proc.poll() is not None:
                self._proc = None
                tail = (self.dir / "pcscd.log").read_text(errors="replace")[-600:]
                raise PcscdUnavailable(f"pcscd exited at start (namespaces or mounts not allowed here?):\n{tail}")
            if time.monotonic() > deadline:
                self.stop()
                raise PcscdUnavailable(f"pcscd did not open its socket in {START_TIMEOUT} s")
            time.sleep(0.005)  # ready in ~3 ms: a short bounded wait for a daemon's start, not a device poll

    def stop(self) -> None:
        """Stop pcscd (SIGTERM, then SIGKILL) and reap it; its stale socket and pid file are removed."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for name in ("pcscd.comm", "pcscd.pid"):
            try:
                (self.dir / name).unlink()
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise

    def close(self) -> None:
        """Stop pcscd and remove its folder."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
