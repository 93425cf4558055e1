"""`countertop doctor` on the simulator's devices and hosts: input devices told apart by their keys, configured
devices found (or not), the acquirer and the wallet gateway reached (TLS handshakes checked as the host link
checks them), the clock, the key store and the last sign-on, the disk, and the config lines it prints."""

from __future__ import annotations

import dataclasses
import logging
import socket
import ssl
import threading
from datetime import date, timedelta
from pathlib import Path

import pytest
from evdev import ecodes

from conftest import SIM_TOML, sim_config, wait_until
from firmware.config import KeysConfig
from firmware.shell import cli, doctor, hardware, logs
from firmware.shell.doctor import Probes, diagnose, reach, render
from hwsim.inputs import SimInputDevice
from test_tls import make_ca, make_server_cert, pem

NUMPAD = [ecodes.ecodes[f"KEY_KP{d}"] for d in range(10)] + [ecodes.KEY_KPENTER, ecodes.KEY_ESC, ecodes.KEY_BACKSPACE]


def board(tmp_path: Path, devices: list[SimInputDevice], **kw) -> Probes:
    """A board with these input devices and nothing else: empty /sys and /dev, no pcscd, a synchronised clock."""
    (tmp_path / "sys").mkdir(exist_ok=True)
    (tmp_path / "dev").mkdir(exist_ok=True)
    defaults = dict(
        sys_root=tmp_path / "sys",
        dev_root=tmp_path / "dev",
        inputs=lambda root: hardware.input_devices(devices, root),
        pcsc=lambda: ([], "pyscard not installed"),
        run=lambda argv: (127, ""),
        kernel_clock=lambda: (0, 0, 2000),
        systemd=False,
        timeout=2.0,
    )
    return Probes(**{**defaults, **kw})


def statuses(report, section: str) -> list[tuple[str, str]]:
    return [(f.status, f.text) for f in report.of(section)]


def test_input_devices_are_told_apart_by_their_keys(tmp_path):
    devices = [
        SimInputDevice("SINO WEALTH USB Keypad", 0x04D9, 0x1203, keys=NUMPAD),  # digits on the keypad only
        SimInputDevice("USB Reader", 0x0801, 0x0001),  # a whole keyboard, from MagTek
        SimInputDevice("Barcode Reader", 0x0C2E, 0x0B61),  # a whole keyboard, from Honeywell
        SimInputDevice("HID 1a2b:3c4d", 0x1A2B, 0x3C4D),  # a whole keyboard, nothing else to go by
        SimInputDevice("Power Button", 0, 0, keys=[ecodes.KEY_POWER]),
        SimInputDevice("USB Numeric Keypad", 0x1111, 0x2222),  # a whole keyboard that calls itself a keypad
    ]
    try:
        kinds = [(i.name, i.kind) for i in hardware.input_devices(devices, tmp_path)]
    finally:
        for d in devices:
            d.destroy()
    assert kinds == [
        ("SINO WEALTH USB Keypad", "keypad"),
        ("USB Reader", "magstripe"),
        ("Barcode Reader", "scanner"),
        ("HID 1a2b:3c4d", "wedge"),
        ("Power Button", "other"),
        ("USB Numeric Keypad", "keypad"),
    ]


def test_the_doctor_on_the_simulator_finds_every_configured_device_and_host(sim, tmp_path):
    devices = [sim.keypad_device, sim.reader_device, sim.scanner_device]
    report = diagnose(sim.config, "", "sim.toml", board(tmp_path, devices))
    assert not report.failed, render(report, "sim.toml")
    inputs = statuses(report, "input devices (evdev)")
    for section, name in (("keypad", "hwsim keypad"), ("magstripe", "hwsim magstripe"), ("scanner", "hwsim scanner")):
        assert ("ok", f"[{section}] name {name!r}: sim:{name} {name!r}") in inputs
    assert [f.status for f in report.of("acquirer host")] == ["ok"]
    assert "TCP connection made (no TLS)" in report.of("acquirer host")[0].text
    assert [f.status for f in report.of("wallet")] == ["ok"]
    assert ("ok", f"[printer] serial {sim.config.printer.devfile}: writable") in statuses(report, "printers (ESC/POS)")
    assert any("UDP driver" in t for _, t in statuses(report, "contactless readers (nfcpy)"))
    assert statuses(report, "chip readers (PC/SC)") == [("info", "pyscard not installed")]
    assert report.of("disk")[0].status == "ok" and report.of("configuration")[0].status == "ok"
    # Each found by its own USB id: the config lines say so.
    assert report.config_lines == [
        "[keypad]",
        'usb = "1209:0001"',
        "",
        "[magstripe]",
        'usb = "1209:0002"',
        "",
        "[scanner]",
        'usb = "1209:0003"',
    ]


