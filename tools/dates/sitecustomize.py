"""Moves this process's wall clock to COUNTERTOP_CLOCK_AT (ISO 8601), ticking from there: tools/test-on-dates.

time-machine patches time.time(), datetime.now() and their kin; the monotonic clock, sleeps and timed waits are
left alone (libfaketime moves those too, and then every timed wait in the suite hangs). Python processes the suite
starts (the CLI, the kill harness's terminals) inherit the variable and PYTHONPATH, so they move with it. SQLite's
own 'now' and other programs stay on the real clock."""

import os

_at = os.environ.get("COUNTERTOP_CLOCK_AT")
if _at:
    import time_machine

    time_machine.travel(_at, tick=True).start()
