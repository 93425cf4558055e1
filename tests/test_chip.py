"""The contact chip reader through the real stack: the driver (drivers/chip.py) on pyscard, a private pcscd, the
vpcd virtual reader, and the simulated card in hwsim's chip slot. The driver hands over raw R-APDUs: a T=0 card's
61xx and 6Cxx reach the caller as the card said them. Cards here answer from command/response tables."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

import pytest

from drivers.chip import ChipReader, ChipSession
from firmware.core.events import CardFailed, ChipInserted, ChipReaderFailed, ChipReaderReady, ChipRemoved
from firmware.errors import ChipCardRemoved, ChipReaderError
from hwsim.chipslot import ATR, ChipSlot, T0Transport, apdu_case

SELECT_PSE = bytes.fromhex("00A404000E315041592E5359532E444446303100")
FCI_PSE = bytes.fromhex("6F1A840E315041592E5359532E4444463031A5088801015F2D027A68")
SELECT_AID = bytes.fromhex("00A4040007A000000333010100")
FCI_AID = bytes.fromhex("6F1A8407A0000003330101A50F500D554E494F4E5041592044454249")
READ_RECORD = bytes.fromhex("00B2010C00")  # SFI 1, record 1, Le 00
RECORD = bytes.fromhex("70105A0862509410065285995F2403301231")
GET_DATA_ATC = bytes.fromhex("80CA9F3600")
OK = b"\x90\x00"


def _key(apdu: bytes) -> bytes:
    """A command without its Le (a T=0 caller sends it again with another Le)."""
    case, _ = apdu_case(apdu)
    return apdu[:-1] if case in (2, 4) else apdu


class TableCard:
    """A card that answers from a command/response table (6D00 otherwise) and counts the commands it answered."""

    def __init__(self, rows: dict[bytes, bytes], protocol: str = "", vanish_after: int = 0) -> None:
        self.rows = {_key(command): answer for command, answer in rows.items()}
        self.profile = SimpleNamespace(protocol=protocol, vanish_after=vanish_after)
        self.apdus = 0

    def process(self, apdu: bytes) -> bytes:
        self.apdus += 1
        return self.rows.get(_key(apdu), b"\x6d\x00")


def emv_card(**kw) -> TableCard:
    return TableCard(
        {
            SELECT_PSE: FCI_PSE + OK,
            SELECT_AID: FCI_AID + OK,
            READ_RECORD: RECORD + OK,
            GET_DATA_ATC: b"\x9f\x36\x02\x00\x07" + OK,
        },
        **kw,
    )


# --- the T=0 transport, on its own --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "answers"),
    [
        # case 4: the data waits for GET RESPONSE, announced with 61xx
        (SELECT_PSE, [(SELECT_PSE, b"\x61\x1c"), (bytes.fromhex("00C000001C"), FCI_PSE + OK)]),
        # GET RESPONSE with too big an Le: 6Cxx; with a smaller one: a part, and 61 for the rest
        (
            SELECT_PSE,
            [
                (SELECT_PSE, b"\x61\x1c"),
                (bytes.fromhex("00C0000000"), b"\x6c\x1c"),
                (bytes.fromhex("00C0000010"), FCI_PSE[:16] + b"\x61\x0c"),
                (bytes.fromhex("00C000000C"), FCI_PSE[16:] + OK),
                (bytes.fromhex("00C000000C"), b"\x69\x85"),  # nothing left
            ],
        ),
        # case 2: a wrong Le gets 6Cxx, the right one the data
        (READ_RECORD, [(READ_RECORD, b"\x6c\x12"), (bytes.fromhex("00B2010C12"), RECORD + OK)]),
        # an error has no data to wait for; a malformed command gets 6700
        (bytes.fromhex("00A4040002DEAD00"), [(bytes.fromhex("00A4040002DEAD00"), b"\x6d\x00")]),
        (bytes.fromhex("00A40400"), [(bytes.fromhex("00A4040005AA"), b"\x67\x00")]),
    ],
    ids=["get-response", "get-response-in-parts", "wrong-le", "error-no-data", "malformed"],
)
def test_t0_transport(command, answers):
    transport = T0Transport(emv_card())
    for apdu, answer in answers:
        assert transport.respond(apdu).hex() == answer.hex()


def test_t0_another_command_drops_waiting_data():
    transport = T0Transport(emv_card())
    assert transport.respond(SELECT_PSE) == b"\x61\x1c"
    assert transport.respond(bytes.fromhex("00B2010C12")) == RECORD + OK
    assert transport.respond(bytes.fromhex("00C000001C")) == b"\x69\x85"


# --- through pcscd ------------------------------------------------------------------------------------------


def wait_reader(reader: str, present: bool, timeout: float = 10.0) -> bytes:
    """Until pcscd says the reader holds a card (or none): SCardGetStatusChange, as a client waits. Returns the ATR."""
    from smartcard import scard

    hr, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    assert hr == scard.SCARD_S_SUCCESS, scard.SCardGetErrorMessage(hr)
    try:
        state, deadline = scard.SCARD_STATE_UNAWARE, time.monotonic() + timeout
        while True:
            hr, states = scard.SCardGetStatusChange(context, 1000, [(reader, state)])
            if hr == scard.SCARD_S_SUCCESS:
                state = states[0][1] & ~scard.SCARD_STATE_CHANGED
                if bool(state & scard.SCARD_STATE_PRESENT) == present:
                    return bytes(states[0][2])
            elif hr != scard.SCARD_E_TIMEOUT:
                raise AssertionError(scard.SCardGetErrorMessage(hr))
            if time.monotonic() > deadline:
                raise TimeoutError(f"{reader}: card {'in' if present else 'out'} not seen in {timeout} s")
    finally:
        scard.SCardReleaseContext(context)


@pytest.fixture
def slot(pcscd):
    """The simulated chip slot on the private pcscd's reader; empty again (as pcscd sees it) after the test."""
    s = ChipSlot(pcscd.port)
    yield s
    s.close()
    wait_reader(pcscd.reader, present=False)


