"""`countertop doctor`: what the board has and whether the terminal can work on it — devices, host and wallet
reachability (a TLS handshake), clock synchronisation, keys, disk, configuration — and the config lines to use.

Read-only: nothing is opened for writing, no device is sent a byte (print-test and read-test do that, one device
at a time). The board is reached through `Probes`, so the tests can put the simulator's devices in its place."""

from __future__ import annotations

import ctypes
import logging
import os
import re
import shutil
import socket
import ssl
import subprocess
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from firmware.config import Config, InputDeviceConfig
from firmware.shell import hardware
from firmware.shell.hardware import InputInfo, UsbDevice

log = logging.getLogger(__name__)

STATUSES = ("ok", "info", "warn", "fail")
DISK_REFUSED = 1024 * 1024  # the terminal takes no new sale below this much free space
DISK_LOW = 100 * 1024 * 1024
CERT_WARN_DAYS = 30
LOG_TAIL = 4 * 1024 * 1024  # how much of the end of the log is searched for the last sign-on
SIGNED_ON = re.compile(r"signed on: working keys for (\d{4}-\d{2}-\d{2}) \(PIN KCV (\w+), MAC KCV (\w+)\)")
TIME_ERROR, STA_UNSYNC = 5, 0x0040  # adjtimex(2): the clock is not synchronised

Runner = Callable[[list[str]], tuple[int, str]]  # (exit status, standard output); 127 when there is no such command


def run_command(argv: list[str]) -> tuple[int, str]:
    """Run a read-only query command; (127, "") when it is not installed."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False)
    except FileNotFoundError:
        return 127, ""
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 126, str(exc)
    return done.returncode, done.stdout


class _Timex(ctypes.Structure):
    """struct timex (linux/timex.h) with room to spare after the fields read here."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("rest", ctypes.c_long * 64),
    ]


def kernel_clock() -> tuple[int, int, int] | None:
    """(adjtimex state, status flags, maximum error in µs) from the kernel, read-only (modes 0); None off Linux."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        timex = _Timex()
        state = int(libc.adjtimex(ctypes.byref(timex)))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state, int(timex.status), int(timex.maxerror)


@dataclass(frozen=True)
class Probes:
    """Where the doctor looks: the real board by default; the tests put the simulator's devices here."""

    sys_root: Path = Path("/sys")
    dev_root: Path = Path("/dev")
    inputs: Callable[[Path], list[InputInfo]] = hardware.board_inputs
    pcsc: Callable[[], tuple[list[str], str]] = hardware.pcsc_readers
    run: Runner = run_command
    kernel_clock: Callable[[], tuple[int, int, int] | None] = kernel_clock
    systemd: bool = field(default_factory=lambda: Path("/run/systemd/system").is_dir())
    today: Callable[[], date] = date.today
    timeout: float = 5.0


@dataclass(frozen=True)
class Finding:
    """One line of the report: which part of the board, how it stands (ok, info, warn, fail), what was seen."""

    section: str
    status: str
    text: str


@dataclass
class Report:
    """The findings in order, and the config lines to use for what was found."""

    findings: list[Finding] = field(default_factory=list)
    config_lines: list[str] = field(default_factory=list)

    def add(self, section: str, status: str, text: str) -> None:
        assert status in STATUSES, status
        self.findings.append(Finding(section, status, text))

    def suggest(self, section: str, *lines: str) -> None:
        """Config lines under `[section]` (a section named twice keeps one header)."""
        header = f"[{section}]"
        if header not in self.config_lines:
            self.config_lines += ([""] if self.config_lines else []) + [header]
            self.config_lines += list(lines)
        else:
            at = self.config_lines.index(header) + 1
            while at < len(self.config_lines) and self.config_lines[at] and not self.config_lines[at].startswith("["):
                at += 1
            self.config_lines[at:at] = list(lines)

    def of(self, section: str) -> list[Finding]:
        return [f for f in self.findings if f.section == section]

    @property
    def failed(self) -> bool:
        return any(f.status == "fail" for f in self.findings)


