"""`countertop sim`: the terminal on the simulator, driven by a person from a text console."""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
import threading
from pathlib import Path
from typing import TextIO

from drivers.display import ConsoleDisplay
from firmware.config import ChipConfig, Config

from .cards import CATALOG
from .emvcard import chip_catalog, contactless_catalog
from .pcscd import FRIENDLY_NAME, PORT_ENV, SOCKET_ENV, PcscdUnavailable, PrivatePcscd
from .simulator import Simulator

DEVICES = ("keypad", "magstripe", "scanner", "printer")

HELP = """\
Type keypad keys, or a command:
  1250            digits on the keypad (amounts are in minor units: 1250 is 12.50)
  enter | cancel | clear | f1..f4 | menu      one named key ({ENTER} style works too)
  swipe CARD      swipe a test card (see 'cards'); swipe-raw TEXT swipes raw characters
  tap CARD        hold a contactless card (or a profile .toml file) in the field; remove takes it away
  insert CARD     put a chip card (or a profile .toml file) into the chip reader; remove takes it out
                  (needs pcscd and vsmartcard-vpcd: the simulator starts a private pcscd of its own)
  f3              at ENTER AMOUNT: key an item's PLU code, ENTER, a quantity, ENTER (the sample
                  catalogue config/items-sample.csv: 1001 water, 1002 cola, 2001 apples, ...); F3 again
                  for the next item, CLEAR drops the last line, ENTER pays the basket
  f1 | f2 ...     on the card screen: show the code of the first, second ... wallet set up (Alipay, WeChat Pay,
                  UnionPay, the aggregator); then: wallet pay (an aggregator's code: wallet pay alipay, say)
                  (wallet scan: an Alipay payer scans and has not paid yet)
  scan CODE       scan a code with the 2D scanner (Alipay: 28 then 16 digits; WeChat: 13 then 16 digits;
                  UnionPay: 62 then 17 digits)
  wallet BEHAVIOUR  the next scanned payer (any wallet): pay | confirm | insufficient | never_confirm |
                  user_cancels; a UnionPay code the acquirer takes ([unionpay] via = "acquirer"): pay |
                  password (its payment PIN, 123456, is asked for) | insufficient | expired
  screenshot [FILE]  save what the pixel display shows as a PNG (default: screen-N.png in the data
                  folder); the picture is the framebuffer driver's, read back from its framebuffer
  sign [X,Y X,Y / X,Y ...]   sign on the touch screen (sim --touch or [touch]): points in display pixels,
                  '/' between strokes; alone, a sample signature. Then ENTER keeps it, CLEAR starts again
  pin 1234        type a PIN and ENTER (waits for the PIN prompt)
  wait TEXT       wait (up to 30 s) until TEXT is on the screen, for typed-ahead or piped scripts
  menu            back office: manager PIN 8888, then 1 VOID / 2 REFUND by trace number
  cards           list the test cards and what the issuer answers
  fault KIND      the next host request: timeout | late | drop | twice | garble | badmac | badkcv | none
  journal         show the journal            receipts   show all receipts again
  unplug DEVICE   pull out keypad | magstripe | scanner | printer; plug DEVICE puts it back
  paper out       the printer's roll is empty (paper in: a new roll); F2 at ENTER AMOUNT reprints
  restart         power-cut and reboot        help | quit
An empty line presses ENTER."""


def _receipt_printer(sim: Simulator, out: TextIO, stop: threading.Event) -> None:
    """Show each receipt on the console as the virtual printer cuts it."""
    seen = 0
    while not stop.is_set():
        try:
            receipts = sim.wait_for_receipts(seen + 1, timeout=1.0)
        except TimeoutError:
            continue
        for text in receipts[seen:]:
            out.write("\n.------------- receipt -------------.\n" + text + "\n'----------------- cut -------------'\n")
        out.flush()
        seen = len(receipts)


SAMPLE_SIGNATURE = [[(60, 220), (110, 120), (150, 230), (200, 110), (240, 220)], [(270, 200), (420, 190)]]


def _strokes(words: list[str]) -> list[list[tuple[int, int]]]:
    """`X,Y X,Y / X,Y ...` as strokes (ValueError for anything else); none given: the sample signature."""
    if not words:
        return SAMPLE_SIGNATURE
    strokes: list[list[tuple[int, int]]] = [[]]
    for word in words:
        if word == "/":
            strokes.append([])
            continue
        x, y = word.split(",")
        strokes[-1].append((int(x), int(y)))
    return [s for s in strokes if s]


def _next_screenshot(data_dir: Path) -> Path:
    """The first screen-N.png not yet in the data folder."""
    n = 1
    while (data_dir / f"screen-{n}.png").exists():
        n += 1
    return data_dir / f"screen-{n}.png"


