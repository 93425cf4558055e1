"""The `countertop` command: run on real hardware or on the simulator, and the back-office commands.

Each subcommand is an `_add_<command>` that declares its options and names its handler, followed by that
handler; `main` builds the parser from the list of them and turns errors into one line and an exit status."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from firmware.config import Config, load
from firmware.errors import ConfigError, TerminalError
from firmware.shell import logs

if TYPE_CHECKING:
    from drivers.display import Display
    from drivers.hid import InputDevice
    from firmware.config import InputDeviceConfig
    from firmware.shell.terminal import Terminal

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


def build_terminal(
    cfg: Config, display: Display, open_input: Callable[[InputDeviceConfig], InputDevice] | None = None
) -> Terminal:
    """The terminal wired to every device the config names: keypad, magstripe reader and (when
    [scanner] is there) the 2D scanner through `open_input` (evdev's by default), the printer; the
    contactless reader and the wallet provider are opened by the Terminal from the same config."""
    from drivers import hid
    from drivers.printer import ReceiptPrinter
    from firmware.shell.terminal import Devices, Terminal

    opener = open_input or hid.open_input_device  # looked up now, so a test can stand in for evdev
    scanner = cfg.scanner
    devices = Devices(
        open_keypad=lambda: opener(cfg.keypad),
        open_magstripe=lambda: opener(cfg.magstripe),
        printer=ReceiptPrinter(cfg.printer),
        display=display,
        open_scanner=(lambda: opener(scanner)) if scanner is not None else None,
    )
    return Terminal(cfg, devices)


def serve(terminal: Terminal) -> int:
    """Run the terminal's loop until SIGINT or SIGTERM asks it to stop cleanly."""

    import asyncio  # here: the commands that run no loop do not pay for asyncio (and the ssl it imports)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, terminal.stop)
        await terminal.run()

    asyncio.run(main())
    return 0


# --- what several commands share -------------------------------------------------------------------------

_AddParser = Callable[..., argparse.ArgumentParser]  # the subcommands' add_parser: name, help=... -> parser


def _data_dir_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="the terminal's data folder (default: the config's data_dir)")


def _config_option(p: argparse.ArgumentParser, file: str = "terminal.toml", what: str | None = None) -> None:
    p.add_argument("--config", default=str(CONFIG_DIR / file), help=what)


def _log_level(args: argparse.Namespace) -> int:
    return logging.DEBUG if args.debug else logging.INFO


def _journal_path(args: argparse.Namespace) -> Path | None:
    data = Path(args.data_dir) if args.data_dir else load(args.config).terminal.data_dir
    path = data / "journal.sqlite3"
    if not path.exists():
        print(f"countertop: no journal in {data}", file=sys.stderr)
        return None
    return path


def _slots(cfg: Config, data_dir: str | None) -> Path:
    data = Path(data_dir) if data_dir else cfg.terminal.data_dir
    slots = Path(cfg.update.slots_dir)
    return slots if slots.is_absolute() else data / slots


# --- the commands: each one's options, then what it does --------------------------------------------------


def _add_run(add: _AddParser) -> None:
    p = add("run", help="run the terminal on real hardware")
    _config_option(p)
    p.add_argument("--debug", action="store_true", help="log flow steps to the log file")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    cfg = load(args.config)
    logs.setup(_log_level(args), cfg.terminal.data_dir / "countertop.log")
    return serve(build_terminal(cfg, _display(cfg)))


def _display(cfg: Config) -> Display:
    """The display `[display] kind` names, with spoken prompts when `[audio]` is enabled."""
    from drivers.display import ConsoleDisplay

    display: Display
    if cfg.display.kind == "framebuffer":
        from drivers.framebuffer import open_display

        display = open_display(cfg.display)
    else:
        stream = sys.stdout if cfg.display.tty == "-" else open(cfg.display.tty, "w", encoding="utf-8")  # noqa: SIM115
        display = ConsoleDisplay(stream, cfg.display.width)
    if cfg.audio.enabled:
        from drivers.audio import Speaker

        display.listen(Speaker(cfg.audio).heard)
    return display


