"""The back office's web server (aiohttp): the terminals' API (a bearer token each; they write only their own rows)
and the owner's page with its JSON and CSV, behind a sign-in (session cookie: HttpOnly, SameSite=Strict, Secure
over TLS, expiring). PostgreSQL through a psycopg connection pool."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from firmware.core.money import Currency
from firmware.core.reports import report_csv
from firmware.errors import ConfigError
from office import ingest, reports, users, wechatnotify
from office.config import OfficeSettings

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "countertop_session"
WORK_MEM = "-c work_mem=64MB"  # a report's groupings in memory, not spilled to disk
MAX_DAYS = 3660  # the longest range a report covers
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(9998, 12, 31)  # the dates a report may ask for (its months stay dates)
MAX_FORM = 64 << 10  # the largest sign-in or sign-out body
SETTINGS = web.AppKey("settings", OfficeSettings)
POOL = web.AppKey("pool", AsyncConnectionPool)
NOTICES = web.AppKey("notices", wechatnotify.WechatNotices)
WAITERS = web.AppKey("waiters", dict)  # order number -> asyncio.Event set when its callback arrives


class _SignInGate:
    """Password checks one at a time up to users.CHECKS_AT_ONCE (scrypt's memory), with a bounded queue: a flood
    of sign-ins waits, or is told to come back, and never holds more than that many database connections."""

    def __init__(self) -> None:
        self.checks = asyncio.Semaphore(users.CHECKS_AT_ONCE)
        self.waiting = 0


GATE = web.AppKey("sign_in_gate", _SignInGate)
NOTICE_WAIT_MAX = 25.0  # seconds a terminal's notice request may wait
SIGN_IN_QUEUE = 16  # sign-ins waiting for a password check beyond these are answered 503 at once
# What follows the terminal id in its wallet order numbers (yymmddHHMMSS + 6 hex digits): a terminal asks
# only about order numbers it could have made.
_ORDER_TAIL = re.compile(r"[0-9]{12}[0-9A-F]{6}")
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@web.middleware
async def _guard(request: web.Request, handler: Any) -> web.StreamResponse:
    """Security headers on every answer; no caching of the API; the database being down is a 503, not a 500."""
    try:
        response = await handler(request)
    except psycopg.DataError as exc:  # a value the database cannot take (a NUL in a name): the asker's, not ours
        log.warning("office: a request the database cannot take: %s", exc)
        response = web.json_response({"error": "a value in the request cannot be stored or searched"}, status=400)
    except psycopg.Error as exc:
        log.error("office: database: %s", exc)
        response = web.json_response({"error": "the database is not available"}, status=503)
    response.headers.update(_HEADERS)
    if request.path.startswith("/api/"):
        response.headers["Cache-Control"] = "no-store"
    return response


async def _pool(app: web.Application) -> Any:
    pool = AsyncConnectionPool(
        app[SETTINGS].dsn,
        min_size=1,
        max_size=8,
        open=False,
        kwargs={"autocommit": True, "options": WORK_MEM},
        check=AsyncConnectionPool.check_connection,  # a connection the database dropped (a restart) is not handed out
    )
    await pool.open(wait=False)
    app[POOL] = pool
    yield
    await pool.close()


def make_app(settings: OfficeSettings) -> web.Application:
    """The application: routes, the pool opened at start and closed at cleanup."""
    app = web.Application(middlewares=[_guard], client_max_size=16 << 20)
    app[SETTINGS] = settings
    app[GATE] = _SignInGate()
    app.cleanup_ctx.append(_pool)
    app.router.add_post("/api/v1/journal", _journal)
    app.router.add_get("/", _index)
    app.router.add_static("/static/", STATIC)
    app.router.add_post("/api/login", _login)
    app.router.add_post("/api/logout", _logout)
    app.router.add_get("/api/me", _me)
    app.router.add_get("/api/report", _report)
    app.router.add_get("/api/report.csv", _report_csv)
    app.router.add_get("/api/export.csv", _export)
    app.router.add_get("/api/terminals", _terminals)
    app.router.add_get("/api/sale", _sale)
    app.router.add_get("/api/signature.png", _signature_png)
    app.router.add_get("/api/set-aside", _set_aside)
    app.router.add_post("/api/set-aside/retry", _set_aside_retry)
    if settings.wechat is not None:
        app[NOTICES] = wechatnotify.WechatNotices(settings.wechat)
        app[WAITERS] = {}
        app.router.add_post("/api/v1/wechat/notify", _wechat_notify)
        app.router.add_get("/api/v1/wallet/notice", _wallet_notice)
    return app


# --- the terminals' API ---------------------------------------------------------------------------------------


async def _journal(request: web.Request) -> web.Response:
    """A terminal's snapshots: stored in one transaction, the last seq acknowledged. The body is read before a
    database connection is taken, so terminals on slow links never hold the pool's connections."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme != "Bearer" or not token.strip():
        return web.json_response({"error": "unknown terminal token"}, status=401)
    try:
        payload = await request.json(loads=_loads)
    except (ValueError, RecursionError):
        payload = _NOT_JSON
    async with request.app[POOL].connection() as conn:
        terminal = await users.terminal_of(conn, token.strip())
        if terminal is None:
            return web.json_response({"error": "unknown terminal token"}, status=401)
        try:
            if payload is _NOT_JSON:
                raise ingest.BadBatch("the request is not JSON")
            batch = ingest.check(terminal, payload)
            resend = await ingest.store(conn, batch)
        except ingest.NotYours as exc:
            log.warning("office: terminal %s refused: %s", terminal, exc)
            await ingest.refused(conn, terminal, str(exc))
            return web.json_response({"error": str(exc)}, status=403)
        except ingest.ReplacedJournal as exc:
            log.error("office: %s", exc)
            await ingest.refused(conn, terminal, str(exc))
            return web.json_response({"error": str(exc)}, status=409)
        except ingest.BadBatch as exc:
            log.warning("office: terminal %s sent a bad request: %s", terminal, exc)
            await ingest.refused(conn, terminal, str(exc))
            return web.json_response({"error": str(exc)[:300]}, status=400)
    for row in batch.set_aside:
        log.warning("office: terminal %s: %s %d set aside: %s", terminal, row.entity, row.row_id, row.reason)
    answer: dict[str, Any] = {
        "terminal_id": terminal,
        "acknowledged": batch.last_seq,
        "stored": batch.count - len(batch.set_aside),
        "set_aside": [{"seq": r.seq, "reason": r.reason} for r in batch.set_aside],
    }
    if resend:  # rows set aside that the owner asked for again: the terminal queues them anew from its journal
        answer["resend"] = [r.wire() for r in resend]
    return web.json_response(answer)


_NOT_JSON = object()


async def _wechat_notify(request: web.Request) -> web.Response:
    """A WeChat Pay payment callback: believed (signature, time, merchant), decrypted and stored; 204. One that
    is not believed is answered 401 with WeChat's {"code": "FAIL"} and logged; WeChat sends it again."""
    now = datetime.now(UTC)
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        notice = request.app[NOTICES].read(headers, await request.read(), now)
    except wechatnotify.NoticeRefused as exc:
        log.warning("office: a WeChat Pay callback refused: %s", exc)
        return web.json_response({"code": "FAIL", "message": str(exc)[:120]}, status=401)
    if notice is not None:
        async with request.app[POOL].connection() as conn:
            await wechatnotify.store(conn, notice, now)
        log.info("office: WeChat Pay says order %s is %s", notice.out_trade_no, notice.trade_state)
        waiter = request.app[WAITERS].get(notice.out_trade_no)
        if waiter is not None:
            waiter.set()
    return web.Response(status=204)


async def _wallet_notice(request: web.Request) -> web.Response:
    """What a callback said about one of this terminal's orders (?order=…), waiting up to ?wait= seconds for
    one to arrive; 404 when none has. A terminal reads only its own orders (their numbers start with its id)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    order = request.query.get("order", "")
    try:
        wait = min(max(float(request.query.get("wait", "0")), 0.0), NOTICE_WAIT_MAX)
    except ValueError:
        wait = 0.0
    async with request.app[POOL].connection() as conn:
        terminal = await users.terminal_of(conn, token.strip()) if scheme == "Bearer" and token else None
        if terminal is None:
            return web.json_response({"error": "unknown terminal token"}, status=401)
        if not order.startswith(terminal) or not _ORDER_TAIL.fullmatch(order[len(terminal) :]):
            return web.json_response({"error": "not one of this terminal's orders"}, status=403)
        found = await wechatnotify.lookup(conn, order)
    if found is None and wait > 0:
        waiters = request.app[WAITERS]
        event: asyncio.Event = waiters.setdefault(order, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), wait)
        except TimeoutError:
            pass
        finally:
            if waiters.get(order) is event:
                del waiters[order]
        async with request.app[POOL].connection() as conn:
            found = await wechatnotify.lookup(conn, order)
    if found is None:
        return web.json_response({"error": "no callback for this order"}, status=404)
    return web.json_response(found)


def _loads(text: str) -> Any:
    return json.loads(text, parse_constant=_no_constant)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# --- the owner's page -----------------------------------------------------------------------------------------


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def _json_body(request: web.Request) -> dict[str, Any]:
    """A JSON object from a same-origin script (a form on another site cannot send application/json)."""
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="application/json only")
    if request.content_length is None or request.content_length > MAX_FORM:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_FORM, actual_size=request.content_length or 0)
    try:
        body = await request.json(loads=_loads)
    except (ValueError, RecursionError):
        raise web.HTTPBadRequest(text="not JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="not a JSON object")
    return body


async def _login(request: web.Request) -> web.Response:
    body = await _json_body(request)
    name, password = body.get("name"), body.get("password")
    if not isinstance(name, str) or not isinstance(password, str) or len(password) > 1024:
        raise web.HTTPBadRequest(text="name and password")
    if "\x00" in name:  # no user has such a name (the database could not even be asked)
        return web.json_response({"error": "wrong name or password"}, status=401)
    settings, gate = request.app[SETTINGS], request.app[GATE]
    if gate.waiting >= SIGN_IN_QUEUE:
        log.warning("office: %d sign-ins waiting already; %r is asked to try again", gate.waiting, name[:64])
        return web.json_response({"error": "busy, try again"}, status=503, headers={"Retry-After": "5"})
    gate.waiting += 1
    try:
        await gate.checks.acquire()
    finally:
        gate.waiting -= 1
    try:
        async with request.app[POOL].connection() as conn:
            got = await users.sign_in(conn, name, password, settings.server.session_hours)
    finally:
        gate.checks.release()
    if got is None:
        return web.json_response({"error": "wrong name or password"}, status=401)
    token, user = got
    response = web.json_response({"name": user.name, "role": user.role, "shop": user.shop})
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(settings.server.session_hours * 3600),
        httponly=True,
        secure=bool(settings.server.cert_file),
        samesite="Strict",
        path="/",
    )
    return response


async def _logout(request: web.Request) -> web.Response:
    await _json_body(request)
    token = request.cookies.get(COOKIE, "")
    if token:
        async with request.app[POOL].connection() as conn:
            await users.sign_out(conn, token)
    response = web.json_response({})
    response.del_cookie(COOKIE, path="/")
    return response


async def _user(request: web.Request, conn: Any) -> users.User:
    token = request.cookies.get(COOKIE, "")
    user = await users.session_user(conn, token) if token else None
    if user is None:
        raise web.HTTPUnauthorized(text="sign in first")
    return user


async def _me(request: web.Request) -> web.Response:
    async with request.app[POOL].connection() as conn:
        user = await _user(request, conn)
        cur = await conn.execute(
            "SELECT terminal_id, shop FROM terminals WHERE %(s)s = '' OR shop = %(s)s"
            ' ORDER BY terminal_id COLLATE "C"',
            {"s": user.shop},
        )
        terminals = [{"terminal_id": t, "shop": s} for t, s in await cur.fetchall()]
    return web.json_response({"name": user.name, "role": user.role, "shop": user.shop, "terminals": terminals})


@dataclass(frozen=True)
class _Asked:
    user: users.User
    scope: reports.Scope


async def _scope(request: web.Request, conn: Any) -> _Asked:
    """Who asks, and for which books: ?from=&to= (local dates), ?terminal= or ?shop= (default: all they see)."""
    user = await _user(request, conn)
    q = request.query
    try:
        first = date.fromisoformat(q.get("from", "")) if q.get("from") else date.today()
        last = date.fromisoformat(q.get("to", "")) if q.get("to") else first
    except ValueError:
        raise web.HTTPBadRequest(text="from and to are dates, YYYY-MM-DD") from None
    if last < first or last - first > timedelta(days=MAX_DAYS):
        raise web.HTTPBadRequest(text=f"the range must run forward, {MAX_DAYS} days at most")
    if first < FIRST_DAY or last > LAST_DAY:
        raise web.HTTPBadRequest(text=f"dates from {FIRST_DAY} to {LAST_DAY}")
    cur = await conn.execute(
        "SELECT terminal_id FROM terminals WHERE (%(us)s = '' OR shop = %(us)s) AND (%(s)s = '' OR shop = %(s)s)"
        " AND (%(t)s = '' OR terminal_id = %(t)s) ORDER BY terminal_id COLLATE \"C\"",
        {"us": user.shop, "s": q.get("shop", ""), "t": q.get("terminal", "")},
    )
    terminals = tuple(t for (t,) in await cur.fetchall())
    every = not (user.shop or q.get("shop") or q.get("terminal"))  # the owner asking for every terminal
    return _Asked(user, reports.Scope(terminals, first, last, request.app[SETTINGS].currency, every))


async def _report(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    async with request.app[POOL].connection() as conn:
        asked = await _scope(request, conn)
        r = await reports.report(conn, asked.scope)
        found = await reports.anomalies(conn, asked.scope, settings.rules, r)
        settled = await reports.settlements(conn, asked.scope)
        status = await _status(conn, asked.scope.terminals)
    data = reports.report_json(r, found, Currency.of(settings.currency))
    data["terminals"], data["settlements"] = status, settled
    return web.json_response(data)


async def _report_csv(request: web.Request) -> web.Response:
    async with request.app[POOL].connection() as conn:
        asked = await _scope(request, conn)
        r = await reports.report(conn, asked.scope)
    text = report_csv(r, Currency.of(asked.scope.currency))
    return _download(text, f"report-{asked.scope.first}-{asked.scope.last}.csv")


def _download(text: str, name: str) -> web.Response:
    return web.Response(
        body=text.encode("utf-8-sig"),  # the BOM: Excel then reads the Chinese text as UTF-8
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


async def _export(request: web.Request) -> web.StreamResponse:
    """Every transaction of the range as CSV, streamed (chunked) from a server-side cursor. An error after the
    answer began (the database gone half way) cannot be a status any more: the connection is closed without the
    body's last chunk, so the browser marks the download failed instead of keeping a short file that looks whole."""
    async with request.app[POOL].connection() as conn:
        asked = await _scope(request, conn)
        name = f"transactions-{asked.scope.first}-{asked.scope.last}.csv"
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": f'attachment; filename="{name}"',
                **_HEADERS,
            }
        )
        await response.prepare(request)
        try:
            await response.write(b"\xef\xbb\xbf")
            async with conn.transaction():  # a server-side cursor lives in a transaction
                async for chunk in reports.export_csv(conn, asked.scope):
                    await response.write(chunk.encode("utf-8"))
        except ConnectionError:  # the browser went away: nothing to tell it
            raise
        except Exception as exc:  # noqa: BLE001 - whatever broke it, the download must not look whole
            log.error("office: the export %s broke half way (%s): its download is cut short, and fails", name, exc)
            _cut_short(request)
            return response
        await response.write_eof()
    return response