def diagnose(cfg: Config | None, config_problem: str, source: str, probes: Probes) -> Report:
    """Look at the whole board; `cfg` is None when the configuration did not load (`config_problem` says why)."""
    report = Report()
    usb = hardware.usb_devices(probes.sys_root)
    ports = hardware.serial_ports(probes.dev_root, probes.sys_root)
    _input_devices(cfg, probes, report)
    _contactless(cfg, probes, report, usb, ports)
    _chip_readers(probes, report)
    _printers(cfg, probes, report, usb, ports)
    _display(cfg, probes, report)
    if cfg is not None:
        _host(cfg, probes, report)
        _wallet(cfg, probes, report)
    _clock(probes, report)
    if cfg is not None:
        _keys(cfg, probes, report)
        _disk(cfg, report)
        _software(cfg, report)
    if cfg is None:
        report.add("configuration", "fail", f"{config_problem} (host, wallet, keys and disk not checked)")
    else:
        report.add(
            "configuration", "ok", f"{source}: ok (terminal {cfg.terminal.terminal_id}, {cfg.terminal.currency.alpha})"
        )
    return report


def render(report: Report, source: str) -> str:
    """The report as text: findings by section, the config lines, and a count of what needs doing."""
    out = [f"countertop doctor ({source})"]
    section = ""
    for f in report.findings:
        if f.section != section:
            section = f.section
            out.append(f"\n{section}")
        out.append(f"  {f.status:<5} {f.text}")
    if report.config_lines:
        out.append("\nconfiguration for what was found (check it with `countertop check-config`):")
        out += [f"  {line}" if line else "" for line in report.config_lines]
    fails = sum(f.status == "fail" for f in report.findings)
    warns = sum(f.status == "warn" for f in report.findings)
    out.append(f"\n{fails} problem(s), {warns} warning(s)")
    return "\n".join(out) + "\n"


# --- devices ---------------------------------------------------------------------------------------------


def _udev_line(input_node: bool, usb_id: str) -> str:
    """The line for deploy/70-countertop.rules that gives this device to the service user."""
    vendor, product = usb_id.split(":")
    attr = "ATTRS" if input_node else "ATTR"
    match = 'SUBSYSTEM=="input", KERNEL=="event*"' if input_node else 'SUBSYSTEM=="usb", ENV{DEVTYPE}=="usb_device"'
    ids = f'{attr}{{idVendor}}=="{vendor}", {attr}{{idProduct}}=="{product}"'
    return f'{match}, {ids}, GROUP="countertop", MODE="0660"'


def _matches(dev_cfg: InputDeviceConfig, info: InputInfo) -> bool:
    """How drivers.hid.open_input_device picks a device: path, else USB vendor:product, else name."""
    if dev_cfg.path:
        return os.path.realpath(dev_cfg.path) == os.path.realpath(info.path) or dev_cfg.path == info.by_id
    if dev_cfg.usb:
        return dev_cfg.usb.lower() == info.usb_id
    return dev_cfg.name == info.name


