"""Moves this process's wall clock by a fixed offset, to COUNTERTOP_CLOCK_AT at the start: tools/test-on-dates.

time-machine patches time.time(), datetime.now() and their kin; the monotonic clock, sleeps and timed waits are
left alone (libfaketime moves those too, and then every timed wait in the suite hangs). The first process turns
the date into an offset from the real clock and leaves it in COUNTERTOP_CLOCK_OFFSET, so that the Python
processes it starts (the CLI, the kill harness's terminals) keep the same clock as it, not one that starts again
at the date. OpenSSL, SQLite's own 'now' and other programs stay on the real clock."""

import os
import time

_at = os.environ.get("COUNTERTOP_CLOCK_AT")
if _at:
    # A date that cannot be had must stop the run: site.py would only print the error and go on with the
    # real clock, and the run would pass for a date it never saw.
    from datetime import datetime

    try:
        import time_machine

        target = datetime.fromisoformat(_at)
    except (ImportError, ValueError) as exc:
        raise SystemExit(f"COUNTERTOP_CLOCK_AT={_at!r}: {exc}") from None
    if target.tzinfo is None:
        raise SystemExit(f"COUNTERTOP_CLOCK_AT={_at!r}: give the offset (e.g. +08:00)")
    if "COUNTERTOP_CLOCK_OFFSET" not in os.environ:
        os.environ["COUNTERTOP_CLOCK_OFFSET"] = repr(target.timestamp() - time.time())
    time_machine.travel(time.time() + float(os.environ["COUNTERTOP_CLOCK_OFFSET"]), tick=True).start()