class Events:
    """What the driver posts on the loop, in order."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()
        self.loop_thread = threading.current_thread()
        self.off_loop: list[str] = []

    def __call__(self, event) -> None:
        if threading.current_thread() is not self.loop_thread:
            self.off_loop.append(repr(event))
        self.queue.put_nowait(event)

    async def next(self, kind: type, timeout: float = 10.0):
        event = await asyncio.wait_for(self.queue.get(), timeout)
        assert isinstance(event, kind), f"expected {kind.__name__}, got {event!r}"
        return event


def chip_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("chip-")]


def drive(reader_name: str, scenario) -> None:
    """Run `scenario(reader, events)` on a fresh loop with a started ChipReader; stop() must leave no thread."""

    async def main() -> None:
        events = Events()
        reader = ChipReader(reader_name, asyncio.get_running_loop(), events)
        reader.start()
        try:
            await scenario(reader, events)
        finally:
            reader.stop()
        assert not events.off_loop, f"events emitted off the loop: {events.off_loop}"

    asyncio.run(main())
    assert chip_threads() == [], f"threads left after stop(): {chip_threads()}"


async def inserted(events: Events) -> ChipSession:
    return (await events.next(ChipInserted)).session


def test_t1_card_inserted_then_select_pse_aid_and_read_record(pcscd, slot):
    card = emv_card()

    async def scenario(reader, events):
        await events.next(ChipReaderReady)
        slot.insert(card)  # no protocol in the profile: T=1
        session = await inserted(events)
        assert (session.reader, session.protocol, session.atr) == (pcscd.reader, "T=1", ATR["T=1"])
        assert await session.transceive(SELECT_PSE) == FCI_PSE + OK
        assert await session.transceive(SELECT_AID) == FCI_AID + OK
        assert await session.transceive(READ_RECORD) == RECORD + OK  # T=1: Le 00 is "all there is"
        assert await session.transceive(bytes.fromhex("00B2020C00")) == b"\x6d\x00"  # raw, as the card said
        assert card.apdus == 4
        session.close()
        with pytest.raises(ChipReaderError):
            await session.transceive(SELECT_PSE)
        slot.remove()
        await events.next(ChipRemoved)

    drive(pcscd.reader, scenario)


def test_t0_card_answers_61xx_and_6cxx_which_reach_the_caller_raw(pcscd, slot):
    async def scenario(reader, events):
        await events.next(ChipReaderReady)
        slot.insert(emv_card(protocol="T=0"))  # the profile's protocol picks the ATR
        session = await inserted(events)
        assert (session.protocol, session.atr) == ("T=0", ATR["T=0"])
        assert await session.transceive(SELECT_PSE) == b"\x61\x1c"
        assert await session.transceive(bytes.fromhex("00C000001C")) == FCI_PSE + OK
        assert await session.transceive(READ_RECORD) == b"\x6c\x12"
        assert await session.transceive(bytes.fromhex("00B2010C12")) == RECORD + OK
        assert await session.transceive(GET_DATA_ATC) == b"\x6c\x05"

    drive(pcscd.reader, scenario)
    assert [c.hex().upper() for c, _ in slot.exchanges] == [
        "00A404000E315041592E5359532E444446303100",
        "00C000001C",
        "00B2010C00",
        "00B2010C12",
        "80CA9F3600",
    ]


def test_a_card_already_in_the_slot_is_announced_at_start(pcscd, slot):
    slot.insert(emv_card())
    wait_reader(pcscd.reader, present=True)

    async def scenario(reader, events):
        await events.next(ChipReaderReady)
        session = await inserted(events)
        assert reader.session is session
        assert await session.transceive(SELECT_PSE) == FCI_PSE + OK

    drive(pcscd.reader[:-6], scenario)  # the start of the name is enough ("hwsim chip slot")


def test_removed_between_commands_then_reinserted(pcscd, slot):
    async def scenario(reader, events):
        await events.next(ChipReaderReady)
        slot.insert(emv_card())
        session = await inserted(events)
        assert await session.transceive(SELECT_PSE) == FCI_PSE + OK
        slot.remove()
        with pytest.raises(ChipCardRemoved) as removed:
            await session.transceive(SELECT_AID)
        assert removed.value.screen == "CARD REMOVED"
        await events.next(ChipRemoved)
        with pytest.raises(ChipCardRemoved):  # the session stays dead
            await session.transceive(SELECT_AID)
        assert reader.session is None

        slot.insert(emv_card())  # back in: a new session, the card powered again
        again = await inserted(events)
        assert again is not session
        assert await again.transceive(SELECT_AID) == FCI_AID + OK

    drive(pcscd.reader, scenario)


def test_pulled_out_during_an_exchange(pcscd, slot):
    async def scenario(reader, events):
        await events.next(ChipReaderReady)
        slot.insert(emv_card(vanish_after=1))  # answers SELECT PSE, then goes with the next command
        session = await inserted(events)
        assert await session.transceive(SELECT_PSE) == FCI_PSE + OK
        with pytest.raises(ChipCardRemoved):
            await session.transceive(SELECT_AID)
        await events.next(ChipRemoved)
        slot.insert(emv_card())
        assert await (await inserted(events)).transceive(READ_RECORD) == RECORD + OK

    drive(pcscd.reader, scenario)


def test_two_inserts_in_a_row(pcscd, slot):
    first = emv_card()
    second = TableCard({SELECT_PSE: b"\x6a\x81"}, protocol="T=0")  # another card: PSE blocked

    async def scenario(reader, events):
        await events.next(ChipReaderReady)
        slot.insert(first)
        one = await inserted(events)
        assert await one.transceive(SELECT_PSE) == FCI_PSE + OK
        slot.insert(second)  # the first card out and the other in, before pcscd looks again
        await events.next(ChipRemoved)
        two = await inserted(events)
        assert two.protocol == "T=0"
        assert await two.transceive(SELECT_PSE) == b"\x6a\x81"
        with pytest.raises(ChipCardRemoved):
            await one.transceive(SELECT_PSE)

    drive(pcscd.reader, scenario)
    assert (first.apdus, second.apdus) == (1, 1)


def test_pcscd_stopped_is_a_reader_error_and_its_return_is_noticed(pcscd, slot):
    async def scenario(reader, events):
        await events.next(ChipReaderReady)
        slot.insert(emv_card())
        session = await inserted(events)
        pcscd.stop()
        try:
            failed = await events.next(ChipReaderFailed)
            assert "pcscd" in failed.reason and failed.screen == "CHIP READER ERROR"
            with pytest.raises(ChipReaderError) as error:
                await session.transceive(SELECT_PSE)
            assert not isinstance(error.value, ChipCardRemoved)
        finally:
            pcscd.start()
        await events.next(ChipReaderReady)  # the driver reconnects by itself
        slot.insert(emv_card())  # the old connection went with the old vpcd
        assert await (await inserted(events)).transceive(SELECT_PSE) == FCI_PSE + OK

    drive(pcscd.reader, scenario)


def test_no_such_reader_is_reported_and_stop_still_ends_the_thread(pcscd):
    async def scenario(reader, events):
        failed = await events.next(ChipReaderFailed)
        assert "no reader 'ACS ACR39U'" in failed.reason and pcscd.reader in failed.reason

    drive("ACS ACR39U", scenario)


def test_a_card_that_does_not_answer_its_reset(pcscd, slot, monkeypatch):
    """The ATR is what vpcd powers the card with; an empty one is a mute card: CardFailed, no session."""
    monkeypatch.setitem(ATR, "T=1", b"\x3b")  # a TS byte and nothing else: no protocol to negotiate

    async def scenario(reader, events):
        await events.next(ChipReaderReady)
        slot.insert(emv_card())
        event = await events.next(CardFailed)
        assert event.screen == "CARD ERROR, REINSERT"
        assert reader.session is None

    drive(pcscd.reader, scenario)


def test_pcsc_calls_never_run_on_the_loop(pcscd, slot, monkeypatch):
    """Every pyscard call the driver makes (waits and transmits alike) runs in the reader's threads."""
    from smartcard import scard

    import drivers.chip

    on_loop: list[str] = []
    loop_thread = threading.current_thread()

    class Watched:
        def __getattr__(self, name):
            value = getattr(scard, name)
            if not callable(value):
                return value

            def call(*args):
                if threading.current_thread() is loop_thread:
                    on_loop.append(name)
                return value(*args)

            return call

    monkeypatch.setattr(drivers.chip, "scard", Watched())

    async def scenario(reader, events):
        await events.next(ChipReaderReady)
        slot.insert(emv_card())
        session = await inserted(events)
        assert await session.transceive(SELECT_PSE) == FCI_PSE + OK
        session.close()

    drive(pcscd.reader, scenario)
    assert on_loop == ["SCardCancel"]  # stop() wakes the watcher; nothing else ran on the loop


