"""Signed updates: each refusal, the two slots, the boot check's rollback; admin-only install and key loading."""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import ROOT, SIM_TOML
from firmware.errors import UpdateError
from firmware.records.journal import Journal
from firmware.security import keys
from firmware.security.keystore import KeyStore
from firmware.security.update import Slots, build_package, new_release_key, self_check, verify_package
from firmware.shell import cli

SMALL = ("firmware", "config", "pyproject.toml")


@pytest.fixture
def release(tmp_path):
    key = tmp_path / "release.pem"
    public = new_release_key(key)
    assert (key.stat().st_mode & 0o777) == 0o600
    return key, public


def make(tmp_path, key, version, root=ROOT, name=None):
    out = tmp_path / (name or f"countertop-{version}.ctpkg")
    build_package(Path(root), version, key.read_bytes(), out, SMALL)
    return out


def rewrite(src: Path, dst: Path, change, extra: dict[str, bytes] | None = None) -> Path:
    """Copy a package member by member, letting `change(name, data)` alter (or drop: None) each; add `extra`."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w:gz") as tout:
        members = [(info.name, change(info.name, tin.extractfile(info).read())) for info in tin]
        for name, data in members + list((extra or {}).items()):
            if data is not None:
                new = tarfile.TarInfo(name)
                new.size = len(data)
                tout.addfile(new, io.BytesIO(data))
    return dst


def test_a_good_package_verifies(tmp_path, release):
    key, public = release
    pkg = verify_package(make(tmp_path, key, "1.0.0"), public)
    assert pkg.version == "1.0.0" and "firmware/security/update.py" in pkg.files


def test_refusals(tmp_path, release):
    key, public = release
    good = make(tmp_path, key, "1.0.0")
    cases = {
        "tampered file": (
            rewrite(good, tmp_path / "t1", lambda n, d: d + b"#" if n == "files/firmware/core/flow/__init__.py" else d),
            "differs from the signed manifest",
        ),
        "tampered manifest": (
            rewrite(good, tmp_path / "t2", lambda n, d: d.replace(b"1.0.0", b"9.0.0") if n == "manifest.json" else d),
            "does not verify",
        ),
        "unsigned": (rewrite(good, tmp_path / "t3", lambda n, d: None if n == "manifest.sig" else d), "unsigned"),
        "extra file": (
            rewrite(good, tmp_path / "t4", lambda n, d: d, {"files/firmware/backdoor.py": b"pass"}),
            "do not match its manifest",
        ),
        "not a package": (tmp_path / "junk", "not a readable package"),
    }
    (tmp_path / "junk").write_bytes(b"\x00garbage" * 10)
    for path, message in cases.values():
        with pytest.raises(UpdateError, match=message):
            verify_package(path, public)
    other_key = tmp_path / "other.pem"
    new_release_key(other_key)
    with pytest.raises(UpdateError, match="does not verify"):
        verify_package(make(tmp_path, other_key, "1.0.0", name="foreign.ctpkg"), public)
    with pytest.raises(UpdateError, match="no \\[update\\] release_key"):
        verify_package(good, "")


def test_path_traversal_is_refused(tmp_path, release):
    key, public = release
    evil = tmp_path / "evil.ctpkg"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("files/../../etc/cron.d/x")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(UpdateError, match="not a plain file inside"):
        verify_package(evil, public)


def test_slots_rollback_and_no_downgrade(tmp_path, release):
    key, public = release
    slots = Slots(tmp_path / "slots")
    config = ROOT / "config" / "sim.toml"
    check = self_check(config)
    assert slots.install(verify_package(make(tmp_path, key, "1.0.0"), public)) == "a"
    assert (tmp_path / "slots" / "current").resolve().name == "a"
    assert "kept" in slots.boot_check(check)  # the slot's own code reads the config: healthy
    assert slots.boot_check(check).endswith("nothing on trial")

    broken = tmp_path / "broken"  # 1.1.0 cannot even import its CLI
    for top in SMALL:
        src = ROOT / top
        (shutil.copytree if src.is_dir() else shutil.copy)(src, broken / top)
    (broken / "firmware" / "shell" / "cli.py").write_text("this is not python(\n")
    assert slots.install(verify_package(make(tmp_path, key, "1.1.0", root=broken), public)) == "b"
    assert (tmp_path / "slots" / "current").resolve().name == "b"
    outcome = slots.boot_check(check)
    assert "failed its self-check" in outcome and "back to slot a" in outcome
    state = slots.state()
    assert (state["active"], state["trial"], state["bad"]) == ("a", False, ["1.1.0"])
    assert (tmp_path / "slots" / "current").resolve().name == "a"

    for version in ("1.1.0", "1.0.0", "0.9.0"):  # no way back to an accepted or older version
        with pytest.raises(UpdateError, match="not newer"):
            slots.install(verify_package(make(tmp_path, key, version, name=f"again-{version}"), public))
    assert slots.install(verify_package(make(tmp_path, key, "1.1.1"), public)) == "b"


def test_a_slot_edited_after_install_fails_the_check(tmp_path, release):
    key, public = release
    slots = Slots(tmp_path / "slots")
    slots.install(verify_package(make(tmp_path, key, "2.0.0"), public))
    (tmp_path / "slots" / "a" / "firmware" / "core" / "money.py").write_text("# edited on the box\n")
    assert "money.py changed" in slots.boot_check(self_check(ROOT / "config" / "sim.toml"))


def _config_with(tmp_path, public: str) -> Path:
    cfg = tmp_path / "terminal.toml"
    cfg.write_text(SIM_TOML.read_text(encoding="utf-8") + f'\n[update]\nrelease_key = "{public}"\n', encoding="utf-8")
    return cfg


def _cli(monkeypatch, capsys, lines: list[str], *argv: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(line + "\n" for line in lines)))
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def test_update_needs_the_admin_pin(tmp_path, release, monkeypatch, capsys):
    key, public = release
    cfg, data = _config_with(tmp_path, public), tmp_path / "data"
    pkg = make(tmp_path, key, "3.0.0")
    for pin in ("8888", "1234"):  # the manager's PIN, a wrong PIN
        code, out = _cli(monkeypatch, capsys, [pin], "update", str(pkg), "--config", str(cfg), "--data-dir", str(data))
        assert code == 1 and "needs the admin PIN" in out
    assert not (data / "slots" / "state.json").exists()
    code, out = _cli(monkeypatch, capsys, ["9999"], "update", str(pkg), "--config", str(cfg), "--data-dir", str(data))
    assert code == 0 and "installed into slot a" in out, out
    code, out = _cli(monkeypatch, capsys, ["9999"], "update", str(pkg), "--config", str(cfg), "--data-dir", str(data))
    assert code == 1 and "not newer" in out
    code, out = _cli(monkeypatch, capsys, [], "boot-check", "--config", str(cfg), "--data-dir", str(data))
    assert code == 0 and "kept" in out
    with sqlite3.connect(data / "journal.sqlite3") as db:
        actions = [r[0] for r in db.execute("SELECT action FROM audit ORDER BY id")]
    assert actions == ["sign-in refused", "sign-in refused", "sign-in", "update installed", "sign-in", "update refused"]
    journal = Journal(data / "journal.sqlite3")
    assert journal.verify_audit()[0]
    journal.close()


def test_keys_load_by_components(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    c1, c2 = "0123456789ABCDEF0123456789ABCDEF", "FEDCBA9876543210FEDCBA9876543210"
    code, out = _cli(
        monkeypatch, capsys, ["8888", c1, c2], "keys", "load", "tmk", "--config", str(SIM_TOML), "--data-dir", str(data)
    )
    assert code == 1 and "needs the admin PIN" in out
    assert KeyStore(data / "keys").get("tmk") is None
    code, out = _cli(
        monkeypatch, capsys, ["9999", c1, c2], "keys", "load", "tmk", "--config", str(SIM_TOML), "--data-dir", str(data)
    )
    assert code == 0
    key = bytes(keys.combine([bytes.fromhex(c1), bytes.fromhex(c2)]))
    kcv = keys.kcv("tdes", key).hex().upper()[:6]
    assert f"component 1 KCV {keys.kcv('tdes', bytes.fromhex(c1)).hex().upper()[:6]}" in out
    assert f"key tmk stored, KCV {kcv}" in out
    assert c1 not in out and c2 not in out and key.hex().upper() not in out.upper()
    assert KeyStore(data / "keys").get("tmk") == key
    sealed = (data / "keys" / "tmk.sealed").read_text()
    assert key.hex() not in sealed.lower() and json.loads(sealed)["kcv"].startswith(kcv)
    assert (data / "keys" / "device.key").stat().st_mode & 0o777 == 0o600
    code, out = _cli(monkeypatch, capsys, [], "keys", "list", "--config", str(SIM_TOML), "--data-dir", str(data))
    assert code == 0 and "tmk" in out and kcv in out
    code, out = _cli(
        monkeypatch,
        capsys,
        ["9999", c1, "XYZ"],
        "keys",
        "load",
        "mk2",
        "--config",
        str(SIM_TOML),
        "--data-dir",
        str(data),
    )
    assert code == 1 and "component 2 is not hex" in out and KeyStore(data / "keys").get("mk2") is None


def test_a_sealed_key_does_not_open_elsewhere(tmp_path):
    store = KeyStore(tmp_path / "k")
    store.put("tmk", bytes(16), "tdes")
    (tmp_path / "k" / "tmk.sealed").rename(tmp_path / "k" / "other.sealed")  # renamed: wrong AAD
    from firmware.errors import KeyMaterialError

    with pytest.raises(KeyMaterialError, match="does not open"):
        store.get("other")


def test_configuration_install_needs_the_admin(tmp_path, monkeypatch, capsys):
    live, data = tmp_path / "countertop.toml", tmp_path / "data"
    shutil.copyfile(SIM_TOML, live)
    new = tmp_path / "new.toml"
    new.write_text(
        SIM_TOML.read_text(encoding="utf-8").replace("max_failures = 3", "max_failures = 5"), encoding="utf-8"
    )
    broken = tmp_path / "broken.toml"
    broken.write_text("[terminal\\n", encoding="utf-8")
    code, out = _cli(
        monkeypatch, capsys, ["9999"], "config", "install", str(broken), "--config", str(live), "--data-dir", str(data)
    )
    assert code == 2 and "not valid TOML" in out and live.read_bytes() == SIM_TOML.read_bytes()
    code, out = _cli(
        monkeypatch, capsys, ["8888"], "config", "install", str(new), "--config", str(live), "--data-dir", str(data)
    )
    assert code == 1 and "needs the admin PIN" in out and live.read_bytes() == SIM_TOML.read_bytes()
    code, out = _cli(
        monkeypatch, capsys, ["9999"], "config", "install", str(new), "--config", str(live), "--data-dir", str(data)
    )
    assert code == 0 and "max_failures = 5" in live.read_text(encoding="utf-8")
    assert (tmp_path / "countertop.toml.previous").read_bytes() == SIM_TOML.read_bytes()
    with sqlite3.connect(data / "journal.sqlite3") as db:
        actions = [r[0] for r in db.execute("SELECT action FROM audit ORDER BY id")]
    assert actions == ["sign-in refused", "sign-in", "configuration installed"]
