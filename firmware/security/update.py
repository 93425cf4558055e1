"""Signed software updates: packages signed with Ed25519, installed into one of two slots, kept only when
the new slot passes its self-check at the next boot.

A package is a tar file holding `manifest.json` (name, version, SHA-256 of every file), `manifest.sig`
(the Ed25519 signature of manifest.json's bytes) and the files under `files/`. It is refused when the
signature does not verify under the release key in config, when any file differs from the manifest or
is not in it, when a path tries to leave the slot, and when its version is not above every version this
terminal has ever accepted (no rollback to an older, perhaps vulnerable, release).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from firmware.errors import UpdateError

log = logging.getLogger(__name__)

MAX_PACKAGE = 64 * 1024 * 1024
SLOTS = ("a", "b")
RELEASE_FILES = ("pyproject.toml", "countertop", "README.md", "firmware", "drivers", "hw-sim", "config")


def version_tuple(text: str) -> tuple[int, ...]:
    """ "1.4.10" -> (1, 4, 10); UpdateError for anything else."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or not all(p.isdigit() and len(p) <= 6 for p in parts):
        raise UpdateError(f"version {text!r} is not N.N.N")
    return tuple(int(p) for p in parts)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _safe(path: str) -> bool:
    p = PurePosixPath(path)
    return bool(path) and not p.is_absolute() and ".." not in p.parts and "\\" not in path


# --- the release side --------------------------------------------------------------------------


