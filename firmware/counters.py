"""A copy of the journal's one-way counters beside the key store, so an emptied or restored journal cannot
make a STAN, a DUKPT counter (a KSN), the batch number or the audit count go backwards."""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path

from .errors import JournalError

log = logging.getLogger(__name__)

# Counters that only ever move forward (the STAN wraps at 999999, which is forward too).
ONE_WAY = ("stan", "batch", "audit_entries")
ONE_WAY_PREFIXES = ("dukpt:", "dukpt-aes:")


def one_way(name: str) -> bool:
    """True for a counter whose value must never be handed out twice."""
    return name in ONE_WAY or name.startswith(ONE_WAY_PREFIXES)


def storage_error(what: str, exc: OSError) -> JournalError:
    """A JournalError whose screen text says what is wrong with the storage."""
    screen = {errno.ENOSPC: "DISK FULL", errno.EDQUOT: "DISK FULL", errno.EROFS: "DISK READ-ONLY",
              errno.EACCES: "DISK NOT WRITABLE"}.get(exc.errno or 0, "STORAGE ERROR")
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
            raise JournalError(f"{self.path}: the copy of the journal's counters is unreadable ({exc}); "
                               "restore it from a backup of the data folder", screen="JOURNAL DAMAGED") from None
        if not isinstance(data, dict) or not all(isinstance(k, str) and type(v) is int for k, v in data.items()):
            raise JournalError(f"{self.path}: the copy of the journal's counters is malformed; restore it from a "
                               "backup of the data folder", screen="JOURNAL DAMAGED")
        return data

    def values(self) -> dict[str, int]:
        """Every counter the copy holds."""
        return dict(self._values)

    def write(self, updates: dict[str, int]) -> None:
        """Durably record new counter values (fsync'd file and folder); JournalError when storage refuses."""
        merged = {**self._values, **updates}
        if merged == self._values:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
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