def test_a_missing_device_an_unreachable_host_and_two_devices_behind_one_id(sim, tmp_path):
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    cfg = dataclasses.replace(sim.config, host=dataclasses.replace(sim.config.host, port=port))
    twin = SimInputDevice("hwsim keypad consumer control", 0x1209, 0x0001)  # a second node of the keypad
    try:
        report = diagnose(cfg, "", "sim.toml", board(tmp_path, [sim.keypad_device, twin]))
    finally:
        twin.destroy()
    assert report.failed
    assert report.of("acquirer host")[0].status == "fail"
    assert "cannot connect" in report.of("acquirer host")[0].text
    inputs = statuses(report, "input devices (evdev)")
    assert ("fail", "[magstripe] name 'hwsim magstripe': no such device (plugged in? permission?)") in inputs
    # Both nodes share 1209:0001: the config line names the device instead (no by-id link here).
    assert report.config_lines[:2] == ["[keypad]", 'name = "hwsim keypad"']


def test_a_configuration_that_does_not_load_still_gets_the_devices_listed(tmp_path):
    keypad = SimInputDevice("hwsim keypad", keys=NUMPAD)
    try:
        report = diagnose(None, "terminal.toml: [host] port: missing", "terminal.toml", board(tmp_path, [keypad]))
    finally:
        keypad.destroy()
    assert report.failed
    assert statuses(report, "configuration") == [
        ("fail", "terminal.toml: [host] port: missing (host, wallet, keys and disk not checked)")
    ]
    assert report.of("acquirer host") == [] and report.of("keys") == []
    assert report.config_lines == ["[keypad]", 'usb = "1209:0001"']


class TlsServer:
    """A TLS server on loopback that completes handshakes and nothing else."""

    def __init__(self, tmp_path: Path, key, cert) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(pem(tmp_path, "srv.pem", cert), pem(tmp_path, "srv.key", key))
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (ssl.SSLError, OSError):
                pass

    def close(self) -> None:
        self.sock.close()


def test_tls_handshake_checked_as_the_host_link_checks_it(tmp_path):
    ca_key, ca = make_ca()
    key, cert = make_server_cert(ca_key, ca, "localhost")
    server = TlsServer(tmp_path, key, cert)
    try:
        status, text = reach("localhost", server.port, tls=True, timeout=5, ca_file=pem(tmp_path, "ca.pem", ca))
        assert status == "ok" and text.startswith(("TLSv1.3 handshake", "TLSv1.2 handshake")), text
        assert "certificate valid until" in text
        other_key, other = make_ca("Someone Else")
        status, text = reach("localhost", server.port, tls=True, timeout=5, ca_file=pem(tmp_path, "o.pem", other))
        assert (status, text.split(":")[0]) == ("fail", "TLS")
        assert "certificate refused" in text
        status, text = reach("127.0.0.1", server.port, tls=True, timeout=5, ca_file=pem(tmp_path, "ca.pem", ca))
        assert status == "fail" and "certificate refused" in text  # issued to localhost, asked as 127.0.0.1
        status, text = reach("localhost", server.port, tls=True, timeout=5, ca_file=str(tmp_path / "absent.pem"))
        assert status == "fail" and text.startswith("cannot set up TLS")
    finally:
        server.close()


