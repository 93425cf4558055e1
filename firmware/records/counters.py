"""A copy of the journal's one-way counters beside the key store, so an emptied or restored journal cannot
make a STAN, a DUKPT counter (a KSN), the batch number or the audit count go backwards."""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
from pathlib import Path

from firmware.errors import JournalError

log = logging.getLogger(__name__)

# Counters that only ever grow. The STAN wraps at 999999, so what is kept of it is `stan_seq`, the number
# of STANs ever handed out (the STAN is derived from it); every value here can be compared with `max`.
# `journal_id` is the journal's identity for the back office, set once: kept in the copy so that a journal
# started new on this storage keeps it (its ids continue after the old ones), while new storage is a new journal.
ONE_WAY = ("stan_seq", "batch", "audit_entries", "journal_id")
ONE_WAY_PREFIXES = ("dukpt:", "dukpt-aes:")
STAN_MAX = 999_999


def one_way(name: str) -> bool:
    """True for a counter whose value must never be handed out twice (and never goes down)."""
    return name in ONE_WAY or name.startswith(ONE_WAY_PREFIXES)


def stan_of(seq: int) -> int:
    """The STAN (1..999999, wrapping) of the seq-th STAN handed out."""
    return (seq - 1) % STAN_MAX + 1


def storage_error(what: str, exc: OSError) -> JournalError:
    """A JournalError whose screen text says what is wrong with the storage."""
    screen = {
        errno.ENOSPC: "DISK FULL",
        errno.EDQUOT: "DISK FULL",
        errno.EROFS: "DISK READ-ONLY",
        errno.EACCES: "DISK NOT WRITABLE",
    }.get(exc.errno or 0, "STORAGE ERROR")
    return JournalError(f"{what}: {exc.strerror or exc}", screen=screen)


class CounterCopy:
    """The last value handed out of each one-way counter, as a small JSON file replaced atomically.

    It is written *before* the journal commits a new value, so it is never behind the values in use.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._values = self._read()

    def _read(self) -> dict[str, int]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise JournalError(
                f"{self.path}: the copy of the journal's counters is unreadable ({exc}); "
                "restore it from a backup of the data folder",
                screen="JOURNAL DAMAGED",
            ) from None
        if not isinstance(data, dict) or not all(isinstance(k, str) and type(v) is int for k, v in data.items()):
            raise JournalError(
                f"{self.path}: the copy of the journal's counters is malformed; restore it from a "
                "backup of the data folder",
                screen="JOURNAL DAMAGED",
            )
        return data

    def values(self) -> dict[str, int]:
        """Every counter the copy holds."""
        return dict(self._values)

    def write(self, updates: dict[str, int]) -> None:
        """Durably record new counter values (fsync'd file and folder); JournalError when storage refuses.

        Several processes may hold the journal (the terminal, `countertop items import`): under a lock the
        file is read again and each counter keeps the higher value, so nobody's older view writes it back."""
        if all(self._values.get(k, -1) >= v for k, v in updates.items()):
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                on_disk = self._read()
                merged = dict(on_disk)
                for name, value in {**self._values, **updates}.items():
                    merged[name] = max(value, on_disk.get(name, value))
                with open(tmp, "w", encoding="utf-8") as f:
                    json.dump(merged, f, sort_keys=True)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
                folder = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(folder)
                finally:
                    os.close(folder)
        except OSError as exc:
            raise storage_error(f"{self.path}: cannot keep the counters' copy", exc) from None
        self._values = merged
