"""The back office's errors: TerminalErrors, so `countertop` says them in one line like every other command's."""

from firmware.errors import TerminalError


class OfficeError(TerminalError):
    """The back office cannot do what was asked (its database, its files, a bad request)."""

    screen = "OFFICE ERROR"