@pytest.mark.parametrize(
    "systemd, answers, kernel, expected",
    [
        (True, {"timedatectl": (0, "yes\n")}, None, ("ok", "timedatectl: synchronised")),
        (True, {"timedatectl": (0, "no\n")}, None, ("fail", "timedatectl: not synchronised")),
        (False, {"chronyc": (0, "Reference ID    : C0A80001\nLeap status     : Normal\n")}, None, ("ok", "chrony")),
        (False, {"chronyc": (0, "Leap status     : Not synchronised\n")}, None, ("fail", "chrony: leap status Not")),
        (False, {}, (0, 0, 12000), ("ok", "the kernel says the clock is synchronised (maximum error 12 ms)")),
        (False, {}, (5, 0x40, 16000000), ("fail", "the kernel says the clock is not synchronised")),
        (False, {}, (0, doctor.STA_UNSYNC, 0), ("fail", "the kernel says the clock is not synchronised")),
        (False, {}, None, ("warn", "cannot tell whether the clock is synchronised")),
    ],
)
def test_clock_synchronisation_from_whatever_the_board_has(tmp_path, systemd, answers, kernel, expected):
    def run(argv):
        return answers.get(argv[0], (127, ""))

    probes = board(tmp_path, [], systemd=systemd, run=run, kernel_clock=lambda: kernel)
    report = doctor.Report()
    doctor._clock(probes, report)
    [finding] = report.of("clock")
    assert (finding.status, finding.text[: len(expected[1])]) == expected


def test_the_kernels_own_answer_reads_cleanly():
    state, flags, maxerror = doctor.kernel_clock()  # adjtimex(2) with modes 0: reads, never sets
    assert 0 <= state <= 5 and flags >= 0 and maxerror >= 0