def _cut_short(request: web.Request) -> None:
    """End a streamed answer as failed: close the connection (what was written still goes) without the chunked
    body's last, empty chunk; an HTTP client then reads an incomplete body (a browser: a failed download)."""
    transport = request.transport
    if transport is not None:
        transport.close()


async def _terminals(request: web.Request) -> web.Response:
    async with request.app[POOL].connection() as conn:
        asked = await _scope(request, conn)
        return web.json_response(await _status(conn, asked.scope.terminals))


async def _status(conn: Any, terminals: tuple[str, ...]) -> list[dict[str, Any]]:
    """Each terminal's last contact (and seconds since), its queue depth then, the last version stored, and what
    the office would not take from it: rows set aside, and the last refusal's reason."""
    cur = await conn.execute(
        "SELECT terminal_id, shop, last_contact, EXTRACT(EPOCH FROM now() - last_contact)::float8, queue_depth,"
        " last_seq, received, last_refusal, last_refusal_at,"
        " (SELECT COUNT(*) FROM set_aside_rows r WHERE r.terminal_id = t.terminal_id AND r.superseded_seq IS NULL)"
        ' FROM terminals t WHERE terminal_id = ANY(%s) ORDER BY terminal_id COLLATE "C"',
        (list(terminals),),
    )
    return [
        {
            "terminal_id": t,
            "shop": shop,
            "last_contact": at.isoformat() if at else None,
            "seconds_since": round(ago, 1) if ago is not None else None,
            "queue_depth": depth,
            "last_seq": seq,
            "received": received,
            "set_aside": aside,
            "last_refusal": refusal,
            "last_refusal_at": refused_at.isoformat() if refused_at else None,
        }
        for t, shop, at, ago, depth, seq, received, refusal, refused_at, aside in await cur.fetchall()
    ]


