"""Several simulated terminals forwarding their journals to the back office through a link that is cut and restored,
and a power cut while the back office's answer is on its way: its books equal the terminals' own reports to the
cent, nothing counted twice, nothing lost, and a terminal with another's credential stores nothing."""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import date

from conftest import sim_config, wait_until
from firmware.config import OfficeConfig
from firmware.core import reports
from firmware.records.journal import Journal
from test_office_books import office_report
from test_refunds import approved_sale, refund, start

TERMINALS = ("SHOPA001", "SHOPA002", "SHOPB001")


def office_config(office, link, terminal_id: str, token_file: str | None = None):
    cfg = sim_config(host=2.0)
    return dataclasses.replace(
        cfg,
        terminal=dataclasses.replace(cfg.terminal, terminal_id=terminal_id),
        office=OfficeConfig(
            url=f"https://127.0.0.1:{link.port}",
            token_file=token_file or office.register(terminal_id, shop="A" if "SHOPA" in terminal_id else "B"),
            ca_file=office.ca_file,
            batch=7,  # several requests per burst, so an answer can be lost between two of them
            interval=0.1,
            heartbeat=0.5,
            timeout=3.0,
            retry_max=0.5,
        ),
    )


def outbox(sim) -> int:
    """Snapshots still waiting in the terminal's outbox (read beside the terminal, as another process would)."""
    db = sqlite3.connect(f"file:{sim.data_dir / 'journal.sqlite3'}?mode=ro", uri=True)
    try:
        return db.execute("SELECT COUNT(*) FROM forward_queue").fetchone()[0]
    finally:
        db.close()


def own_report(data_dir, day: date):
    journal = Journal(data_dir / "journal.sqlite3")
    try:
        rows = {r["id"]: (r["status"], r["amount"]) for r in journal.rows()}
        return reports.build(journal.figures(day.isoformat(), day.isoformat()), day, day, "CNY"), rows
    finally:
        journal.close()


def void(sim, stan: int) -> None:
    start(sim, "void", stan)
    sim.wait_for("ENTER TO CONFIRM")
    sim.keys("{ENTER}")
    sim.wait_for("VOID APPROVED")
    sim.keys("{ENTER}")


def card_refund(sim, stan: int, amount: str, route: str = "card") -> None:
    refund(sim, stan, amount, route)
    sim.wait_for("REFUND APPROVED" if route == "card" else "PAY OUT FROM THE TILL")
    sim.keys("{ENTER}")


def wallet_sale(sim, amount: str) -> None:
    sim.keys(amount + "{ENTER}")
    sim.wait_for("SWIPE CARD")
    sim.keys("{F1}")
    sim.wait_for("SCAN TO PAY")
    sim.wallet.pay()
    sim.wait_for("PAID")
    sim.keys("{ENTER}")


def stored(office, terminal_id: str) -> dict[int, tuple[str, int]]:
    return {
        i: (s, a)
        for i, s, a in office.sql("SELECT id, status, amount FROM txns WHERE terminal_id = %s", (terminal_id,))
    }