def new_release_key(out: Path) -> str:
    """Write a new Ed25519 private key (PEM, mode 0600) and return its public key in hex for config."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def build_package(
    root: Path, version: str, private_pem: bytes, out: Path, paths: tuple[str, ...] = RELEASE_FILES
) -> dict[str, object]:
    """Make a signed package of `paths` under `root` (directories whole, minus caches). Returns the manifest."""
    version_tuple(version)
    key = serialization.load_pem_private_key(private_pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise UpdateError("the release key is not an Ed25519 private key")
    files: dict[str, bytes] = {}
    for top in paths:
        base = root / top
        candidates = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for path in candidates:
            rel = path.relative_to(root).as_posix()
            if "__pycache__" in rel or rel.endswith(".pyc") or ".egg-info" in rel:
                continue
            files[rel] = path.read_bytes()
    manifest = {
        "format": 1,
        "name": "countertop",
        "version": version,
        "files": {rel: _sha256(data) for rel, data in files.items()},
    }
    body = json.dumps(manifest, sort_keys=True, indent=1).encode()
    with tarfile.open(out, "w:gz") as tar:
        for name, data in [("manifest.json", body), ("manifest.sig", key.sign(body))] + [
            (f"files/{rel}", data) for rel, data in files.items()
        ]:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755 if name.endswith("/countertop") else 0o644
            tar.addfile(info, io.BytesIO(data))
    return manifest


# --- the terminal side ------------------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    """A package whose signature and contents have been checked."""

    version: str
    manifest: bytes
    files: dict[str, bytes]


def verify_package(path: Path, release_key_hex: str) -> Package:
    """Open and check a package; UpdateError says why it is refused."""
    if not release_key_hex:
        raise UpdateError("no [update] release_key in config: every package is refused")
    try:
        public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(release_key_hex))
    except ValueError:
        raise UpdateError("[update] release_key is not an Ed25519 public key") from None
    try:
        if path.stat().st_size > MAX_PACKAGE:
            raise UpdateError(f"{path} is larger than {MAX_PACKAGE // 2**20} MiB")
        members: dict[str, bytes] = {}
        with tarfile.open(path, "r:*") as tar:
            for info in tar:
                if not info.isfile() or not _safe(info.name):
                    raise UpdateError(f"package member {info.name!r} is not a plain file inside the package")
                f = tar.extractfile(info)
                members[info.name] = f.read() if f else b""
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise UpdateError(f"{path} is not a readable package: {exc}") from None
    body, sig = members.pop("manifest.json", None), members.pop("manifest.sig", None)
    if body is None or sig is None:
        raise UpdateError("unsigned package: manifest.json or manifest.sig is missing")
    try:
        public.verify(sig, body)
    except InvalidSignature:
        raise UpdateError("the signature does not verify under the release key (tampered or foreign)") from None
    try:
        manifest = json.loads(body)
        version, listed = str(manifest["version"]), dict(manifest["files"])
    except (ValueError, KeyError, TypeError):
        raise UpdateError("the signed manifest is malformed") from None
    version_tuple(version)
    files = {name[len("files/") :]: data for name, data in members.items() if name.startswith("files/")}
    if set(members) - {f"files/{n}" for n in files}:
        raise UpdateError("the package holds files outside files/")
    if set(files) != set(listed):
        extra = sorted(set(files) ^ set(listed))
        raise UpdateError(f"the package's files do not match its manifest ({extra[0]})")
    for name, data in files.items():
        if not _safe(name) or _sha256(data) != listed[name]:
            raise UpdateError(f"{name} differs from the signed manifest")
    return Package(version, body, files)


class Slots:
    """Two install slots under one folder, `current` a symlink to the active one; state.json says which is
    active, which came before, whether the active one is still on trial, and the highest version accepted."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def state(self) -> dict[str, object]:
        """The slot state (empty slots before the first install)."""
        try:
            return dict(json.loads((self.folder / "state.json").read_text()))
        except FileNotFoundError:
            return {"active": "", "previous": "", "trial": False, "versions": {}, "highest": "0", "bad": []}
        except (OSError, ValueError) as exc:
            raise UpdateError(f"slot state is unreadable: {exc}") from None

    def _write(self, state: dict[str, object]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / "state.json.tmp"
        with open(tmp, "w") as f:
            json.dump(state, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.folder / "state.json")
        self._point(str(state["active"]))

    def _point(self, slot: str) -> None:
        link, tmp = self.folder / "current", self.folder / "current.tmp"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        if not slot:  # back to the software installed before any update
            if link.is_symlink():
                link.unlink()
            return
        os.symlink(slot, tmp)
        os.replace(tmp, link)  # atomic: `current` is always one slot or the other

    def install(self, package: Package) -> str:
        """Unpack into the inactive slot and make it active on trial; returns the slot. UpdateError for a
        version that is not above every version accepted before."""
        state = self.state()
        if version_tuple(package.version) <= version_tuple(str(state["highest"])):
            raise UpdateError(f"version {package.version} is not newer than {state['highest']} (no rollback)")
        active = str(state["active"])
        target = next(s for s in SLOTS if s != active)
        root = self.folder / target
        shutil.rmtree(root, ignore_errors=True)
        for name, data in package.files.items():
            dest = root / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
            if name == "countertop":
                dest.chmod(0o755)
        (root / "MANIFEST.json").write_bytes(package.manifest)
        os.sync()
        versions = dict(state["versions"])  # type: ignore[call-overload]
        versions[target] = package.version
        self._write(
            {
                **state,
                "active": target,
                "previous": active,
                "trial": True,
                "versions": versions,
                "highest": package.version,
            }
        )
        log.info("update: %s installed into slot %s (on trial until the next boot check)", package.version, target)
        return target

    def boot_check(self, healthy: Callable[[Path], str]) -> str:
        """At boot: a slot on trial is kept when `healthy(slot)` returns "" and abandoned for the previous one
        otherwise. Returns what happened, for the log and the screen."""
        state = self.state()
        active = str(state["active"])
        if not state["trial"] or not active:
            return f"slot {active or '-'} running, nothing on trial"
        version = dict(state["versions"]).get(active, "?")  # type: ignore[call-overload]
        problem = healthy(self.folder / active)
        if not problem:
            self._write({**state, "trial": False})
            return f"slot {active} ({version}) passed its self-check and is kept"
        previous = str(state["previous"])
        bad = list(state.get("bad", [])) + [version]  # type: ignore[call-overload]
        self._write({**state, "active": previous, "previous": active, "trial": False, "bad": bad})
        log.error(
            "update: slot %s (%s) failed its self-check (%s); back to slot %s",
            active,
            version,
            problem,
            previous or "-",
        )
        return f"slot {active} ({version}) failed its self-check: {problem}; back to slot {previous or '-'}"


def self_check(config_path: Path, timeout: float = 120.0) -> Callable[[Path], str]:
    """The default boot self-check: every file as the manifest says, and the slot's own code imports and
    accepts the configuration (`countertop check-config` run from the slot)."""

    def check(slot: Path) -> str:
        try:
            manifest = json.loads((slot / "MANIFEST.json").read_text())
            for name, digest in manifest["files"].items():
                if _sha256((slot / name).read_bytes()) != digest:
                    return f"{name} changed since it was installed"
        except (OSError, ValueError, KeyError) as exc:
            return f"manifest unusable: {exc}"
        env = {**os.environ, "PYTHONPATH": f"{slot}{os.pathsep}{slot / 'hw-sim'}"}
        try:
            done = subprocess.run(
                [sys.executable, "-m", "firmware.shell.cli", "check-config", str(config_path)],
                cwd=slot,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return f"check-config did not finish in {timeout:g} s"
        if done.returncode != 0:
            return (done.stderr.strip().splitlines() or ["check-config failed"])[-1][:200]
        return ""

    return check