# What the owner's page shows of one sale: never more of a card than its masked number (no card token).
_SALE_COLUMNS = (
    "terminal_id, id, kind, method, entry_mode, amount, currency, status, stan, masked_pan, response_code,"
    " auth_code, rrn, note, created_local, original_id, batch, provider, order_no, wallet_trade_no, operator, cvm,"
    " app_label"
)


async def _asked_sale(request: web.Request, conn: Any) -> tuple[str, int]:
    """The sale asked for (?terminal=&id=) if the one asking may see its terminal (a manager: their shop's only);
    404 otherwise, the same whether the terminal is another shop's or not there at all."""
    user = await _user(request, conn)
    terminal, number = request.query.get("terminal", ""), request.query.get("id", "")
    if not re.fullmatch("[0-9]{1,19}", number) or not 0 < int(number) <= ingest.BOUNDS["id"][1]:
        raise web.HTTPBadRequest(text="id is a transaction number")
    cur = await conn.execute(
        "SELECT 1 FROM terminals WHERE terminal_id = %s AND (%s = '' OR shop = %s)", (terminal, user.shop, user.shop)
    )
    if await cur.fetchone() is None:
        raise web.HTTPNotFound(text="no such sale")
    return terminal, int(number)


async def _sale(request: web.Request) -> web.Response:
    """One transaction of a terminal, its basket and whether a signature was kept with it (JSON)."""
    async with request.app[POOL].connection() as conn:
        terminal, number = await _asked_sale(request, conn)
        cur = await conn.execute(
            f"SELECT {_SALE_COLUMNS} FROM txns WHERE terminal_id = %s AND id = %s", (terminal, number)
        )
        found = await cur.fetchone()
        if found is None:
            return web.json_response({"error": "no such sale"}, status=404)
        sale = dict(zip(_SALE_COLUMNS.replace(" ", "").split(","), found, strict=True))
        cur = await conn.execute(
            "SELECT line_no, plu, name, quantity, unit_price FROM sale_lines WHERE terminal_id = %s"
            " AND transaction_id = %s ORDER BY line_no",
            (terminal, number),
        )
        lines = [
            dict(zip(("line_no", "plu", "name", "quantity", "unit_price"), r, strict=True))
            for r in await cur.fetchall()
        ]
        cur = await conn.execute(
            "SELECT png IS NOT NULL, note, created_at FROM signatures WHERE terminal_id = %s AND transaction_id = %s",
            (terminal, number),
        )
        signed = await cur.fetchone()
    try:
        sale["exponent"] = Currency.of(sale["currency"]).exponent
    except ConfigError:  # a currency the office does not know: shown in hundredths
        sale["exponent"] = 2
    sale["lines"] = lines
    sale["signature"] = None if signed is None else {"image": signed[0], "note": signed[1], "created_at": signed[2]}
    return web.json_response(sale)