def _input_devices(cfg: Config | None, probes: Probes, report: Report) -> None:
    section = "input devices (evdev)"
    infos = probes.inputs(probes.dev_root)
    for info in infos:
        where = f"usb {info.usb_id}" if info.vendor else "no USB id"
        link = f", {info.by_id}" if info.by_id else ""
        report.add(section, "info", f"{info.path} {info.name!r} {where}{link}: {info.kind} ({info.why})")
        if not info.writable:
            report.add(section, "warn", f"{info.path}: this user cannot open it; udev: {_udev_line(True, info.usb_id)}")
    for node in hardware.unreadable_input_nodes(probes.dev_root):
        report.add(section, "warn", f"{node}: this user cannot open it (deploy/70-countertop.rules gives it by USB id)")
    if not infos:
        report.add(section, "info", "no input device this user can open")
    if cfg is not None:
        for name, dev_cfg in (("keypad", cfg.keypad), ("magstripe", cfg.magstripe), ("scanner", cfg.scanner)):
            if dev_cfg is None:
                continue
            found = [i for i in infos if _matches(dev_cfg, i)]
            if not found:
                report.add(section, "fail", f"[{name}] {dev_cfg.describe()}: no such device (plugged in? permission?)")
            elif len(found) > 1 and not dev_cfg.path:
                paths = ", ".join(i.path for i in found)
                report.add(
                    section, "warn", f"[{name}] {dev_cfg.describe()} matches {len(found)} devices ({paths}): give path"
                )
            else:
                report.add(section, "ok", f"[{name}] {dev_cfg.describe()}: {found[0].path} {found[0].name!r}")
    for kind in ("keypad", "magstripe", "scanner"):
        chosen = next((i for i in infos if i.kind == kind), None)
        if chosen is not None:
            report.suggest(kind, _input_line(chosen, infos))
    wedges = [i for i in infos if i.kind == "wedge"]
    for i in wedges:
        missing = [k for k in ("magstripe", "scanner") if not any(x.kind == k for x in infos)]
        if missing:
            report.suggest(missing[0], f"# {_input_line(i, infos)}   # {i.name!r}: swipe or scan it to tell")


def _input_line(info: InputInfo, infos: list[InputInfo]) -> str:
    """The config line that finds this device and no other: usb when its id is unique, else its by-id path or name."""
    if info.vendor and sum(i.usb_id == info.usb_id for i in infos) == 1:
        return f'usb = "{info.usb_id}"'
    if info.by_id:
        return f'path = "{info.by_id}"'
    return f'name = "{info.name}"'


def _node_ok(probes: Probes, usb: UsbDevice) -> bool:
    node = probes.dev_root / "bus" / "usb" / f"{usb.bus:03d}" / f"{usb.address:03d}"
    return os.access(node, os.R_OK | os.W_OK)


def _contactless(
    cfg: Config | None, probes: Probes, report: Report, usb: list[UsbDevice], ports: list[hardware.SerialPort]
) -> None:
    section = "contactless readers (nfcpy)"
    readers = hardware.nfc_usb_readers(usb)
    for device, driver in readers:
        report.add(section, "info", f"{device.describe()}: nfcpy driver {driver}, path usb:{device.usb_id}")
        if not _node_ok(probes, device):
            report.add(
                section, "warn", f"{device.devnode}: this user cannot open it; udev: {_udev_line(False, device.usb_id)}"
            )
    uarts = [p for p in ports if p.what == "the board's UART"]
    for port in uarts:
        report.add(section, "info", f"{port.path} (the board's UART): a PN532 wired to it is {port.nfcpy_path}")
    if not readers:
        report.add(section, "info", "no USB reader nfcpy knows (ACR122U, RC-S380, SCL3711, PN533)")
    if readers:
        report.suggest("contactless", f'device = "usb:{readers[0][0].usb_id}"')
    elif uarts:
        report.suggest("contactless", f'# device = "{uarts[0].nfcpy_path}"   # a PN532 on the UART (README: wiring)')
    if cfg is None:
        return
    path = cfg.contactless.device
    kind = path.split(":")[0]
    if not path:
        report.add(section, "info", "[contactless] device is empty: no contactless payments")
    elif kind == "usb":
        wanted = ":".join(path.split(":")[1:3]).lower()
        ok = any(d.usb_id == wanted for d, _ in readers) if wanted else bool(readers)
        report.add(section, "ok" if ok else "fail", f"[contactless] {path}: {'found' if ok else 'not on the USB bus'}")
    elif kind == "tty":
        node = Path("/dev") / f"tty{path.split(':')[1]}"
        ok = any(Path(p.path).name == node.name for p in ports)
        report.add(section, "ok" if ok else "fail", f"[contactless] {path}: {node} {'present' if ok else 'missing'}")
    else:
        report.add(section, "info", f"[contactless] {path}: nfcpy's UDP driver (the simulator's RF field)")


