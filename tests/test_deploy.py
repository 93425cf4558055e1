"""The files that install the terminal on a board (deploy/): the systemd unit checked by `systemd-analyze verify`,
its launcher run against fake and real installs (update slots included), the service user made by
`systemd-sysusers`, and the udev rules checked by `udevadm verify` (systemd 254+) or, where udevadm is older, by
`udevadm test` inside a private mount namespace so that no device node of this machine is touched. Each tool's
check is skipped, with the reason, where the tool (or the namespace) is not there; each is shown able to fail."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from nfc.clf.device import usb_device_map

from conftest import ROOT, SIM_TOML
from firmware.config import load
from firmware.shell import hardware

DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "countertop.service"
RULES = DEPLOY / "70-countertop.rules"
LAUNCHER = DEPLOY / "countertop-start"
TEMPLATE = load(ROOT / "config" / "terminal.toml")


def unit_entries(text: str) -> dict[str, list[tuple[str, str]]]:
    """A unit file's sections as (key, value) lists, repeats kept (systemd allows them)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = []
            continue
        key, _, value = line.partition("=")
        sections[current].append((key, value))
    return sections


def test_the_unit_runs_the_terminal_as_it_expects_to_be_run():
    unit = unit_entries(UNIT.read_text())
    service = dict(unit["Service"])  # last value of each key
    values = lambda key: [v for k, v in unit["Service"] if k == key]  # noqa: E731
    assert (service["Type"], service["NotifyAccess"], service["WatchdogSec"]) == ("notify", "main", "30")
    assert service["Restart"] == "on-failure" and service["User"] == service["Group"] == "countertop"
    assert service["ExecStartPre"] == "/opt/countertop/deploy/countertop-start boot-check"
    assert service["ExecStart"] == "/opt/countertop/deploy/countertop-start run"
    assert (service["StandardOutput"], service["TTYPath"]) == ("tty", "/dev/tty1")
    assert ("Conflicts", "getty@tty1.service") in unit["Unit"]
    # The data folder is the state directory systemd keeps for the user, outside the code, and the template's.
    env = dict(v.split("=", 1) for v in values("Environment"))
    assert service["StateDirectory"] == "countertop" and TEMPLATE.terminal.data_dir == Path("/var/lib/countertop")
    assert env["COUNTERTOP_SLOTS"] == str(TEMPLATE.terminal.data_dir / TEMPLATE.update.slots_dir)
    assert env["COUNTERTOP_CONFIG"] == "/etc/countertop/terminal.toml" and env["COUNTERTOP_APP"] == "/opt/countertop"
    assert TEMPLATE.display.tty == "-"  # the display goes to standard output, which the unit points at tty1
    assert ("WantedBy", "multi-user.target") in unit["Install"]