async def _signature_png(request: web.Request) -> web.Response:
    """The signature kept with one sale, as the terminal drew it (image/png); 404 when none was drawn."""
    async with request.app[POOL].connection() as conn:
        terminal, number = await _asked_sale(request, conn)
        cur = await conn.execute(
            "SELECT png FROM signatures WHERE terminal_id = %s AND transaction_id = %s AND png IS NOT NULL",
            (terminal, number),
        )
        found = await cur.fetchone()
    if found is None:
        return web.json_response({"error": "no signature for this sale"}, status=404)
    return web.Response(body=bytes(found[0]), content_type="image/png")


# What the page shows of a row set aside: where it was in the terminal's queue, what it was, when and why. The
# office keeps no body of it (so no card number); the reason names a field, never a card number's digits.
_SET_ASIDE_LIMIT = 200


async def _set_aside(request: web.Request) -> web.Response:
    """The rows set aside of the terminals one may see (?terminal= or ?shop=), newest first, each with its state:
    open (not taken), asked (the owner asked for it again), stored or set_aside_again (a later version came),
    missing (the terminal's journal does not hold it), earlier_journal (sent from a journal since replaced)."""
    async with request.app[POOL].connection() as conn:
        asked = await _scope(request, conn)
        cur = await conn.execute(
            "SELECT a.terminal_id, a.seq, a.entity, a.row_id, a.line_no, a.at, a.reason, a.retry_asked_at,"
            " a.retry_asked_by, a.superseded_seq, a.seq <= t.seq_offset,"
            " a.missing_at IS NOT NULL AND a.missing_at >= a.retry_asked_at,"
            " EXISTS (SELECT 1 FROM set_aside_rows b WHERE b.terminal_id = a.terminal_id AND b.seq = a.superseded_seq)"
            " FROM set_aside_rows a JOIN terminals t ON t.terminal_id = a.terminal_id WHERE a.terminal_id = ANY(%s)"
            " ORDER BY a.at DESC, a.terminal_id, a.seq DESC LIMIT %s",
            (list(asked.scope.terminals), _SET_ASIDE_LIMIT),
        )
        found = await cur.fetchall()
        cur = await conn.execute(
            "SELECT COUNT(*) FROM set_aside_rows WHERE terminal_id = ANY(%s) AND superseded_seq IS NULL",
            (list(asked.scope.terminals),),
        )
        (still,) = await cur.fetchone()
    rows = []
    for terminal, seq, entity, row_id, line_no, at, reason, retry_at, retry_by, newer, earlier, missing, again in found:
        if newer is not None:
            state = "set_aside_again" if again else "stored"
        elif earlier:
            state = "earlier_journal"
        elif missing:
            state = "missing"
        else:
            state = "asked" if retry_at is not None else "open"
        rows.append(
            {
                "terminal_id": terminal,
                "version": seq,
                "entity": entity,
                "row_id": row_id,
                "line_no": line_no,
                "at": at.isoformat(),
                "reason": reason,
                "state": state,
                "retry_asked_at": retry_at.isoformat() if retry_at else None,
                "retry_asked_by": retry_by,
                "superseded_by": newer,
                "can_retry": asked.user.role == "owner" and state in ("open", "asked", "missing"),
            }
        )
    return web.json_response({"rows": rows, "not_taken": still, "limit": _SET_ASIDE_LIMIT})