def test_simulator_insert_and_remove_card(pcscd, sim, tmp_path):
    """sim.insert puts a card profile's applet behind the virtual reader; remove_card takes it out."""
    from smartcard import scard

    card = sim.insert("mc-tap-approve")
    assert wait_reader(pcscd.reader, present=True) == ATR["T=1"]
    hr, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    hr, handle, protocol = scard.SCardConnect(
        context, pcscd.reader, scard.SCARD_SHARE_EXCLUSIVE, scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
    )
    assert hr == scard.SCARD_S_SUCCESS, scard.SCardGetErrorMessage(hr)
    ppse = bytes.fromhex("00A404000E325041592E5359532E444446303100")
    hr, answer = scard.SCardTransmit(handle, protocol, list(ppse))
    assert hr == scard.SCARD_S_SUCCESS and bytes(answer[:1]) == b"\x6f" and bytes(answer[-2:]) == OK
    assert card.apdus == 1
    scard.SCardDisconnect(handle, scard.SCARD_UNPOWER_CARD)
    scard.SCardReleaseContext(context)
    sim.remove_card()
    wait_reader(pcscd.reader, present=False)

    profile = tmp_path / "my-chip.toml"
    profile.write_text(
        (sim_cards() / "visa-tap-approve.toml")
        .read_text(encoding="utf-8")
        .replace("4761739001010010", "4761739001010028"),
        encoding="utf-8",
    )
    mine = sim.insert(profile=profile)
    assert mine.profile.pan == "4761739001010028"
    wait_reader(pcscd.reader, present=True)
    sim.remove_card(mine)
    wait_reader(pcscd.reader, present=False)


def sim_cards():
    from hwsim.emvcard import PROFILE_DIR

    return PROFILE_DIR


def test_a_private_pcscd_never_takes_a_vpcd_port_another_process_listens_on(pcscd, monkeypatch):
    """Two suites on one machine: the port chosen for vpcd may be taken by the other's vpcd before ours binds;
    then our card would reach their reader. The daemon checks that its own process listens, else moves on."""
    import socket

    import hwsim.pcscd as pcscd_module

    other = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    other.bind(("0.0.0.0", 0))
    other.listen()
    taken = other.getsockname()[1]
    choices = iter([taken])
    real = pcscd_module._free_port_pair
    monkeypatch.setattr(pcscd_module, "_free_port_pair", lambda: next(choices, None) or real())
    daemon = pcscd_module.PrivatePcscd()
    try:
        daemon.start()
        assert daemon.port != taken and pcscd_module._listens(daemon._proc.pid, daemon.port)
    finally:
        daemon.close()
        other.close()