def systemd_analyze(unit_text: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` on the unit as installed here: /opt/countertop is this checkout."""
    path = folder / "countertop.service"
    path.write_text(unit_text.replace("/opt/countertop", str(ROOT)))
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(path)], capture_output=True, text=True, cwd=folder, check=False
    )


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    done = systemd_analyze(UNIT.read_text(), tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    # ... and would say so about a unit it does not accept: a misspelt key, a launcher that is not there.
    typo = systemd_analyze(UNIT.read_text().replace("WatchdogSec=30", "WatchdogSecs=30"), tmp_path)
    assert "Unknown key 'WatchdogSecs'" in typo.stderr
    gone = systemd_analyze(UNIT.read_text().replace("countertop-start run", "countertop-gone run"), tmp_path)
    assert gone.returncode != 0 and "is not executable" in gone.stderr


def launch(tmp_path: Path, app: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "COUNTERTOP_APP": str(app),
        "COUNTERTOP_CONFIG": str(tmp_path / "terminal.toml"),
        "COUNTERTOP_SLOTS": str(tmp_path / "data" / "slots"),
    }
    return subprocess.run([str(LAUNCHER), *args], capture_output=True, text=True, env=env, cwd=tmp_path, check=False)


def test_the_launcher_runs_from_the_active_slot_or_the_installed_tree(tmp_path):
    app = tmp_path / "app"
    (app / ".venv" / "bin").mkdir(parents=True)
    fake = app / ".venv" / "bin" / "countertop"
    fake.write_text('#!/bin/sh\necho "args=$*"\necho "cwd=$(pwd)"\necho "pythonpath=${PYTHONPATH:-}"\n')
    fake.chmod(0o755)
    config = tmp_path / "terminal.toml"
    done = launch(tmp_path, app, "run")
    assert done.returncode == 0
    assert done.stdout.splitlines() == [f"args=run --config {config}", f"cwd={tmp_path}", "pythonpath="]
    slots = tmp_path / "data" / "slots"
    (slots / "b").mkdir(parents=True)
    (slots / "b" / "MANIFEST.json").write_text("{}")
    (slots / "current").symlink_to("b")
    done = launch(tmp_path, app, "run")
    assert done.stdout.splitlines() == [
        f"args=run --config {config}",
        f"cwd={slots / 'current'}",
        f"pythonpath={slots / 'current'}:{slots / 'current' / 'hw-sim'}",
    ]
    assert launch(tmp_path, app, "boot-check").stdout.splitlines()[0] == f"args=boot-check --config {config}"
    wrong = launch(tmp_path, app, "start")
    assert (wrong.returncode, wrong.stderr) == (2, "usage: countertop-start boot-check | run\n")


def test_the_launchers_boot_check_keeps_a_slot_that_passes_its_self_check(tmp_path):
    """The real command from this checkout's .venv: a signed package installed into a slot on trial is kept by
    `countertop-start boot-check` (its own code accepts the configuration)."""
    from firmware.security.update import Slots, build_package, new_release_key, verify_package

    public = new_release_key(tmp_path / "release.pem")
    config = tmp_path / "terminal.toml"
    config.write_text(
        SIM_TOML.read_text().replace('data_dir = "data/sim"', f'data_dir = "{tmp_path / "data"}"')
        + f'\n[update]\nrelease_key = "{public}"\n'
    )
    package = tmp_path / "countertop-9.0.0.ctpkg"
    build_package(ROOT, "9.0.0", (tmp_path / "release.pem").read_bytes(), package)
    slot = Slots(tmp_path / "data" / "slots").install(verify_package(package, public))
    done = launch(tmp_path, ROOT, "boot-check")
    assert (done.returncode, done.stdout) == (0, f"slot {slot} (9.0.0) passed its self-check and is kept\n")
    assert (tmp_path / "data" / "slots" / "current" / "MANIFEST.json").is_file()  # `run` starts from there


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers is not installed here")
def test_sysusers_makes_the_service_user(tmp_path):
    (tmp_path / "etc").mkdir()
    done = subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", str(DEPLOY / "countertop.sysusers.conf")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [user] = [line for line in (tmp_path / "etc" / "passwd").read_text().splitlines() if line.startswith("countertop:")]
    name, _, uid, gid, _, home, shell = user.split(":")
    assert int(uid) < 1000 and home == "/var/lib/countertop" and shell.endswith("nologin")
    assert f"countertop:x:{gid}:" in (tmp_path / "etc" / "group").read_text()


TOKEN = re.compile(r'[A-Z_]+(\{[A-Za-z_]+\})?(==|!=|\+=|:=|=)"[^"]*"')


def rule_lines() -> list[str]:
    return [line for line in RULES.read_text().splitlines() if line.strip() and not line.startswith("#")]


def usb_ids_in_rules() -> set[tuple[int, int]]:
    ids = set()
    for line in rule_lines():
        vendor = re.search(r'idVendor}=="([0-9a-f]{4})"', line)
        product = re.search(r'idProduct}=="([0-9a-f]{4})"', line)
        if vendor and product:
            ids.add((int(vendor.group(1), 16), int(product.group(1), 16)))
    return ids


def test_udev_rules_are_well_formed_and_cover_the_template_and_every_nfcpy_reader():
    for line in rule_lines():
        tokens = line.split(", ")
        assert all(TOKEN.fullmatch(t) for t in tokens), line
        assert not re.search(r'id(Vendor|Product)}=="(?![0-9a-f]{4}")', line), f"ids are 4 lower-case hex: {line}"
        if "GROUP=" in line:
            assert 'GROUP="countertop"' in line and 'MODE="0660"' in line, line
    ids = usb_ids_in_rules()
    template = [TEMPLATE.keypad.usb, TEMPLATE.magstripe.usb, TEMPLATE.printer.usb, TEMPLATE.contactless.device[4:]]
    template += [TEMPLATE.scanner.usb] if TEMPLATE.scanner else []
    for usb_id in template:
        vendor, product = (int(x, 16) for x in usb_id.split(":"))
        assert (vendor, product) in ids, f"config/terminal.toml's {usb_id} has no udev rule"
    assert set(usb_device_map) <= ids  # every USB reader nfcpy drives
    assert rule_lines()[0] == 'ACTION=="remove", GOTO="countertop_end"' and rule_lines()[-1] == (
        'LABEL="countertop_end"'
    )


def _udevadm_has_verify() -> bool:
    done = subprocess.run(["udevadm", "verify", "--help"], capture_output=True, text=True, check=False)
    return done.returncode == 0


def _namespace_works() -> str:
    """'' when this process may make a private mount namespace and mount in it (root with CAP_SYS_ADMIN)."""
    if shutil.which("unshare") is None:
        return "unshare is not installed"
    done = subprocess.run(
        ["unshare", "--mount", "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True, text=True, check=False
    )
    return "" if done.returncode == 0 else f"no private mount namespace here ({done.stderr.strip()[:80]})"


def udevadm_test(rules: Path, device: str, tmp_path: Path) -> tuple[int, str]:
    """`udevadm test` with `rules` in /run/udev/rules.d and a `countertop` group, in a mount namespace of its own
    whose /dev and /run are empty tmpfs: udevadm of systemd 252 sets the permissions it computes on the device
    node, and must not do that to this machine's. The script stops before udevadm if any mount fails."""
    group = tmp_path / "group"
    group.write_text(Path("/etc/group").read_text() + "countertop:x:64999:\n")
    script = (
        "set -e; mount -t tmpfs tmpfs /dev; mount -t tmpfs tmpfs /run; mkdir -p /run/udev/rules.d; "
        f'cp "{rules}" /run/udev/rules.d/70-countertop.rules; mount --bind "{group}" /etc/group; '
        f'udevadm test --action=add "{device}" 2>&1'
    )
    done = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True, check=False)
    return done.returncode, done.stdout + done.stderr


def rule_problems(output: str) -> list[str]:
    """What udevadm said about our file other than the assignments it made."""
    return [
        line
        for line in output.splitlines()
        if "70-countertop.rules:" in line and not re.search(r"70-countertop\.rules:\d+ (GROUP|MODE) ", line)
    ]


@pytest.mark.skipif(shutil.which("udevadm") is None, reason="udevadm is not installed here")
def test_udevadm_accepts_the_rules(tmp_path):
    if _udevadm_has_verify():  # systemd 254 and later
        done = subprocess.run(
            ["udevadm", "verify", "--resolve-names=never", str(RULES)], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        broken = tmp_path / "broken.rules"
        broken.write_text(RULES.read_text() + 'FOO=="bar", MODE="0660"\n')
        assert subprocess.run(["udevadm", "verify", str(broken)], capture_output=True, check=False).returncode != 0
        return
    why = _namespace_works()
    if why:
        pytest.skip(f"udevadm {udevadm_version()} has no `verify`, and `udevadm test` needs a private /dev: {why}")
    serial = Path("/sys/class/tty/ttyS0")
    device = str(serial if serial.exists() else Path("/sys/class/tty/tty1"))
    code, output = udevadm_test(RULES, device, tmp_path)
    assert code == 0, output
    assert "Reading rules file: /run/udev/rules.d/70-countertop.rules" in output
    assert rule_problems(output) == []
    if serial.exists():  # the rule for the Pi's UART (and ttyS0) gave the port to the service user
        assert re.search(r"ttyS0: /run/udev/rules\.d/70-countertop\.rules:\d+ GROUP 64999", output), output
    broken = tmp_path / "broken.rules"
    broken.write_text(RULES.read_text() + 'FOO=="bar", MODE="0660"\n')
    _, output = udevadm_test(broken, device, tmp_path)
    assert any("Invalid key 'FOO'" in line for line in rule_problems(output)), output


def udevadm_version() -> str:
    return subprocess.run(["udevadm", "--version"], capture_output=True, text=True, check=False).stdout.strip()


@pytest.mark.skipif(shutil.which("udevadm") is None, reason="udevadm is not installed here")
def test_udevadm_test_builtin_usb_id_agrees_with_the_doctor():
    """What udev's own usb_id reads for a USB device is what the doctor reads from sysfs (and what the rules
    match on)."""
    devices = hardware.usb_devices(Path("/sys"))
    if not devices:
        pytest.skip("no USB device in /sys here")
    device = devices[0]
    done = subprocess.run(
        ["udevadm", "test-builtin", "usb_id", f"/sys/bus/usb/devices/{device.sysname}"],
        capture_output=True,
        text=True,
        check=False,
    )
    props = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    assert (props.get("ID_VENDOR_ID"), props.get("ID_MODEL_ID")) == tuple(device.usb_id.split(":")), done.stdout