def _chip_readers(probes: Probes, report: Report) -> None:
    section = "chip readers (PC/SC)"
    names, problem = probes.pcsc()
    if problem:
        report.add(section, "info" if problem == "pyscard not installed" else "warn", problem)
    for name in names:
        report.add(section, "info", name)
    if not names and not problem:
        report.add(section, "info", "pcscd lists no reader")


def _printers(
    cfg: Config | None, probes: Probes, report: Report, usb: list[UsbDevice], ports: list[hardware.SerialPort]
) -> None:
    section = "printers (ESC/POS)"
    found = hardware.usb_printers(usb)
    for device in found:
        report.add(section, "info", f"{device.describe()}: a USB printer")
        if not _node_ok(probes, device):
            report.add(
                section, "warn", f"{device.devnode}: this user cannot open it; udev: {_udev_line(False, device.usb_id)}"
            )
    nodes = hardware.printer_nodes(probes.dev_root)
    for node in nodes:
        access = "" if os.access(node, os.W_OK) else " (this user cannot write to it)"
        report.add(section, "info", f"{node}: the kernel's USB printer node{access}")
    for port in ports:
        access = "" if port.writable else ", this user cannot open it"
        report.add(
            section,
            "info",
            f"serial {port.path} ({port.what}{access}): try `countertop print-test --serial {port.path}`",
        )
    if not (found or nodes):
        report.add(section, "info", "no USB printer")
    if found:
        report.suggest("printer", 'backend = "usb"', f'usb = "{found[0].usb_id}"')
    elif nodes:
        report.suggest("printer", 'backend = "file"', f'devfile = "{nodes[0]}"')
    if cfg is None:
        return
    p = cfg.printer
    if p.backend == "none":
        report.add(section, "info", '[printer] backend = "none": no receipts')
    elif p.backend == "usb":
        ok = any(d.usb_id == p.usb.lower() for d in usb)
        report.add(section, "ok" if ok else "fail", f"[printer] usb {p.usb}: {'found' if ok else 'not on the USB bus'}")
    elif p.backend in ("serial", "file"):
        exists, writable = os.path.exists(p.devfile), os.access(p.devfile, os.W_OK)
        status = "ok" if writable else "fail"
        what = "writable" if writable else ("present, but this user cannot write to it" if exists else "missing")
        report.add(section, status, f"[printer] {p.backend} {p.devfile}: {what}")
    else:
        status, text = reach(p.host, p.port, tls=False, timeout=probes.timeout)
        report.add(section, status, f"[printer] network {p.host}:{p.port}: {text.replace(' (no TLS)', '')}")


def _display(cfg: Config | None, probes: Probes, report: Report) -> None:
    section = "display"
    info = hardware.display_info(probes.sys_root)
    for node, name, size in info.framebuffers:
        report.add(section, "info", f"framebuffer {node} {name!r} {size}")
    for output in info.outputs:
        report.add(section, "info", f"{output} connected")
    if not (info.framebuffers or info.outputs):
        report.add(section, "info", "no framebuffer and no connected output")
    if cfg is None:
        return
    tty = cfg.display.tty
    if tty == "-":
        report.add(section, "ok", '[display] tty = "-": standard output (deploy/countertop.service: /dev/tty1)')
    elif os.access(tty, os.W_OK):
        report.add(section, "ok", f"[display] tty {tty}: writable")
    else:
        report.add(section, "fail", f"[display] tty {tty}: {'not writable' if os.path.exists(tty) else 'missing'}")


# --- the network ---------------------------------------------------------------------------------------------


