"""Shared fixtures: the simulator's config with short timeouts, and a running Simulator."""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import subprocess
import warnings
from pathlib import Path

import pytest

from firmware.config import Config, Timeouts, load
from office_fixtures import chromium, link, office, office_db, postgres  # noqa: F401 - the back office's

ROOT = Path(__file__).resolve().parent.parent
SIM_TOML = ROOT / "config" / "sim.toml"

# pyemv/psec call TripleDES with short keys; cryptography warns. Not ours to fix; keep the output readable.
warnings.filterwarnings("ignore", message=".*TripleDES.*")


class _Recorder(logging.Handler):
    """Keeps the records it is given."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def no_loop_errors():
    """Every test fails on an asyncio ERROR record (a task exception nobody retrieved, a callback that
    raised) and on a simulated terminal whose loop died, even when the test itself passed."""
    recorder = _Recorder()
    watched = [logging.getLogger(name) for name in ("asyncio", "hwsim.simulator")]
    for logger in watched:
        logger.addHandler(recorder)
    try:
        yield recorder
        gc.collect()  # un-retrieved task exceptions are reported when the task is freed
    finally:
        for logger in watched:
            logger.removeHandler(recorder)
    errors = [f"{r.name}: {r.getMessage()}" + (f" ({r.exc_info[1]!r})" if r.exc_info else "") for r in recorder.records]
    assert not errors, "the event loop reported errors:\n" + "\n".join(errors)


def sim_config(**timeouts: float) -> Config:
    """config/sim.toml with some timeouts replaced (seconds)."""
    cfg = load(SIM_TOML)
    return dataclasses.replace(cfg, timeouts=dataclasses.replace(cfg.timeouts, **timeouts))


@pytest.fixture
def sim(tmp_path):
    """A running simulator on config/sim.toml (host timeout 2 s) with its own data folder."""
    from hwsim import Simulator

    with Simulator(tmp_path / "data", sim_config(host=2.0), late_delay=3.0) as s:
        yield s


@pytest.fixture
def csim(tmp_path, pcscd):
    """A running simulator with the chip reader: the simulated slot behind the private pcscd."""
    from firmware.config import ChipConfig
    from hwsim import Simulator

    cfg = dataclasses.replace(sim_config(host=2.0), chip=ChipConfig(reader="hwsim chip slot"))
    with Simulator(tmp_path / "data", cfg) as s:
        yield s


@pytest.fixture
def asim(tmp_path):
    """A running simulator whose UnionPay codes go to the acquirer as cards ([unionpay] via = "acquirer")."""
    from firmware.config import UnionPayConfig
    from hwsim import Simulator

    cfg = dataclasses.replace(sim_config(host=2.0), unionpay=UnionPayConfig(via="acquirer"))
    with Simulator(tmp_path / "data", cfg) as s:
        yield s


@pytest.fixture(scope="session")
def pcscd():
    """A private pcscd with the simulated chip slot's virtual reader (hwsim/pcscd.py), for the whole session.

    Installs pcscd and vsmartcard-vpcd first when they are missing (tools/system-packages: apt-get, as root);
    skips, saying why, where that cannot be done (no apt, not root, no mount namespaces). pcsc-lite reads
    PCSCLITE_CSOCK_NAME once per process, so one daemon serves the session (tests stop and start it in place)."""
    from hwsim.pcscd import PcscdUnavailable, PrivatePcscd

    done = subprocess.run(
        ["sh", str(ROOT / "tools" / "system-packages"), "run", "test"], capture_output=True, text=True, timeout=900
    )
    if done.returncode in (1, 2):
        pytest.skip(f"chip reader tests need pcscd and vsmartcard-vpcd: {done.stderr.strip()}")
    assert done.returncode == 0, f"tools/system-packages failed:\n{done.stderr}"
    daemon = PrivatePcscd()
    try:
        daemon.start()
    except PcscdUnavailable as exc:
        daemon.close()
        pytest.skip(f"no private pcscd here: {exc}")
    saved = {name: os.environ.get(name) for name in daemon.environ()}
    os.environ.update(daemon.environ())
    try:
        yield daemon
    finally:
        daemon.close()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def wait_until(check, timeout: float = 10.0, what: str = "condition"):
    """Poll `check()` until it returns something truthy (for state that settles in the background)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached in {timeout} s")
        time.sleep(0.02)


def sales(sim) -> list[dict]:
    """The journal's sale rows."""
    return [r for r in sim.journal() if r["kind"] == "sale"]


def assert_ledger_agrees(sim) -> None:
    """The acquirer and the journal tell the same story: no customer charged without a recorded approval,
    none charged twice, no refund or void landed that the journal does not show, none shown that did not land."""
    ledger, rows = sim.host.ledger, sim.journal()
    by_rrn = {r["rrn"]: r for r in rows if r["kind"] == "sale"}
    charged = sorted(
        e["stan"]
        for e in ledger
        if e["kind"] == "sale" and e["response_code"] == "00" and not e["reversed"] and not e["voided"]
    )
    recorded = sorted(r["stan"] for r in rows if r["kind"] == "sale" and r["status"] == "approved")
    assert charged == recorded, f"host charged {charged}, journal approved {recorded}"
    voided_host = sorted(e["stan"] for e in ledger if e["kind"] == "sale" and e["voided"])
    voided_journal = sorted(r["stan"] for r in rows if r["kind"] == "sale" and r["status"] == "voided")
    assert voided_host == voided_journal, f"host voided {voided_host}, journal {voided_journal}"
    for rrn, sale in by_rrn.items():
        host_refunds = sum(
            e["amount"]
            for e in ledger
            if e["kind"] == "refund" and e.get("original_rrn") == rrn and e["response_code"] == "00"
        )
        card_refunds = sum(
            r["amount"]
            for r in rows
            if r["kind"] == "refund"
            and r["method"] == "card"
            and r["original_id"] == sale["id"]
            and r["status"] == "approved"
        )
        assert host_refunds == card_refunds, f"sale {rrn}: host refunded {host_refunds}, journal {card_refunds}"
    undecided = [r for r in rows if r["status"] in ("pending", "unknown", "queued")]
    assert not undecided, f"rows without a settled outcome: {undecided}"


def print_todays_report(sim, receipts_before: int) -> str:
    """From the result screen: MENU, the manager PIN, 3; returns the printed report's text."""
    sim.keys("{ENTER}{MENU}")
    sim.wait_for("MANAGER PIN")
    sim.keys("8888{ENTER}")
    sim.wait_for("3 TODAY'S REPORT")
    sim.keys("3")
    sim.wait_for("REPORT PRINTED")
    return sim.wait_for_receipts(receipts_before + 1)[receipts_before]


__all__ = [
    "print_todays_report",
    "ROOT",
    "SIM_TOML",
    "Timeouts",
    "assert_ledger_agrees",
    "sales",
    "sim_config",
    "wait_until",
]