class ChipReader:
    """The console's chip reader: a private pcscd with vpcd (hwsim/pcscd.py), or the one this process was given
    (PCSCLITE_CSOCK_NAME and HWSIM_VPCD_PORT set, as the tests do), or none and the reason why."""

    def __init__(self) -> None:
        self.daemon: PrivatePcscd | None = None
        self.off = "not asked for"  # why there is no chip reader ("" = there is one)

    def start(self, cfg: Config) -> Config:
        """The config with [chip] naming the simulated slot, or [chip] removed (and `off` saying why)."""
        self.off = ""
        given = os.environ.get(SOCKET_ENV, "")
        if given and os.environ.get(PORT_ENV) and Path(given).exists():
            return dataclasses.replace(cfg, chip=ChipConfig(reader=FRIENDLY_NAME))
        daemon = PrivatePcscd()
        try:
            daemon.start()
        except PcscdUnavailable as exc:
            daemon.close()
            self.off = str(exc).splitlines()[0]
            return dataclasses.replace(cfg, chip=None)
        except OSError as exc:
            daemon.close()
            self.off = f"pcscd could not be started: {exc}"
            return dataclasses.replace(cfg, chip=None)
        # pcsc-lite reads the socket's name once, at the first PC/SC call: before the terminal makes one
        os.environ.update(daemon.environ())
        self.daemon = daemon
        return dataclasses.replace(cfg, chip=ChipConfig(reader=FRIENDLY_NAME))

    def close(self) -> None:
        if self.daemon is not None:
            self.daemon.close()
            for name in self.daemon.environ():
                os.environ.pop(name, None)
            self.daemon = None

    @property
    def banner(self) -> str:
        if self.off:
            return f"chip reader: OFF ({self.off}); insert does not work\n"
        return f"chip reader: {FRIENDLY_NAME} through a private pcscd and vpcd (insert CARD, remove)\n"


def interactive(
    cfg: Config,
    data_dir: Path,
    inp: TextIO = sys.stdin,
    out: TextIO = sys.stdout,
    chip_reader: bool = False,
    touch: bool = False,
) -> int:
    """Run the simulator with the screen drawn on `out` and commands read from `inp` until quit/EOF. With
    `chip_reader` (the command line's `sim`), a chip reader when this machine can run pcscd with vpcd: pcsc-lite
    reads its socket's name once per process, so a process that already uses another pcscd must not ask. With
    `touch`, a touch screen the cardholder signs on."""
    reader = ChipReader()
    try:
        return _interactive(reader.start(cfg) if chip_reader else cfg, data_dir, inp, out, reader, touch)
    finally:
        reader.close()