def reach(
    host: str,
    port: int,
    *,
    tls: bool,
    timeout: float,
    ca_file: str = "",
    client_cert: str = "",
    client_key: str = "",
) -> tuple[str, str]:
    """(status, what happened) for a TCP connection and, with `tls`, a TLS handshake checked as the host link
    checks it (system CAs or `ca_file`, the host name, TLS 1.2 or later, the client certificate if any)."""
    try:
        context = None
        if tls:
            context = ssl.create_default_context(cafile=ca_file or None)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            if client_cert:
                context.load_cert_chain(client_cert, client_key)
    except (OSError, ssl.SSLError) as exc:
        return "fail", f"cannot set up TLS: {exc}"
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        return "fail", f"cannot connect: {exc.strerror or exc}"
    with sock:
        if context is None:
            return "ok", "TCP connection made (no TLS)"
        try:
            with context.wrap_socket(sock, server_hostname=host) as conn:
                version, cert = conn.version(), conn.getpeercert()
        except ssl.SSLCertVerificationError as exc:
            return "fail", f"TLS: certificate refused: {exc.verify_message}"
        except (ssl.SSLError, OSError) as exc:
            return "fail", f"TLS handshake failed: {exc}"
    until = datetime.fromtimestamp(ssl.cert_time_to_seconds(str((cert or {})["notAfter"])), UTC)
    days = (until - datetime.now(UTC)).days
    status = "warn" if days < CERT_WARN_DAYS else "ok"
    return status, f"{version} handshake, certificate valid until {until:%Y-%m-%d} ({days} days)"


def _host(cfg: Config, probes: Probes, report: Report) -> None:
    h = cfg.host
    status, text = reach(
        h.host,
        h.port,
        tls=h.tls,
        timeout=probes.timeout,
        ca_file=h.ca_file,
        client_cert=h.client_cert,
        client_key=h.client_key,
    )
    report.add("acquirer host", status, f"{h.host}:{h.port}: {text}")


def _wallet(cfg: Config, probes: Probes, report: Report) -> None:
    w = cfg.wallet
    if not w.provider:
        report.add("wallet", "info", "no [wallet] provider")
        return
    url = urllib.parse.urlsplit(w.gateway)
    tls = url.scheme == "https"
    port = url.port or (443 if tls else 80)
    status, text = reach(url.hostname or "", port, tls=tls, timeout=probes.timeout)
    report.add("wallet", status, f"{w.provider} {url.hostname}:{port}: {text}")


# --- clock, keys, disk, software --------------------------------------------------------------------------


def _clock(probes: Probes, report: Report) -> None:
    """Synchronised or not, from whatever the board has: systemd's timedatectl, chrony, else the kernel."""
    section = "clock"
    why = "wallet requests carry the time and a wrong one is refused"
    if probes.systemd:
        rc, out = probes.run(["timedatectl", "show", "--property=NTPSynchronized", "--value"])
        if rc == 0 and out.strip() in ("yes", "no"):
            synced = out.strip() == "yes"
            report.add(
                section,
                "ok" if synced else "fail",
                f"timedatectl: {'' if synced else 'not '}synchronised" + ("" if synced else f" ({why})"),
            )
            return
    rc, out = probes.run(["chronyc", "-n", "tracking"])
    if rc == 0:
        leap = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Leap status")), "")
        if leap:
            ok = leap == "Normal"
            report.add(section, "ok" if ok else "fail", f"chrony: leap status {leap}" + ("" if ok else f" ({why})"))
            return
    kernel = probes.kernel_clock()
    if kernel is None:
        report.add(
            section, "warn", "cannot tell whether the clock is synchronised (no timedatectl, chrony or adjtimex)"
        )
        return
    state, flags, maxerror = kernel
    if state == TIME_ERROR or flags & STA_UNSYNC:
        report.add(section, "fail", f"the kernel says the clock is not synchronised ({why})")
    else:
        report.add(section, "ok", f"the kernel says the clock is synchronised (maximum error {maxerror / 1000:.0f} ms)")