async def _set_aside_retry(request: web.Request) -> web.Response:
    """The owner asks for a row set aside again ({"terminal_id", "version"}), with the lines and signature set aside
    with it when it is a sale: the terminal is told at its next contact (the answer's "resend") and queues the row
    anew from its journal. Owner only (403); 404 for no such row, 409 when it cannot be asked for any more (a later
    version came, or it was sent from a journal since replaced)."""
    body = await _json_body(request)
    terminal, version = body.get("terminal_id"), body.get("version")
    if not isinstance(terminal, str) or "\x00" in terminal or type(version) is not int or not 0 < version < 2**63:
        raise web.HTTPBadRequest(text="terminal_id and version")
    async with request.app[POOL].connection() as conn:
        user = await _user(request, conn)
        if user.role != "owner":
            raise web.HTTPForbidden(text="only the owner asks a terminal for rows again")
        async with conn.transaction():
            cur = await conn.execute(
                "SELECT a.entity, a.row_id, a.superseded_seq IS NULL, a.seq > t.seq_offset FROM set_aside_rows a"
                " JOIN terminals t ON t.terminal_id = a.terminal_id WHERE a.terminal_id = %s AND a.seq = %s"
                " FOR UPDATE OF a",
                (terminal, version),
            )
            found = await cur.fetchone()
            if found is None:
                return web.json_response({"error": "no such row set aside"}, status=404)
            entity, row_id, still, present = found
            if not (still and present):
                why = "a later version of it has come" if not still else "it came from a journal since replaced"
                return web.json_response({"error": f"it cannot be asked for again: {why}"}, status=409)
            cur = await conn.execute(
                "UPDATE set_aside_rows a SET retry_asked_at = now(), retry_asked_by = %(u)s FROM terminals t"
                " WHERE t.terminal_id = a.terminal_id AND a.terminal_id = %(t)s AND a.superseded_seq IS NULL"
                " AND a.seq > t.seq_offset AND (a.seq = %(v)s OR (%(e)s = 'transaction'"
                " AND a.entity IN ('line', 'signature') AND a.row_id = %(r)s)) RETURNING a.seq",
                {"u": user.name, "t": terminal, "v": version, "e": entity, "r": row_id},
            )
            asked = sorted(v for (v,) in await cur.fetchall())
    log.warning("office: %s asked terminal %s again for versions %s (set aside)", user.name, terminal, asked)
    return web.json_response({"asked": asked})


# --- running it -----------------------------------------------------------------------------------------------


def tls_context(settings: OfficeSettings) -> ssl.SSLContext | None:
    """The server's TLS (1.2 or later) from [server] cert_file/key_file, or None for plain HTTP on loopback."""
    if not settings.server.cert_file:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(settings.server.cert_file, settings.server.key_file)
    return ctx


def serve(settings: OfficeSettings) -> None:
    """Run the back office until SIGINT or SIGTERM."""
    web.run_app(
        make_app(settings),
        host=settings.server.host,
        port=settings.server.port,
        ssl_context=tls_context(settings),
        print=lambda text: log.info("office: %s", text),
    )


class BackgroundOffice:
    """The back office in a thread of its own (tests, benchmarks): `start()` returns once it listens; `port`."""

    def __init__(self, settings: OfficeSettings, host: str = "127.0.0.1", port: int = 0) -> None:
        self.settings, self.host, self.port = settings, host, port
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="office", daemon=True)

    def start(self) -> BackgroundOffice:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self

    async def _start(self) -> None:
        self._runner = web.AppRunner(make_app(self.settings), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=tls_context(self.settings))
        await site.start()
        server: Any = site._server  # noqa: SLF001 - an asyncio.Server: the port the OS gave
        self.port = server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