def _add_sim(add: _AddParser) -> None:
    p = add("sim", help="run the terminal on the hardware simulator")
    _config_option(p, "sim.toml")
    p.add_argument("--data", help="data folder for the journal (default: the config's data_dir)")
    p.add_argument("--scenario", help="run the steps of a scenario TOML file headless and print a JSON report")
    p.add_argument("--debug", action="store_true", help="log flow steps to the log file")
    p.add_argument(
        "--kill-harness",
        action="store_true",
        help="run the terminal as its own process, SIGKILL it at random points of random "
        "transactions, reboot it and check the journal against the hosts each time",
    )
    p.add_argument(
        "--touch", action="store_true", help="a touch screen over the display: the cardholder signs on it (sign)"
    )
    p.add_argument("--kills", type=int, default=2000, help="kill harness: stop after this many kills")
    p.add_argument("--seed", type=int, default=7, help="kill harness: random seed")
    p.add_argument("--minutes", type=float, default=30.0, help="kill harness: stop after this long")
    p.set_defaults(handler=_sim)


def _sim(args: argparse.Namespace) -> int:
    """The composition root that puts the simulator and the firmware together: the one place firmware
    imports hwsim (lazily, here)."""
    cfg = load(args.config)
    if args.kill_harness:
        from hwsim.killharness import run_cli

        return run_cli(args.kills, args.seed, args.minutes, Path(args.config), args.data)
    data = Path(args.data) if args.data else cfg.terminal.data_dir
    logs.setup(_log_level(args), data / "countertop.log", console_level=logging.CRITICAL)
    if args.scenario:
        from hwsim.scenario import run_scenario

        return run_scenario(args.scenario, cfg, Path(args.data) if args.data else None)
    from hwsim.console import interactive

    return interactive(
        cfg, data, chip_reader=True, touch=args.touch
    )  # chip: a private pcscd with vpcd, where this machine has them


def _add_hash_pin(add: _AddParser) -> None:
    add("hash-pin", help="read an operator PIN (without echo) and print its hash for [operators]").set_defaults(
        handler=_hash_pin
    )


def _hash_pin(args: argparse.Namespace) -> int:
    import getpass

    from firmware.security.operators import hash_pin

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


def _date_range_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--from", dest="first", default=date.today().isoformat(), help="first local date, YYYY-MM-DD (default today)"
    )
    p.add_argument("--to", dest="last", default=None, help="last local date, YYYY-MM-DD (default: --from)")
    _data_dir_option(p)
    _config_option(p)


def _add_report(add: _AddParser) -> None:
    p = add("report", help="sales report for a date range (text, csv or json)")
    _date_range_options(p)
    p.add_argument("--format", choices=("text", "csv", "json"), default="text")
    p.add_argument(
        "--width", type=int, default=32, choices=(32, 42, 48), help="text columns: 32 for 58 mm paper, 48 for 80 mm"
    )
    p.add_argument("--charts", metavar="DIR", help="also write sales-by-hour.png and method-split.png here")
    p.set_defaults(handler=_report)


def _add_export(add: _AddParser) -> None:
    p = add("export", help="every transaction of a date range as CSV, one row each")
    _date_range_options(p)
    p.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from firmware.core import reports
    from firmware.core.money import Currency
    from firmware.records.journal import Journal

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
        report = reports.build(
            journal.figures(first, last), date.fromisoformat(first), date.fromisoformat(last), currency.alpha
        )
        found = reports.anomalies(journal.anomaly_rows(first, last), rules, currency)
    finally:
        journal.close()
    if args.charts:
        folder = Path(args.charts)
        folder.mkdir(parents=True, exist_ok=True)
        for name, png in reports.charts(report, currency).items():
            (folder / name).write_bytes(png)
    if args.format == "json":
        print(reports.as_json(report, found))
    elif args.format == "csv":
        sys.stdout.write(reports.report_csv(report, currency))
    else:
        print("\n".join(reports.as_text(report, currency, args.width) + reports.anomalies_text(found, args.width)))
    return 0


def _add_audit(add: _AddParser) -> None:
    p = add("audit", help="check the audit log's hash chain")
    p.add_argument("action", choices=("verify",))
    _data_dir_option(p)
    _config_option(p)
    p.set_defaults(handler=_audit)


def _audit(args: argparse.Namespace) -> int:
    from firmware.records.journal import Journal

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


def _add_journal(add: _AddParser) -> None:
    p = add(
        "journal",
        help="start a new, empty journal in place of a missing one (counters "
        "continue from their copy beside the key store)",
    )
    p.add_argument("action", choices=("new",))
    _data_dir_option(p)
    _config_option(p)
    p.set_defaults(handler=_journal_new)


