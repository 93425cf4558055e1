"""The outbox's rules, pure: what goes to the host in which order, what an answer means, why a flush stops."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from firmware.core import drain
from firmware.core.drain import Blocked, Flushed, NoReply, Note, Read, Record, Reply, Send, SignOn, WriteLate

NOW = datetime(2026, 12, 3, 10, 0, 0, tzinfo=UTC)
HOST_TIMEOUT = 30.0


@dataclass(frozen=True)
class Rev:
    name: str
    original_created_at: str = ""


@dataclass(frozen=True)
class Item:
    name: str
    batch: int = 7


def run(queues, replies, late="", sign_on=None, signs_on=True):
    """Run one flush: `queues` per queue name, `replies` per item name; (requests, verdict)."""
    machine, answer, requests = drain.flush(HOST_TIMEOUT, signs_on), None, []
    while True:
        try:
            request = machine.send(answer)
        except StopIteration as stop:
            return requests, stop.value
        requests.append(request)
        if isinstance(request, WriteLate):
            answer = late
        elif isinstance(request, SignOn):
            answer = sign_on
        elif isinstance(request, Read):
            answer = queues.get(request.queue, [])
        elif isinstance(request, Send):
            answer = replies[request.item.name]
        elif isinstance(request, drain.Now):
            answer = NOW
        else:
            answer = None


def sent(requests):
    return [r.item.name for r in requests if isinstance(r, Send)]


def test_everything_goes_out_in_order_and_every_answer_is_recorded():
    queues = {"reversals": [Rev("r1"), Rev("r2")], "retries": [Item("refund")], "settlement": [Item("batch")]}
    replies = {"r1": Reply("00"), "r2": Reply("25"), "refund": Reply("05"), "batch": Reply("95")}
    requests, verdict = run(queues, replies)
    assert requests[:2] == [WriteLate(), SignOn()]
    assert sent(requests) == ["r1", "r2", "refund", "batch"] and verdict == Flushed()
    recorded = [r.item.name for r in requests if isinstance(r, Record)]
    assert recorded == ["r1", "r2", "refund", "batch"]  # a declined refund and an out-of-balance batch count too


def test_an_outcome_the_journal_still_refuses_stops_everything():
    requests, verdict = run({"reversals": [Rev("r1")]}, {}, late="DISK FULL")
    assert requests == [WriteLate()] and verdict.by.endswith("(DISK FULL)")


def test_a_refused_sign_on_stops_before_anything_is_sent_and_says_why_on_screen():
    requests, verdict = run({"reversals": [Rev("r1")]}, {}, sign_on=NoReply("sign-on refused (96)", "SIGN-ON FAILED"))
    assert sent(requests) == [] and verdict == Blocked("not sent: sign-on refused (96)", "SIGN-ON FAILED")
    assert SignOn() not in run({}, {}, signs_on=False)[0]  # a host without session keys: no sign-on


def test_the_first_unanswered_item_stops_the_flush_and_its_attempt_is_noted():
    queues = {"reversals": [Rev("r1"), Rev("r2")], "retries": [Item("void")]}
    requests, verdict = run(queues, {"r1": NoReply("timeout")})
    assert sent(requests) == ["r1"] and Note(Rev("r1"), "timeout") in requests
    assert isinstance(verdict, Blocked) and verdict.due_in is None
    requests, verdict = run({"retries": [Item("void"), Item("refund")]}, {"void": NoReply("link down")})
    assert sent(requests) == ["void"] and isinstance(verdict, Blocked)


def test_a_reversal_answer_that_does_not_reverse_keeps_it_queued():
    requests, verdict = run({"reversals": [Rev("r1")], "retries": [Item("void")]}, {"r1": Reply("96")})
    assert sent(requests) == ["r1"] and isinstance(verdict, Blocked)
    assert not any(isinstance(r, Record) for r in requests)
    assert any(isinstance(r, Note) and "96" in r.reason for r in requests)


def test_no_such_sale_counts_only_once_the_sale_is_twice_the_host_timeout_old():
    young = Rev("r1", (NOW - timedelta(seconds=10)).isoformat())
    requests, verdict = run({"reversals": [young]}, {"r1": Reply("25")})
    assert isinstance(verdict, Blocked) and verdict.due_in == 50.0  # asked again the moment it counts
    assert not any(isinstance(r, Record) for r in requests)
    old = Rev("r1", (NOW - timedelta(seconds=60)).isoformat())
    requests, verdict = run({"reversals": [old]}, {"r1": Reply("25")})
    assert verdict == Flushed() and Record(old, Reply("25")) in requests
    assert run({"reversals": [Rev("r1")]}, {"r1": Reply("25")})[1] == Flushed()  # age unknown: it counts


def test_an_unanswered_settlement_says_which_batch_waits():
    _, verdict = run({"settlement": [Item("batch", 12)]}, {"batch": NoReply("timeout")})
    assert verdict == Blocked("not sent: the settlement of batch 12 is not yet answered")