def test_three_terminals_through_a_link_cut_and_restored(office, link, tmp_path):
    from hwsim import Simulator

    sims = [Simulator(tmp_path / t, office_config(office, link, t)) for t in TERMINALS]
    try:
        for s in sims:
            s.start()
        a, b, c = sims
        first = approved_sale(a, "1250")
        approved_sale(b, "3300", "mc-approve")
        wallet_sale(c, "880")
        wait_until(lambda: all(outbox(s) == 0 for s in sims), 20, "the first sales forwarded")
        assert {t for (t,) in office.sql("SELECT DISTINCT terminal_id FROM txns")} == set(TERMINALS)

        link.cut()  # the back office out of reach: the terminals sell, void and refund as ever
        void(a, first["stan"])
        second = approved_sale(a, "4500")
        card_refund(a, second["stan"], "1000")
        sold = approved_sale(b, "9999", "unionpay-approve")
        card_refund(b, sold["stan"], "999", "cash")
        approved_sale(c, "120")
        declined = len(c.receipts)
        from test_e2e import sale

        sale(c, "visa-insufficient", amount="700")
        c.wait_for("DECLINED")
        c.wait_for_receipts(declined + 1)
        c.keys("{ENTER}")
        assert all(outbox(s) > 0 for s in sims)  # kept, waiting for the link
        behind = office.sql("SELECT terminal_id, queue_depth FROM terminals ORDER BY terminal_id")
        assert all(depth == 0 for _, depth in behind)  # what the office last heard: nothing waiting then

        link.restore()
        wait_until(lambda: all(outbox(s) == 0 for s in sims), 30, "the outboxes emptied after the link came back")
        wait_until(lambda: all(d == 0 for (d,) in office.sql("SELECT queue_depth FROM terminals")), 10, "depth 0")
    finally:
        for s in sims:
            s.close()
    today = date.fromisoformat(
        office.sql("SELECT MAX(local_day) FROM txns")[0][0].isoformat()
    )  # the terminals' local date
    own = {t: own_report(tmp_path / t, today) for t in TERMINALS}
    for t in TERMINALS:
        report, rows = own[t]
        assert stored(office, t) == rows, t  # every row, in its last state, once
        assert office_report(office.dsn, [t], today)[0] == report
    everything, _ = office_report(office.dsn, TERMINALS, today)
    assert everything.sales_amount == sum(r.sales_amount for r, _ in own.values())
    assert everything.net_amount == sum(r.net_amount for r, _ in own.values())
    assert everything.refund_amount == 1000 + 999 and everything.void_amount == 1250
    assert everything.declined_count == 1
    shop_a, _ = office_report(office.dsn, TERMINALS[:2], today)
    assert shop_a.net_amount == own[TERMINALS[0]][0].net_amount + own[TERMINALS[1]][0].net_amount


def test_a_power_cut_while_the_answer_is_on_its_way_loses_nothing_and_counts_nothing_twice(office, link, tmp_path):
    from hwsim import Simulator

    with Simulator(tmp_path / "t", office_config(office, link, "SHOPC001")) as sim:
        approved_sale(sim, "1250")
        wait_until(lambda: outbox(sim) == 0, 20, "forwarded")
        link.hold()  # the back office stores what it gets; its answers wait in the link
        for amount in ("2000", "3000"):
            approved_sale(sim, amount)
        waiting = outbox(sim)
        wait_until(lambda: len(stored(office, "SHOPC001")) == 3, 20, "the back office stored the new sales")
        assert outbox(sim) == waiting  # the terminal has no answer yet: it keeps them
        sim.restart(crash=True)  # power cut before the answer came
        link.release()
        approved_sale(sim, "4000")
        wait_until(lambda: outbox(sim) == 0, 20, "forwarded after the power cut")
        received = office.sql("SELECT received FROM terminals WHERE terminal_id = 'SHOPC001'")[0][0]
    today = date.fromisoformat(office.sql("SELECT MAX(local_day) FROM txns")[0][0].isoformat())
    report, rows = own_report(tmp_path / "t", today)
    assert stored(office, "SHOPC001") == rows and len(rows) == 4
    assert office_report(office.dsn, ["SHOPC001"], today)[0] == report
    assert report.sales_amount == 1250 + 2000 + 3000 + 4000
    snapshots = office.sql("SELECT COUNT(*) FROM txns")[0][0] * 2  # each sale: pending, then approved
    assert received > snapshots  # some were sent twice (the unanswered ones), and stored once


def test_a_terminal_with_another_terminals_credential_stores_nothing(office, link, tmp_path, caplog):
    from hwsim import Simulator

    office.register("SHOPD001")
    borrowed = str(office.folder / "SHOPD001.token")
    with Simulator(tmp_path / "t", office_config(office, link, "SHOPD002", token_file=borrowed)) as sim:
        approved_sale(sim, "1250")  # it sells as ever
        wait_until(lambda: "SHOPD001 refused" in caplog.text, 20, "the back office refused the rows")
        assert outbox(sim) > 0  # and keeps them, for when it has its own credential
    assert office.sql("SELECT COUNT(*) FROM txns") == [(0,)]
