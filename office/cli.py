"""`countertop office ...`: the back office's commands. `declare` adds them under the `office` command of the
terminal's CLI; each handler imports what it needs (psycopg, aiohttp) only when it runs."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from datetime import date
from pathlib import Path
from typing import Any

from firmware.errors import ConfigError

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "config" / "office.toml"


def declare(parser: argparse.ArgumentParser) -> None:
    """The office's subcommands, under `countertop office`."""
    sub = parser.add_subparsers(dest="office_command", required=True)

    def add(name: str, help_text: str, handler: Any, db: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", default=str(DEFAULT_CONFIG), help="the back office's office.toml")
        if db:
            p.add_argument("--dsn", help="libpq connection string (default: the config's [database] dsn)")
        p.set_defaults(handler=handler)
        return p

    add("migrate", "create or bring up to date the back office's tables in PostgreSQL", _migrate)
    add("serve", "run the back office: the terminals' API and the owner's page", _serve)
    p = add("user", "add a user of the owner's page, or give one a new password", _user)
    p.add_argument("name")
    p.add_argument("--role", choices=("owner", "manager"), default="manager")
    p.add_argument("--shop", default="", help="a manager who sees only this shop's terminals")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p = add("terminal", "register a terminal (prints its token once) or list them", _terminal)
    p.add_argument("terminal_id", nargs="?", help="the terminal's [terminal] terminal_id; none: list them")
    p.add_argument("--shop", default="")
    p.add_argument("--rotate", action="store_true", help="give a registered terminal a new token")
    p.add_argument(
        "--new-journal",
        action="store_true",
        help="the terminal's storage was replaced: take its new journal (its rows go after the old ones)",
    )
    p.add_argument("--token-file", help="write the token to this file (mode 0600) instead of printing it")
    for name, text in (("report", "the books' report for a date range"), ("export", "every row of a range as CSV")):
        p = add(name, text, _report)
        p.add_argument("--from", dest="first", default=date.today().isoformat(), help="first local date, YYYY-MM-DD")
        p.add_argument("--to", dest="last", help="last local date (default: --from)")
        p.add_argument("--terminal", default="")
        p.add_argument("--shop", default="")
        if name == "report":
            p.add_argument("--format", choices=("text", "csv", "json"), default="text")
            p.add_argument("--width", type=int, default=48, choices=(32, 42, 48))
    add("rebuild-totals", "count the report totals again from the stored rows", _rebuild)
    p = add("tls-cert", "make a self-signed certificate and key for the back office", _tls_cert, db=False)
    p.add_argument("--host", action="append", required=True, help="a name or address terminals use (repeatable)")
    p.add_argument("--out", required=True, help="folder for office-cert.pem and office-key.pem")
    p.add_argument("--days", type=int, default=3650)


def _settings(args: argparse.Namespace) -> Any:
    from office.config import OfficeSettings, load

    if args.dsn and not Path(args.config).exists():
        return OfficeSettings("--dsn", args.dsn)
    settings = load(args.config)
    if args.dsn:
        import dataclasses

        settings = dataclasses.replace(settings, dsn=args.dsn)
    return settings


def _connect(args: argparse.Namespace) -> Any:
    import psycopg

    from office.errors import OfficeError

    try:
        return psycopg.connect(_settings(args).dsn, autocommit=True)
    except psycopg.Error as exc:
        raise OfficeError(f"cannot reach the back office's database: {str(exc).strip()}") from None


def _migrate(args: argparse.Namespace) -> int:
    from office.schema import MIGRATIONS, migrate

    with _connect(args) as conn:
        version = migrate(conn)
    print(f"office: database at schema {version} of {len(MIGRATIONS)}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import logging

    from office.schema import migrate
    from office.web import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _settings(args)
    with _connect(args) as conn:
        migrate(conn)
    serve(settings)
    return 0


def _user(args: argparse.Namespace) -> int:
    from office.users import add_user

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            print("countertop: the passwords differ", file=sys.stderr)
            return 2
    with _connect(args) as conn:
        add_user(conn, args.name, password, args.role, args.shop)
    print(f"office: user {args.name} ({args.role}{', shop ' + args.shop if args.shop else ''}) can sign in")
    return 0


def _terminal(args: argparse.Namespace) -> int:
    from office.users import add_terminal, take_new_journal

    with _connect(args) as conn:
        if not args.terminal_id:
            rows = conn.execute(
                "SELECT terminal_id, shop, last_contact, queue_depth, last_seq, last_refusal FROM terminals"
                " ORDER BY terminal_id"
            ).fetchall()
            for t, shop, contact, depth, seq, refusal in rows:
                seen = contact.isoformat(timespec="seconds") if contact else "never"
                waiting = "-" if depth is None else depth
                print(f"{t}  shop={shop or '-'}  last contact {seen}  waiting {waiting}  last seq {seq}")
                if refusal:
                    print(f"    refused: {refusal}")
            return 0
        if args.new_journal:
            ids, versions, batches = take_new_journal(conn, args.terminal_id)
            print(f"office: {args.terminal_id}'s new journal is taken: rows go after id {ids}, batch {batches}")
            return 0
        token = add_terminal(conn, args.terminal_id, args.shop, args.rotate)
    if args.token_file:
        path = Path(args.token_file)
        _private(path, (token + "\n").encode("ascii"))
        print(f"office: terminal {args.terminal_id} registered; its token is in {path} ([office] token_file)")
    else:
        print(token)
    return 0


def _report(args: argparse.Namespace) -> int:
    from firmware.core import reports as layout
    from firmware.core.money import Currency
    from office import reports
    from office.web import WORK_MEM

    try:
        first = date.fromisoformat(args.first)
        last = date.fromisoformat(args.last) if args.last else first
    except ValueError:
        raise ConfigError("--from and --to are dates, YYYY-MM-DD") from None
    settings = _settings(args)

    async def run() -> int:
        import psycopg

        async with await psycopg.AsyncConnection.connect(settings.dsn, autocommit=True, options=WORK_MEM) as conn:
            cur = await conn.execute(
                "SELECT terminal_id FROM terminals WHERE (%(s)s = '' OR shop = %(s)s)"
                " AND (%(t)s = '' OR terminal_id = %(t)s) ORDER BY terminal_id",
                {"s": args.shop, "t": args.terminal},
            )
            terminals = tuple(t for (t,) in await cur.fetchall())
            every = not args.shop and not args.terminal
            scope = reports.Scope(terminals, first, last, settings.currency, every)
            if args.office_command == "export":
                async with conn.transaction():
                    async for chunk in reports.export_csv(conn, scope):
                        sys.stdout.write(chunk)
                return 0
            r = await reports.report(conn, scope)
            found = await reports.anomalies(conn, scope, settings.rules, r)
        cur_info = Currency.of(settings.currency)
        if args.format == "json":
            print(json.dumps(reports.report_json(r, found, cur_info), ensure_ascii=False, indent=2))
        elif args.format == "csv":
            sys.stdout.write(layout.report_csv(r, cur_info))
        else:
            lines = layout.as_text(r, cur_info, args.width)
            lines += ["-" * args.width, f"TERMINALS: {', '.join(scope.terminals) or 'none'}"]
            lines += ["-" * args.width] + [f"* {f.rule}: {f.detail}" for f in found] if found else ["NOTHING UNUSUAL"]
            print("\n".join(lines))
        return 0

    return asyncio.run(run())


def _rebuild(args: argparse.Namespace) -> int:
    from office.schema import rebuild_totals

    with _connect(args) as conn:
        rebuild_totals(conn)
    print("office: totals counted again from the rows")
    return 0


def _tls_cert(args: argparse.Namespace) -> int:
    from office.tlscert import self_signed

    cert, key, fingerprint = self_signed(args.host, args.days)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "office-cert.pem").write_bytes(cert)
    _private(out / "office-key.pem", key)
    print(f"office: {out / 'office-cert.pem'} (give it to each terminal as [office] ca_file), SHA-256 {fingerprint}")
    return 0


def _private(path: Path, data: bytes) -> None:
    """Write a secret readable by its owner only (made so before anything is in it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