def _interactive(cfg: Config, data_dir: Path, inp: TextIO, out: TextIO, reader: ChipReader, touch: bool) -> int:
    display = ConsoleDisplay(out, cfg.display.width)
    stop = threading.Event()
    items = Path(__file__).resolve().parents[2] / "config" / "items-sample.csv"
    with Simulator(data_dir, cfg, display=display, items=items if items.exists() else None, touch=touch) as sim:
        threading.Thread(target=_receipt_printer, args=(sim, out, stop), daemon=True).start()
        out.write(f"Countertop simulator: terminal {cfg.terminal.terminal_id}, journal in {data_dir}\n{HELP}\n")
        out.write(reader.banner)
        while True:
            out.write("> ")
            out.flush()
            line = inp.readline()
            if not line:
                break
            words = shlex.split(line.strip()) if line.strip() else ["enter"]
            cmd, rest = words[0].lower(), words[1:]
            try:
                if cmd in ("quit", "exit", "q"):
                    break
                if cmd == "help":
                    out.write(HELP + "\n")
                elif cmd == "cards":
                    out.write("magstripe (swipe ID):\n")
                    for c in CATALOG.values():
                        out.write(f"  {c.id:22} {c.pan[:6]}…{c.pan[-4:]}  {c.outcome}\n")
                    out.write("contactless (tap ID):\n")
                    for p in contactless_catalog().values():
                        out.write(f"  {p.id:22} {p.kernel:10} {p.label}\n")
                    out.write("chip (insert ID):\n")
                    for p in chip_catalog().values():
                        out.write(f"  {p.id:22} {p.contact.get('oda', 'none'):10} {p.label}\n")
                elif cmd == "tap" and rest:
                    if rest[0].endswith(".toml"):
                        sim.tap(profile=rest[0])
                    else:
                        sim.tap(rest[0])
                    if "TAP OR SWIPE" in sim.screen:  # like a customer: hold it until it is read
                        try:
                            sim.wait_while("TAP OR SWIPE", timeout=3)
                            sim.wait_while("READING CARD", timeout=3)
                            sim.wait_while("PROCESSING", timeout=sim.config.timeouts.host + 1)
                        except TimeoutError:
                            out.write("?? the card was not read (is the field on? amount over the tap limit?)\n")
                elif cmd == "insert" and rest:
                    if reader.off:
                        out.write(f"?? the chip reader is off: {reader.off}\n")
                    else:
                        before = sim.screen
                        if rest[0].endswith(".toml"):
                            sim.insert(profile=rest[0])
                        else:
                            sim.insert(rest[0])
                        try:  # like a customer: the card stays in; the reader sees it within pcscd's 400 ms poll
                            sim.wait_while(before, timeout=3)
                        except TimeoutError:
                            out.write("?? the terminal did not take the card (is it waiting for a card?)\n")
                elif cmd == "wait" and rest:
                    sim.wait_for(" ".join(rest), timeout=30)
                elif cmd == "remove":
                    sim.remove_card()
                elif cmd == "scan" and rest:
                    sim.scan(rest[0])
                elif cmd == "wallet" and rest:
                    qr = sim.display_qr
                    if rest[0] == "pay":  # the shown code's own gateway: told by its prefix
                        if qr.startswith("weixin://"):
                            paid = sim.wechat.pay(qr)
                        elif qr.startswith("https://qr.95516.com/"):
                            paid = sim.unionpay.pay(qr)
                        elif qr.startswith("https://q.lakala.com/"):
                            paid = sim.aggregator.pay(qr, wallet=rest[1] if len(rest) > 1 else "wechat")
                        else:
                            paid = sim.wallet.pay()
                        out.write(f"customer paid order {paid}\n")
                    elif rest[0] == "scan":
                        sim.wallet.scan()
                    else:  # the next payer of every wallet that plays this behaviour
                        from . import acquirer, lakalagw, unionpaygw, walletgw, wechatgw

                        acquirer_payer = {"confirm": "password"}.get(rest[0], rest[0])  # a code sent as a card
                        played = [
                            gateway.next_code(behaviour)
                            for gateway, behaviour, plays in (
                                (sim.wallet, rest[0], walletgw.CODE_BEHAVIOURS),
                                (sim.wechat, rest[0], wechatgw.CODE_BEHAVIOURS),
                                (sim.unionpay, rest[0], unionpaygw.CODE_BEHAVIOURS),
                                (sim.aggregator, rest[0], lakalagw.CODE_BEHAVIOURS),
                                (sim.host.issuer, acquirer_payer, acquirer.CODE_BEHAVIOURS),
                            )
                            if behaviour in plays
                        ]
                        if not played:
                            raise ValueError(f"no wallet plays a payer who does {rest[0]!r}")
                elif cmd == "screenshot":
                    out.write(f"saved {sim.screenshot(rest[0] if rest else _next_screenshot(data_dir))}\n")
                elif cmd == "sign":
                    sim.sign(_strokes(rest))
                elif cmd == "swipe" and rest:
                    sim.swipe(rest[0])
                elif cmd == "swipe-raw" and rest:
                    sim.swipe(raw=" ".join(rest))
                elif cmd == "pin" and rest:
                    sim.pin(rest[0])
                elif cmd == "fault" and rest:
                    sim.host.fault(None if rest[0] == "none" else rest[0])
                    out.write(f"next host request: {rest[0]}\n")
                elif cmd == "journal":
                    for r in sim.journal():
                        out.write(
                            f"  #{r['id']} {r['created_at']} {r['kind']} {r['amount']} {r['currency']} "
                            f"{r['status']} stan {r['stan']:06d} {r['masked_pan']} rc {r['response_code']}\n"
                        )
                elif cmd == "receipts":
                    out.write("\n\n".join(sim.receipts) + "\n")
                elif cmd == "restart":
                    sim.restart(crash=True)
                elif cmd in ("unplug", "plug") and rest and rest[0] in DEVICES:
                    (sim.unplug if cmd == "unplug" else sim.plug)(rest[0])
                elif cmd == "paper" and rest and rest[0] in ("out", "in"):
                    sim.printer.paper = rest[0] == "in"
                elif cmd.upper() in ("ENTER", "CANCEL", "CLEAR", "F1", "F2", "F3", "F4", "MENU"):
                    sim.keys("{" + cmd.upper() + "}")
                else:
                    sim.keys(" ".join(words))
            except (ValueError, KeyError, LookupError, TimeoutError, RuntimeError) as exc:
                out.write(f"?? {exc}\n")
        stop.set()
    return 0
