"""Scenario files are checked whole before any step runs: a wrong file is exit 2 naming the step and key."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from conftest import ROOT, sim_config
from hwsim.scenario import MAX_TIMEOUT, ScenarioError, load_steps, run_scenario

GOOD = ROOT / "tests" / "scenarios" / "sale_approved.toml"


def _file(tmp_path, text: str):
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        ("[[step]]\nkeys = 5\n", "step 1: keys: expected a string, got an integer"),
        ('[[step]]\nexpect_journal = "x"\n', "step 1: expect_journal: expected a table such as"),
        ("step = [1, 2]\n", "step 1: expected a [[step]] table, got an integer"),
        ('step = "x"\n', "no [[step]] tables"),
        (
            '[[step]]\nexpect_screen = "X"\ntimeout = nan\n',
            "step 1: timeout: must be above 0 and at most 600 seconds, got nan",
        ),
        ('[[step]]\nexpect_screen = "X"\ntimeout = inf\n', "step 1: timeout: must be above 0"),
        ('[[step]]\nexpect_screen = "X"\ntimeout = -1\n', "step 1: timeout: must be above 0"),
        ('[[step]]\nexpect_screen = "X"\ntimeout = 0\n', "step 1: timeout: must be above 0"),
        ('[[step]]\nexpect_screen = "X"\ntimeout = 1e9\n', "step 1: timeout: must be above 0 and at most 600"),
        (
            '[[step]]\nexpect_screen = "X"\ntimeout = "5"\n',
            "step 1: timeout: expected a number of seconds, got a string",
        ),
        (
            '[[step]]\nexpect_screen = "X"\ntimeout = true\n',
            "step 1: timeout: expected a number of seconds, got true or false",
        ),
        ('[[step]]\nrestart = "bogus"\n', "step 1: restart: no restart kind 'bogus'; known: clean, crash"),
        ("[[step]]\nrestart = true\n", "step 1: restart: expected a string"),
        ('[[step]]\nswipe = "no-such-card"\n', "step 1: swipe: no test card 'no-such-card'; known: visa-approve"),
        ('[[step]]\ntap = "no-such-card"\n', "step 1: tap: no contactless card 'no-such-card'"),
        ('[[step]]\ntap_profile = "/nonexistent.toml"\n', "step 1: tap_profile: not a card profile"),
        ('[[step]]\nswipe_raw = "\\u001b[2J"\n', "step 1: swipe_raw: a card reader cannot type '\\x1b'"),
        ('[[step]]\nswipe_track2 = ";4242=\u00b2?"\n', "step 1: swipe_track2: a card reader cannot type '²'"),
        ('[[step]]\nkeys = "12{ENTRE}"\n', "step 1: keys: the keypad has no key {ENTRE}"),
        ('[[step]]\nkeys = "1\u00b2"\n', "step 1: keys: the keypad has no key '²'"),
        ('[[step]]\npin = "12a4"\n', "step 1: pin: must be 4 to 12 digits"),
        ('[[step]]\nfault = "meteor"\n', "step 1: fault: no host fault 'meteor'"),
        ("[[step]]\nremove_card = false\n", "step 1: remove_card: must be true"),
        ("[[step]]\nexpect_receipts = -1\n", "step 1: expect_receipts: expected a count from 0 to 10000"),
        ("[[step]]\nexpect_receipts = 2.5\n", "step 1: expect_receipts: expected a count"),
        ('[[step]]\nexpect_journal = { count = "1" }\n', "step 1: expect_journal: count: expected a count"),
        (
            '[[step]]\nexpect_journal = { status = "approved" }\n',
            "step 1: expect_journal: 'status' is neither count nor last_<column>",
        ),
        (
            "[[step]]\nexpect_journal = { last_amount = 1.5 }\n",
            "step 1: expect_journal: last_amount: expected a string, integer",
        ),
        ('[[step]]\nexpect_screen = ""\n', "step 1: expect_screen: must not be empty"),
        ('[[step]]\nnote = 3\nkeys = "1"\n', "step 1: note: expected a string"),
        ('description = 5\n[[step]]\nkeys = "1"\n', "description: expected a string"),
        ('[[step]]\nkeys = "1"\n[[step]]\nkeys = "2"\nswipe = "visa-approve"\n', "step 2: needs exactly one action"),
        ("x = " + "[" * 3000 + "]" * 3000 + "\n", "nested too deeply"),
    ],
)
def test_a_wrong_file_names_the_step_and_the_key(tmp_path, text, message):
    path = _file(tmp_path, text)
    with pytest.raises(ScenarioError) as err:
        load_steps(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value), str(err.value)


def test_the_shipped_scenarios_and_timeouts_in_range(tmp_path):
    for path in (ROOT / "tests" / "scenarios").glob("*.toml"):
        assert load_steps(path)
    steps = load_steps(
        _file(
            tmp_path,
            f'[[step]]\nexpect_screen = "X"\ntimeout = 0.5\n[[step]]\nexpect_screen = "Y"\ntimeout = {MAX_TIMEOUT:g}\n',
        )
    )
    assert [s["timeout"] for s in steps] == [0.5, MAX_TIMEOUT]


def test_keys_the_configured_keypad_lacks(tmp_path):
    path = _file(tmp_path, '[[step]]\nkeys = "{F4}"\n')
    with pytest.raises(ScenarioError, match=r"step 1: keys: the keypad has no key \{F4\}; it has ENTER, CANCEL"):
        load_steps(path, ("ENTER", "CANCEL", "CLEAR"))


def test_a_bad_step_anywhere_stops_the_run_before_the_first_step(tmp_path, capsys):
    text = GOOD.read_text(encoding="utf-8") + '\n[[step]]\nrestart = "bogus"\n'
    out = io.StringIO()
    assert run_scenario(_file(tmp_path, text), sim_config(), tmp_path / "data", out=out) == 2
    assert out.getvalue() == ""  # no report: no step ran
    assert not (tmp_path / "data").exists()  # and no simulator started
    assert capsys.readouterr().err.strip().endswith("step 8: restart: no restart kind 'bogus'; known: clean, crash")


def test_the_command_exits_2_without_a_traceback(tmp_path):
    path = _file(tmp_path, "[[step]]\nkeys = 5\n")
    proc = subprocess.run(
        [sys.executable, "-m", "firmware.shell.cli", "sim", "--scenario", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"countertop: {path}: step 1: keys: expected a string, got an integer"
