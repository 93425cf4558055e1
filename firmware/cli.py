"""The `countertop` command: run on real hardware, run on the simulator, check a config file."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from datetime import date
from pathlib import Path

from . import logs
from .config import Config, load
from .errors import ConfigError, TerminalError

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"


def _run(cfg: Config) -> int:
    from drivers.display import ConsoleDisplay
    from drivers.hid import open_input_device
    from drivers.printer import ReceiptPrinter

    from .terminal import Devices, Terminal

    stream = sys.stdout if cfg.display.tty == "-" else open(cfg.display.tty, "w", encoding="utf-8")  # noqa: SIM115
    devices = Devices(open_keypad=lambda: open_input_device(cfg.keypad),
                      open_magstripe=lambda: open_input_device(cfg.magstripe),
                      printer=ReceiptPrinter(cfg.printer), display=ConsoleDisplay(stream, cfg.display.width))
    terminal = Terminal(cfg, devices)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, terminal.stop)
        await terminal.run()

    asyncio.run(main())
    return 0


def _journal_path(args: argparse.Namespace) -> Path | None:
    data = Path(args.data_dir) if args.data_dir else load(args.config).terminal.data_dir
    path = data / "journal.sqlite3"
    if not path.exists():
        print(f"countertop: no journal in {data}", file=sys.stderr)
        return None
    return path


def _audit(args: argparse.Namespace) -> int:
    from .journal import Journal

    path = _journal_path(args)
    if path is None:
        return 2
    journal = Journal(path)
    try:
        ok, summary = journal.verify_audit()
    finally:
        journal.close()
    print(f"audit log {'ok' if ok else 'BROKEN'}: {summary}")
    return 0 if ok else 1


def _report(args: argparse.Namespace) -> int:
    from . import reports
    from .journal import Journal
    from .money import Currency

    first, last = args.first, args.last or args.first
    for value in (first, last):
        try:
            date.fromisoformat(value)
        except ValueError:
            print(f"countertop: {value!r} is not a date (YYYY-MM-DD)", file=sys.stderr)
            return 2
    path = _journal_path(args)
    if path is None:
        return 2
    rules = reports.rules_from(load(args.config))
    journal = Journal(path)
    try:
        if args.command == "export":
            sys.stdout.write(reports.as_csv(journal.rows_between(first, last)))
            return 0
        rows = journal.rows_between(first, last)
        currency = Currency.of(rows[0]["currency"] if rows else "CNY")
        report = reports.build(journal.figures(first, last), date.fromisoformat(first), date.fromisoformat(last),
                               currency.alpha)
        found = reports.anomalies(journal.anomaly_rows(first, last), rules, currency)
    finally:
        journal.close()
    if args.format == "json":
        print(reports.as_json(report, found))
    elif args.format == "csv":
        sys.stdout.write(reports.report_csv(report, currency))
    else:
        print("\n".join(reports.as_text(report, currency) + reports.anomalies_text(found)))
    return 0


def _hash_pin() -> int:
    import getpass

    from .operators import hash_pin

    if sys.stdin.isatty():
        pin, again = getpass.getpass("operator PIN: "), getpass.getpass("again: ")
        if pin != again:
            print("countertop: the two PINs differ", file=sys.stderr)
            return 2
    else:
        pin = sys.stdin.readline().strip()
    try:
        print(hash_pin(pin))
    except ValueError as exc:
        print(f"countertop: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `countertop` console command."""
    parser = argparse.ArgumentParser(prog="countertop", description="Countertop payment terminal firmware")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run the terminal on real hardware")
    p_run.add_argument("--config", default=str(CONFIG_DIR / "terminal.toml"))
    p_run.add_argument("--debug", action="store_true", help="log flow steps to the log file")
    p_sim = sub.add_parser("sim", help="run the terminal on the hardware simulator")
    p_sim.add_argument("--config", default=str(CONFIG_DIR / "sim.toml"))
    p_sim.add_argument("--data", help="data folder for the journal (default: the config's data_dir)")
    p_sim.add_argument("--scenario", help="run the steps of a scenario TOML file headless and print a JSON report")
    p_sim.add_argument("--debug", action="store_true", help="log flow steps to the log file")
    sub.add_parser("hash-pin", help="read an operator PIN (without echo) and print its hash for [operators]")
    today = date.today().isoformat()
    for name, helptext in (("report", "sales report for a date range (text, csv or json)"),
                           ("export", "every transaction of a date range as CSV, one row each")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--from", dest="first", default=today, help="first local date, YYYY-MM-DD (default today)")
        p.add_argument("--to", dest="last", default=None, help="last local date, YYYY-MM-DD (default: --from)")
        p.add_argument("--data-dir", help="the terminal's data folder (default: the config's data_dir)")
        p.add_argument("--config", default=str(CONFIG_DIR / "terminal.toml"))
        if name == "report":
            p.add_argument("--format", choices=("text", "csv", "json"), default="text")
    p_aud = sub.add_parser("audit", help="check the audit log's hash chain")
    p_aud.add_argument("action", choices=("verify",))
    p_aud.add_argument("--data-dir", help="the terminal's data folder (default: the config's data_dir)")
    p_aud.add_argument("--config", default=str(CONFIG_DIR / "terminal.toml"))
    p_chk = sub.add_parser("check-config", help="validate configuration files and exit")
    p_chk.add_argument("files", nargs="*", default=[str(CONFIG_DIR / "terminal.toml")])
    args = parser.parse_args(argv)

    try:
        if args.command == "hash-pin":
            return _hash_pin()
        if args.command in ("report", "export"):
            return _report(args)
        if args.command == "audit":
            return _audit(args)
        if args.command == "check-config":
            for f in args.files:
                cfg = load(f)
                print(f"{f}: ok (terminal {cfg.terminal.terminal_id}, {cfg.terminal.currency.alpha})")
            return 0
        cfg = load(args.config)
        level = logging.DEBUG if args.debug else logging.INFO
        if args.command == "run":
            logs.setup(level, cfg.terminal.data_dir / "countertop.log")
            return _run(cfg)
        data = Path(args.data) if args.data else cfg.terminal.data_dir
        logs.setup(level, data / "countertop.log", console_level=logging.CRITICAL)
        if args.scenario:
            from hwsim.scenario import run_scenario
            return run_scenario(args.scenario, cfg, Path(args.data) if args.data else None)
        from hwsim.console import interactive
        return interactive(cfg, data)
    except ConfigError as exc:
        print(f"countertop: {exc}", file=sys.stderr)
        return 2
    except TerminalError as exc:
        print(f"countertop: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