def _journal_new(args: argparse.Namespace) -> int:
    from firmware.records.journal import Journal

    data = Path(args.data_dir) if args.data_dir else load(args.config).terminal.data_dir
    journal = Journal.start_new(data / "journal.sqlite3")
    try:
        stan = journal.counter("stan") or 0
    finally:
        journal.close()
    print(f"{data / 'journal.sqlite3'}: a new, empty journal; counters continue (next STAN {stan % 999_999 + 1})")
    return 0


def _add_keys(add: _AddParser) -> None:
    p = add("keys", help="load a key by components (admin PIN) or list stored keys' check values")
    p.add_argument("action", choices=("load", "list"))
    p.add_argument("name", nargs="?", help="key name, e.g. tmk (the terminal master key)")
    p.add_argument("--scheme", choices=("tdes", "aes"), help="default: [keys] scheme, else tdes")
    p.add_argument(
        "--components",
        type=int,
        default=2,
        choices=range(1, 10),
        metavar="N",
        help="how many components make the key (default 2)",
    )
    _data_dir_option(p)
    _config_option(p)
    p.set_defaults(handler=_keys)


def _keys(args: argparse.Namespace) -> int:
    from firmware.records.journal import Journal
    from firmware.security.keystore import KeyStore
    from firmware.shell.admin import load_key, reader

    cfg = load(args.config)
    data = Path(args.data_dir) if args.data_dir else cfg.terminal.data_dir
    cfg = dataclasses.replace(cfg, terminal=dataclasses.replace(cfg.terminal, data_dir=data))
    if args.action == "list":
        for name, scheme, check in KeyStore(data / "keys").listing():
            print(f"{name:12} {scheme:5} KCV {check[:6]}")
        return 0
    if not args.name:
        print("countertop: keys load needs a key name (tmk for the terminal master key)", file=sys.stderr)
        return 2
    data.mkdir(parents=True, exist_ok=True)
    journal = Journal(data / "journal.sqlite3")
    try:
        load_key(cfg, journal, args.name, args.scheme or cfg.keys.scheme or "tdes", args.components, reader())
    finally:
        journal.close()
    return 0


def _add_update(add: _AddParser) -> None:
    p = add("update", help="install a signed software package into the other slot (admin PIN)")
    p.add_argument("package")
    _data_dir_option(p)
    _config_option(p)
    p.set_defaults(handler=_update)


def _update(args: argparse.Namespace) -> int:
    from firmware.records.journal import Journal
    from firmware.security.update import Slots, verify_package
    from firmware.shell.admin import reader, sign_in

    cfg = load(args.config)
    data = Path(args.data_dir) if args.data_dir else cfg.terminal.data_dir
    data.mkdir(parents=True, exist_ok=True)
    journal = Journal(data / "journal.sqlite3")
    try:
        sign_in(cfg, journal, reader(), "admin", f"update from {Path(args.package).name}")
        try:
            package = verify_package(Path(args.package), cfg.update.release_key)
            slot = Slots(_slots(cfg, args.data_dir)).install(package)
        except TerminalError as exc:
            journal.audit("admin", "update refused", f"{Path(args.package).name}: {exc}", datetime.now().astimezone())
            raise
        journal.audit("admin", "update installed", f"{package.version} into slot {slot}", datetime.now().astimezone())
    finally:
        journal.close()
    print(
        f"version {package.version} installed into slot {slot}; it runs from the next start and is kept only "
        f"when it passes the boot check"
    )
    return 0


def _add_boot_check(add: _AddParser) -> None:
    p = add(
        "boot-check",
        help="keep a freshly installed slot if it passes its self-check, "
        "else return to the previous slot (run before the service)",
    )
    _data_dir_option(p)
    _config_option(p)
    p.set_defaults(handler=_boot_check)


def _boot_check(args: argparse.Namespace) -> int:
    from firmware.security.update import Slots, self_check

    cfg = load(args.config)
    print(Slots(_slots(cfg, args.data_dir)).boot_check(self_check(Path(args.config).resolve())))
    return 0


def _add_release(add: _AddParser) -> None:
    p = add("release", help="make a release key, or a signed package of this source tree")
    p.add_argument("action", choices=("keygen", "sign"))
    p.add_argument("--key", required=True, help="the Ed25519 private key file (PEM)")
    p.add_argument("--version", help="the package's version, N.N.N")
    p.add_argument("--out", help="the package file to write")
    p.add_argument("--root", default=str(CONFIG_DIR.parent), help="the source tree (default: this one)")
    p.set_defaults(handler=_release)