def last_sign_on(log_file: Path) -> tuple[str, str, str] | None:
    """(date, PIN key KCV, MAC key KCV) of the last sign-on in the end of the terminal's log, or None."""
    try:
        with open(log_file, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - LOG_TAIL))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    found = SIGNED_ON.findall(tail)
    return found[-1] if found else None


def _needed_keys(cfg: Config) -> list[tuple[str, str]]:
    """(key store name, what it is for) of the keys this configuration takes from the key store."""
    need = []
    if cfg.keys.scheme:
        need.append(("tmk", "the terminal master key for sign-on"))
    if cfg.pin.scheme == "tdes" and not cfg.pin.ipek:
        need.append(("ipek", "the PIN pad's TDES DUKPT initial key"))
    if cfg.pin.scheme == "aes" and not cfg.pin.initial_key:
        need.append(("dukpt-aes", "the PIN pad's AES DUKPT initial key"))
    return need


def _keys(cfg: Config, probes: Probes, report: Report) -> None:
    from firmware.security.keystore import KeyStore  # noqa: PLC0415 - cryptography: only when keys are looked at

    section = "keys"
    folder = cfg.terminal.data_dir / "keys"
    listing = KeyStore(folder).listing() if folder.is_dir() else []
    for name, scheme, check in listing:
        if check == "damaged":
            report.add(section, "fail", f"{name}: the sealed file is damaged")
        else:
            report.add(section, "info", f"{name} ({scheme}) KCV {check[:6]}")
    stored = {name for name, _, _ in listing}
    for name, what in _needed_keys(cfg):
        if name in stored:
            report.add(section, "ok", f"{name} ({what}) is in the key store")
        else:
            report.add(section, "fail", f"no {name} ({what}): load it with `countertop keys load {name}`")
    if not cfg.keys.scheme:
        report.add(section, "info", "no [keys] scheme: no sign-on (DUKPT only)")
        return
    last = last_sign_on(cfg.terminal.data_dir / "countertop.log")
    if last is None:
        report.add(section, "info", "no sign-on in the terminal's log yet (it signs on at boot and daily)")
        return
    day, pin_kcv, mac_kcv = last
    age = (probes.today() - date.fromisoformat(day)).days
    text = f"last sign-on {day}, {age} day(s) ago (PIN key KCV {pin_kcv}, MAC key KCV {mac_kcv})"
    report.add(
        section, "ok" if age <= 0 else "warn", text + ("" if age <= 0 else ": today's keys come at the next exchange")
    )


def _disk(cfg: Config, report: Report) -> None:
    section = "disk"
    data = cfg.terminal.data_dir
    where = data
    while not where.exists() and where != where.parent:
        where = where.parent
    usage = shutil.disk_usage(where)
    status = "fail" if usage.free < DISK_REFUSED else "warn" if usage.free < DISK_LOW else "ok"
    report.add(section, status, f"{data}: {usage.free / 2**30:.1f} GiB free of {usage.total / 2**30:.1f} GiB")
    if not data.exists():
        report.add(section, "info", f"{data} does not exist yet (made at the first start)")
    elif not os.access(data, os.W_OK):
        report.add(section, "fail", f"{data}: this user cannot write to it (run the doctor as the service user)")


def _software(cfg: Config, report: Report) -> None:
    from firmware.errors import UpdateError  # noqa: PLC0415
    from firmware.security.update import Slots  # noqa: PLC0415

    slots_dir = Path(cfg.update.slots_dir)
    folder = slots_dir if slots_dir.is_absolute() else cfg.terminal.data_dir / slots_dir
    try:
        state = Slots(folder).state()
    except UpdateError as exc:
        report.add("software", "fail", str(exc))
        return
    active = str(state["active"])
    if not active:
        report.add("software", "info", "the installed tree (no update installed yet)")
        return
    version = dict(state["versions"]).get(active, "?")  # type: ignore[call-overload]
    trial = " on trial until the next boot check" if state["trial"] else ""
    report.add("software", "info", f"slot {active} ({version}){trial}")
