"""`countertop sim`: the terminal on the simulator, driven by a person from a text console."""

from __future__ import annotations

import shlex
import sys
import threading
from pathlib import Path
from typing import TextIO

from drivers.display import ConsoleDisplay
from firmware.config import Config

from .cards import CATALOG
from .emvcard import contactless_catalog
from .simulator import Simulator

DEVICES = ("keypad", "magstripe", "scanner", "printer")

HELP = """\
Type keypad keys, or a command:
  1250            digits on the keypad (amounts are in minor units: 1250 is 12.50)
  enter | cancel | clear | f1..f4 | menu      one named key ({ENTER} style works too)
  swipe CARD      swipe a test card (see 'cards'); swipe-raw TEXT swipes raw characters
  tap CARD        hold a contactless card (or a profile .toml file) in the field; remove takes it away
  f3              at ENTER AMOUNT: key an item's PLU code, ENTER, a quantity, ENTER (the sample
                  catalogue config/items-sample.csv: 1001 water, 1002 cola, 2001 apples, ...); F3 again
                  for the next item, CLEAR drops the last line, ENTER pays the basket
  f1 | f2 ...     on the card screen: show the code of the first, second ... wallet set up (Alipay, WeChat Pay,
                  UnionPay, the aggregator); then: wallet pay (an aggregator's code: wallet pay alipay, say)
                  (wallet scan: an Alipay payer scans and has not paid yet)
  scan CODE       scan a code with the 2D scanner (Alipay: 28 then 16 digits; WeChat: 13 then 16 digits;
                  UnionPay: 62 then 17 digits)
  wallet BEHAVIOUR  the next scanned payer (any wallet): pay | confirm | insufficient | never_confirm |
                  user_cancels
  screenshot FILE save the screen as a PNG
  pin 1234        type a PIN and ENTER (waits for the PIN prompt)
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


def interactive(cfg: Config, data_dir: Path, inp: TextIO = sys.stdin, out: TextIO = sys.stdout) -> int:
    """Run the simulator with the screen drawn on `out` and commands read from `inp` until quit/EOF."""
    display = ConsoleDisplay(out, cfg.display.width)
    stop = threading.Event()
    items = Path(__file__).resolve().parents[2] / "config" / "items-sample.csv"
    with Simulator(data_dir, cfg, display=display, items=items if items.exists() else None) as sim:
        threading.Thread(target=_receipt_printer, args=(sim, out, stop), daemon=True).start()
        out.write(f"Countertop simulator: terminal {cfg.terminal.terminal_id}, journal in {data_dir}\n{HELP}\n")
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
                    else:
                        sim.wallet.next_code(rest[0])
                        sim.wechat.next_code(rest[0])
                        for gateway in (sim.unionpay, sim.aggregator):  # the behaviours each one plays
                            if rest[0] in ("pay", "confirm", "insufficient", "never_confirm"):
                                gateway.next_code(rest[0])
                elif cmd == "screenshot" and rest:
                    out.write(f"saved {sim.screenshot(rest[0])}\n")
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