def _release(args: argparse.Namespace) -> int:
    from firmware.security.update import build_package, new_release_key

    if args.action == "keygen":
        public = new_release_key(Path(args.key))
        print(f'private key written to {args.key} (keep it off the terminals)\n[update] release_key = "{public}"')
        return 0
    if not (args.version and args.out):
        print("countertop: release sign needs --version and --out", file=sys.stderr)
        return 2
    manifest = build_package(Path(args.root), args.version, Path(args.key).read_bytes(), Path(args.out))
    print(f"{args.out}: version {args.version}, {len(manifest['files'])} files, signed")  # type: ignore[arg-type]
    return 0


def _add_items(add: _AddParser) -> None:
    p = add("items", help="import the item catalogue from CSV (manager PIN), or list it")
    p.add_argument("action", choices=("import", "list"))
    p.add_argument("file", nargs="?", help="CSV with the header plu,name,price,tax_rate")
    p.add_argument("--replace", action="store_true", help="remove items that are not in the file")
    _data_dir_option(p)
    _config_option(p)
    p.set_defaults(handler=_items)


def _items(args: argparse.Namespace) -> int:
    cfg = load(args.config)
    data = Path(args.data_dir) if args.data_dir else cfg.terminal.data_dir
    return _items_list(cfg, data) if args.action == "list" else _items_import(args, cfg, data)


def _items_list(cfg: Config, data: Path) -> int:
    from firmware.core.money import format_minor
    from firmware.core.text import clean
    from firmware.records.journal import Journal

    cur = cfg.terminal.currency
    path = data / "journal.sqlite3"
    if not path.exists():
        print(f"countertop: no journal in {data}", file=sys.stderr)
        return 2
    journal = Journal(path)
    try:
        for item in journal.catalog().values():
            print(
                f"{item.plu:>8}  {format_minor(item.price, cur):>10}  {item.tax_rate_bp / 100:>5.2f}%  "
                f"{clean(item.name)}"
            )  # an older import may hold control characters
    finally:
        journal.close()
    return 0