def test_keys_loaded_and_the_last_sign_on(tmp_path):
    """The key store's check values, the key the configuration needs, and the sign-on the terminal logged (a real
    sign-on with the simulated acquirer, written by the terminal's own log format)."""
    from hwsim import Simulator

    cfg = sim_config(host=2.0)
    cfg = dataclasses.replace(cfg, keys=KeysConfig("tdes"), pin=dataclasses.replace(cfg.pin, scheme="session"))
    data = tmp_path / "data"
    data.mkdir()
    handler = logging.FileHandler(data / "countertop.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter(logs.FORMAT))
    signon = logging.getLogger("firmware.host.signon")
    signon.addHandler(handler)
    signon.setLevel(logging.INFO)
    try:
        with Simulator(data, cfg) as sim:
            wait_until(lambda: doctor.last_sign_on(data / "countertop.log"), what="the sign-on at boot")
            live = sim.config
    finally:
        signon.removeHandler(handler)
        handler.close()
    report = doctor.Report()
    doctor._keys(live, board(tmp_path, []), report)
    found = statuses(report, "keys")
    assert [t[:15] for s, t in found if s == "info"] == ["card-token (hma", "tmk (tdes) KCV "]
    assert ("ok", "tmk (the terminal master key for sign-on) is in the key store") in found
    today = date.today().isoformat()
    assert found[-1][0] == "ok" and found[-1][1].startswith(f"last sign-on {today}, 0 day(s) ago (PIN key KCV ")
    later = board(tmp_path, [], today=lambda: date.today() + timedelta(days=3))
    report = doctor.Report()
    doctor._keys(live, later, report)
    assert report.findings[-1].status == "warn" and "3 day(s) ago" in report.findings[-1].text
    # Without the master key: the configuration needs it and says how to load it.
    (live.terminal.data_dir / "keys" / "tmk.sealed").unlink()
    report = doctor.Report()
    doctor._keys(live, board(tmp_path, []), report)
    assert ("fail", "no tmk (the terminal master key for sign-on): load it with `countertop keys load tmk`") in (
        statuses(report, "keys")
    )


def test_usb_devices_serial_ports_and_screens_from_sysfs(tmp_path):
    """The sysfs layout the kernel makes (/sys/bus/usb/devices/B-P with interfaces B-P:C.I), written out: an
    ACR122U, a USB receipt printer and a hub; the Pi's UART and a USB-serial adapter; a framebuffer and HDMI."""
    sys_root, dev_root = tmp_path / "sys", tmp_path / "dev"
    usb = sys_root / "bus" / "usb" / "devices"

    def device(name, vendor, product, bus, addr, cls="00", product_name="", interfaces=()):
        d = usb / name
        d.mkdir(parents=True)
        for key, value in dict(
            idVendor=vendor, idProduct=product, busnum=bus, devnum=addr, bDeviceClass=cls, product=product_name
        ).items():
            (d / key).write_text(f"{value}\n")
        for i, klass in enumerate(interfaces):
            (usb / f"{name}:1.{i}").mkdir()
            (usb / f"{name}:1.{i}" / "bInterfaceClass").write_text(f"{klass}\n")

    device("usb1", "1d6b", "0002", 1, 1, cls="09", interfaces=["09"])
    device("1-1.2", "072f", "2200", 1, 4, product_name="ACR122U PICC Interface", interfaces=["0b"])
    device("1-1.3", "0416", "5011", 1, 5, product_name="POS58 Printer", interfaces=["07"])
    (dev_root / "serial" / "by-id").mkdir(parents=True)
    for node in ("ttyAMA0", "ttyUSB0", "ttyS0", "ttyS1"):
        (dev_root / node).touch()
    (dev_root / "serial" / "by-id" / "usb-1a86_USB_Serial-if00-port0").symlink_to(dev_root / "ttyUSB0")
    for node, kind in (("ttyS0", "4"), ("ttyS1", "0")):
        (sys_root / "class" / "tty" / node).mkdir(parents=True)
        (sys_root / "class" / "tty" / node / "type").write_text(kind + "\n")
    fb = sys_root / "class" / "graphics" / "fb0"
    fb.mkdir(parents=True)
    (fb / "name").write_text("vc4drmfb\n")
    (fb / "virtual_size").write_text("1280,720\n")
    hdmi = sys_root / "class" / "drm" / "card1-HDMI-A-1"
    hdmi.mkdir(parents=True)
    (hdmi / "status").write_text("connected\n")

    devices = hardware.usb_devices(sys_root)
    assert [(d.sysname, d.usb_id, d.devnode) for d in devices] == [
        ("1-1.2", "072f:2200", "/dev/bus/usb/001/004"),
        ("1-1.3", "0416:5011", "/dev/bus/usb/001/005"),
    ]
    assert [(d.usb_id, driver) for d, driver in hardware.nfc_usb_readers(devices)] == [("072f:2200", "acr122")]
    assert [d.usb_id for d in hardware.usb_printers(devices)] == ["0416:5011"]
    ports = hardware.serial_ports(dev_root, sys_root)
    assert [(Path(p.path).name, p.what, p.nfcpy_path) for p in ports] == [
        ("ttyAMA0", "the board's UART", "tty:AMA0:pn532"),
        ("ttyS0", "the board's UART", "tty:S0:pn532"),
        ("ttyUSB0", "usb-1a86_USB_Serial-if00-port0", "tty:USB0:pn532"),
    ]
    assert hardware.display_info(sys_root) == hardware.DisplayInfo(
        (("/dev/fb0", "vc4drmfb", "1280x720"),), ("HDMI-A-1",)
    )

    cfg = dataclasses.replace(
        sim_config(), printer=dataclasses.replace(sim_config().printer, backend="usb", usb="0416:5011")
    )
    cfg = dataclasses.replace(cfg, contactless=dataclasses.replace(cfg.contactless, device="usb:072f:2200"))
    report = diagnose(cfg, "", "x.toml", board(tmp_path, [], sys_root=sys_root, dev_root=dev_root, timeout=0.5))
    nfc = statuses(report, "contactless readers (nfcpy)")
    assert ("ok", "[contactless] usb:072f:2200: found") in nfc
    assert any(s == "warn" and "/dev/bus/usb/001/004: this user cannot open it" in t for s, t in nfc)  # no such node
    assert ("ok", "[printer] usb 0416:5011: found") in statuses(report, "printers (ESC/POS)")
    assert "\n".join(report.config_lines).count('[contactless]\ndevice = "usb:072f:2200"') == 1
    assert '[printer]\nbackend = "usb"\nusb = "0416:5011"' in "\n".join(report.config_lines)


def test_the_command_prints_the_report_and_exits_1_on_a_problem(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(SIM_TOML.read_text().replace("port = 8583", 'port = "8583"'))
    code = cli.main(["doctor", "--config", str(bad), "--timeout", "0.5"])
    out = capsys.readouterr().out
    assert code == 1
    assert out.startswith(f"countertop doctor ({bad})\n")
    assert f"fail  {bad}: [host] port: expected an integer, got str '8583'" in out
    assert out.rstrip().splitlines()[-1].endswith("warning(s)")
