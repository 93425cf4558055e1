"""The `countertop` command line, in process: every subcommand in --help's order reaches its handler, and
every way a command is misused or stopped ends in one line on stderr and the exit status scripts rely on
(2: the command or its input is wrong, 1: the terminal or the machine refused, 130: Ctrl-C)."""

from __future__ import annotations

import argparse
import io
import sys

import pytest

from conftest import SIM_TOML
from firmware.shell import cli

# The subcommands in the order `countertop --help` lists them, each with the least it needs to parse.
COMMANDS = {
    "run": [],
    "sim": [],
    "hash-pin": [],
    "report": [],
    "export": [],
    "audit": ["verify"],
    "journal": ["new"],
    "keys": ["list"],
    "update": ["package.tar"],
    "boot-check": [],
    "release": ["keygen", "--key", "k.pem"],
    "items": ["list"],
    "config": ["install", "new.toml"],
    "check-config": [],
    "doctor": [],
    "print-test": [],
    "read-test": ["keypad"],
    "bench": [],
    "office": ["migrate"],
}


def test_every_command_in_help_order_reaches_its_handler():
    parser = cli.build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert list(commands.choices) == list(COMMANDS)
    handlers = set()
    for name, needs in COMMANDS.items():
        args = parser.parse_args([name, *needs])
        assert args.command == name and callable(args.handler)
        handlers.add(args.handler)
    assert len(handlers) == len(COMMANDS) - 1  # report and export share theirs; no two others do


def _main(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["release", "sign", "--key", "k.pem"], "release sign needs --version and --out"),
        (
            ["keys", "load", "--config", str(SIM_TOML), "--data-dir", "{tmp}"],
            "keys load needs a key name (tmk for the terminal master key)",
        ),
        (
            ["items", "import", "--config", str(SIM_TOML), "--data-dir", "{tmp}"],
            "items import needs a CSV file (plu,name,price,tax_rate)",
        ),
        (
            ["items", "import", "{tmp}/none.csv", "--config", str(SIM_TOML), "--data-dir", "{tmp}"],
            "{tmp}/none.csv: No such file or directory",
        ),
        (["report", "--from", "2024-13-01", "--config", str(SIM_TOML)], "'2024-13-01' is not a date (YYYY-MM-DD)"),
        (
            ["report", "--from", "2024-01-01", "--to", "2024-02-30", "--config", str(SIM_TOML)],
            "'2024-02-30' is not a date (YYYY-MM-DD)",
        ),
        (["export", "--data-dir", "{tmp}"], "no journal in {tmp}"),
        (["audit", "verify", "--data-dir", "{tmp}"], "no journal in {tmp}"),
        (["items", "list", "--config", str(SIM_TOML), "--data-dir", "{tmp}"], "no journal in {tmp}"),
        (["check-config", "{tmp}/absent.toml"], "{tmp}/absent.toml: cannot read: No such file or directory"),
        (["run", "--config", "{tmp}/absent.toml"], "{tmp}/absent.toml: cannot read: No such file or directory"),
        (["print-test", "--config", "{tmp}/absent.toml"], "{tmp}/absent.toml: cannot read: No such file or directory"),
        (
            ["read-test", "nfc", "--config", "{tmp}/absent.toml"],
            "{tmp}/absent.toml: cannot read: No such file or directory",
        ),
        (
            ["sim", "--kill-harness", "--config", "{tmp}/absent.toml"],
            "{tmp}/absent.toml: cannot read: No such file or directory",
        ),
    ],
)
def test_a_wrong_command_line_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    code, out, err = _main(capsys, *(a.replace("{tmp}", str(tmp_path)) for a in argv))
    assert (code, out, err) == (2, "", f"countertop: {message.replace('{tmp}', str(tmp_path))}\n")
    assert list(tmp_path.iterdir()) == []  # nothing was made on the way to the refusal


def test_a_file_the_machine_refuses_is_one_line_and_exit_1(tmp_path, capsys):
    key = tmp_path / "absent" / "release.pem"
    code, out, err = _main(capsys, "release", "keygen", "--key", str(key))
    assert (code, out, err) == (1, "", f"countertop: {key}: No such file or directory\n")


def test_check_config_says_ok_per_file(capsys):
    code, out, err = _main(capsys, "check-config", str(SIM_TOML), str(SIM_TOML))
    assert (code, err) == (0, "") and out == f"{SIM_TOML}: ok (terminal SIM00001, CNY)\n" * 2


class _Interrupted(io.StringIO):
    def readline(self, size: int | None = -1) -> str:
        raise KeyboardInterrupt


def test_ctrl_c_exits_130_without_a_traceback(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", _Interrupted())
    assert _main(capsys, "hash-pin") == (130, "", "")