def _items_import(args: argparse.Namespace, cfg: Config, data: Path) -> int:
    """Check the whole CSV first (nothing is imported from a file with a bad line), then sign in and import."""
    from firmware.core.items import parse_catalog
    from firmware.records.journal import Journal
    from firmware.shell.admin import reader, sign_in

    if not args.file:
        print("countertop: items import needs a CSV file (plu,name,price,tax_rate)", file=sys.stderr)
        return 2
    try:
        raw = Path(args.file).read_bytes()
    except OSError as exc:
        print(f"countertop: {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    items, errors = parse_catalog(raw, cfg.terminal.currency, max_price=cfg.terminal.max_amount)
    if errors:
        for error in errors:
            print(f"{args.file}: {error}", file=sys.stderr)
        print("countertop: nothing imported; fix the lines above and import again", file=sys.stderr)
        return 2
    data.mkdir(parents=True, exist_ok=True)
    journal = Journal(data / "journal.sqlite3")
    try:
        cfg = dataclasses.replace(cfg, terminal=dataclasses.replace(cfg.terminal, data_dir=data))
        sign_in(cfg, journal, reader(), "manager", f"import items from {Path(args.file).name}")
        written, removed = journal.import_items(items, datetime.now().astimezone(), replace=args.replace)
        journal.audit(
            "manager",
            "items imported",
            f"{Path(args.file).name}: {written} written, {removed} removed",
            datetime.now().astimezone(),
        )
    finally:
        journal.close()
    print(f"{written} items imported, {removed} removed; the terminal reads them at its next F3")
    return 0


def _add_config(add: _AddParser) -> None:
    p = add("config", help="check a new configuration file and install it (admin PIN)")
    p.add_argument("action", choices=("install",))
    p.add_argument("file", help="the new configuration")
    _config_option(p, what="the one it replaces")
    _data_dir_option(p)
    p.set_defaults(handler=_config_install)


def _config_install(args: argparse.Namespace) -> int:
    """Check a new configuration, then (admin PIN, audited) put it in place of the running one atomically."""
    import hashlib
    import os
    import shutil

    from firmware.records.journal import Journal
    from firmware.shell.admin import reader, sign_in

    new, target = Path(args.file), Path(args.config)
    fresh = load(new)  # refuse a broken file before anyone signs in
    data = Path(args.data_dir) if args.data_dir else fresh.terminal.data_dir
    data.mkdir(parents=True, exist_ok=True)
    running = load(target) if target.exists() else fresh
    cfg = dataclasses.replace(running, terminal=dataclasses.replace(running.terminal, data_dir=data))
    journal = Journal(data / "journal.sqlite3")
    try:
        sign_in(cfg, journal, reader(), "admin", f"install configuration {new.name}")
        tmp = target.with_name(target.name + ".new")
        shutil.copyfile(new, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        if target.exists():
            shutil.copyfile(target, target.with_name(target.name + ".previous"))
        os.replace(tmp, target)
        digest = hashlib.sha256(target.read_bytes()).hexdigest()[:16]
        journal.audit("admin", "configuration installed", f"{target} sha256 {digest}", datetime.now().astimezone())
    finally:
        journal.close()
    print(f"{target}: replaced (the old one is {target.name}.previous); restart the terminal to use it")
    return 0


def _add_check_config(add: _AddParser) -> None:
    p = add("check-config", help="validate configuration files and exit")
    p.add_argument("files", nargs="*", default=[str(CONFIG_DIR / "terminal.toml")])
    p.set_defaults(handler=_check_config)


def _check_config(args: argparse.Namespace) -> int:
    for f in args.files:
        cfg = load(f)
        print(f"{f}: ok (terminal {cfg.terminal.terminal_id}, {cfg.terminal.currency.alpha})")
    return 0


def _add_doctor(add: _AddParser) -> None:
    p = add(
        "doctor",
        help="list the board's devices and check host, wallet, clock, keys, disk and configuration "
        "(run it as the service user); prints the config lines for what it found",
    )
    _config_option(p)
    p.add_argument("--timeout", type=float, default=5.0, help="seconds for each network check (default 5)")
    p.set_defaults(handler=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    from firmware.shell.doctor import Probes, diagnose, render

    try:
        cfg, problem = load(args.config), ""
    except ConfigError as exc:
        cfg, problem = None, str(exc)
    report = diagnose(cfg, problem, args.config, Probes(timeout=args.timeout))
    sys.stdout.write(render(report, args.config))
    return 1 if report.failed else 0


def _config_or_none(path: str) -> Config | None:
    """The configuration when it loads; None when it does not (a device test may still name its device)."""
    try:
        return load(path)
    except ConfigError as exc:
        print(f"countertop: {exc} (using the command line's device)", file=sys.stderr)
        return None


def _add_print_test(add: _AddParser) -> None:
    p = add("print-test", help="print a test ticket on the configured printer, or on the one named here")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--serial", metavar="DEVICE", default="", help="a serial printer, e.g. /dev/ttyUSB0")
    where.add_argument("--usb", metavar="VVVV:PPPP", default="", help="a USB printer by vendor:product")
    where.add_argument("--file", metavar="DEVICE", default="", help="a printer device file, e.g. /dev/usb/lp0")
    where.add_argument("--network", metavar="HOST[:PORT]", default="", help="a network printer (port 9100)")
    p.add_argument("--baudrate", type=int, help="serial speed (default: the config's, else 9600)")
    p.add_argument("--width", type=int, choices=(32, 42, 48), help="characters per line: 32 for 58 mm, 48 for 80 mm")
    p.add_argument("--chinese", action=argparse.BooleanOptionalAction, help="Chinese firmware (GB18030 via FS &)")
    _config_option(p)
    p.set_defaults(handler=_print_test)


def _print_test(args: argparse.Namespace) -> int:
    from firmware.shell.devicetest import print_test, printer_config

    named = args.serial or args.usb or args.file or args.network
    cfg = _config_or_none(args.config) if named else load(args.config)
    printer = printer_config(
        cfg.printer if cfg else None,
        serial=args.serial,
        usb=args.usb,
        file=args.file,
        network=args.network,
        baudrate=args.baudrate,
        width=args.width,
        chinese=args.chinese,
    )
    return print_test(printer, sys.stdout)


def _add_read_test(add: _AddParser) -> None:
    p = add("read-test", help="read from one device: keypad, magstripe, scanner, nfc or chip")
    p.add_argument("device", choices=("keypad", "magstripe", "scanner", "nfc", "chip"))
    p.add_argument("--path", default="", help="input device: /dev/input/... instead of the config's")
    p.add_argument("--usb", default="", help="input device: vendor:product instead of the config's")
    p.add_argument("--name", default="", help="input device: its evdev name instead of the config's")
    p.add_argument("--nfc-device", default="", help="nfcpy path instead of [contactless] device")
    p.add_argument("--seconds", type=float, default=30.0, help="how long to wait (default 30)")
    p.add_argument("--count", type=int, default=0, help="stop after this many reads (default 1; keypad 20)")
    _config_option(p)
    p.set_defaults(handler=_read_test)


def _read_test(args: argparse.Namespace) -> int:
    import asyncio

    from firmware.config import ContactlessConfig, InputDeviceConfig
    from firmware.shell import devicetest

    named = args.path or args.usb or args.name or args.nfc_device
    cfg = _config_or_none(args.config) if named else load(args.config)
    aids = cfg.contactless.aids if cfg else ContactlessConfig.aids
    if args.device == "chip":
        return devicetest.read_chip(aids, args.seconds, sys.stdout)
    if args.device == "nfc":
        path = args.nfc_device or (cfg.contactless.device if cfg else "")
        if not path:
            print("countertop: read-test nfc needs [contactless] device or --nfc-device", file=sys.stderr)
            return 2
        return asyncio.run(devicetest.read_nfc(path, aids, args.seconds, sys.stdout))
    configured = getattr(cfg, args.device, None) if cfg else None
    keys = cfg.keypad.keys if cfg else {}
    if named:
        if args.usb and not devicetest.USB_ID.fullmatch(args.usb):
            print(f"countertop: --usb {args.usb!r}: must be VVVV:PPPP in hex", file=sys.stderr)
            return 2
        dev_cfg = InputDeviceConfig(path=args.path, usb=args.usb, name=args.name)
    elif configured is None:
        print(f"countertop: read-test {args.device} needs [{args.device}] or --path/--usb/--name", file=sys.stderr)
        return 2
    else:
        dev_cfg = configured
    count = args.count or (20 if args.device == "keypad" else 1)
    return asyncio.run(devicetest.read_input(args.device, dev_cfg, keys, count, args.seconds, sys.stdout))


def _add_bench(add: _AddParser) -> None:
    p = add("bench", help="measure speed and footprint on the simulator, beside floors (bench/suite.py)")
    p.add_argument("--quick", action="store_true", help="short windows and small counts (seconds, not minutes)")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE ('-': JSON on stdout)")
    p.set_defaults(handler=_bench)


def _bench(args: argparse.Namespace) -> int:
    """Run bench/suite.py of this checkout with this interpreter (a development tool: not in an install)."""
    import subprocess

    suite = Path(__file__).resolve().parents[2] / "bench" / "suite.py"
    if not suite.is_file():
        print(f"countertop: bench needs a checkout of the project ({suite} is not there)", file=sys.stderr)
        return 2
    argv = [
        sys.executable,
        str(suite),
        *(["--quick"] if args.quick else []),
        *(["--json", args.json] if args.json else []),
    ]
    return subprocess.run(argv, check=False).returncode


def _add_office(add: _AddParser, subcommands: bool = True) -> None:
    p = add("office", help="the back office: the terminals' journals in PostgreSQL, reports, the owner's page")
    if subcommands:  # importing office.cli costs ~50 ms: `main` skips it unless the command line says `office`
        from office.cli import declare  # its subcommands and their handlers (which import psycopg, aiohttp)

        declare(p)


# --- the command line ------------------------------------------------------------------------------------

_COMMANDS = (
    _add_run,
    _add_sim,
    _add_hash_pin,
    _add_report,
    _add_export,
    _add_audit,
    _add_journal,
    _add_keys,
    _add_update,
    _add_boot_check,
    _add_release,
    _add_items,
    _add_config,
    _add_check_config,
    _add_doctor,
    _add_print_test,
    _add_read_test,
    _add_bench,
)


def build_parser(office: bool = True) -> argparse.ArgumentParser:
    """`countertop` and its subcommands, in the order --help lists them; each names its handler. `office`: with
    the back office's own subcommands (which import office.cli)."""
    top = argparse.ArgumentParser(prog="countertop", description="Countertop payment terminal firmware")
    sub = top.add_subparsers(dest="command", required=True)
    for add_command in _COMMANDS:
        add_command(sub.add_parser)
    _add_office(sub.add_parser, office)
    return top


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `countertop` console command: one line and an exit status for what goes wrong."""
    args = build_parser(office="office" in (sys.argv[1:] if argv is None else argv)).parse_args(argv)
    try:
        code: int = args.handler(args)
        return code
    except ConfigError as exc:
        print(f"countertop: {exc}", file=sys.stderr)
        return 2
    except TerminalError as exc:
        print(f"countertop: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a folder or file the command needs: one line, no traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"countertop: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
