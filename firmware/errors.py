"""The one exception hierarchy of the terminal: every error the firmware raises is a TerminalError."""


class TerminalError(Exception):
    """Base of all terminal errors; `screen` is a short text fit for the display."""

    screen = "ERROR"

    def __init__(self, message: str, screen: str | None = None) -> None:
        super().__init__(message)
        if screen is not None:
            self.screen = screen


class ConfigError(TerminalError):
    """A configuration file is missing, malformed or holds an invalid value."""

    screen = "CONFIG ERROR"


class CardReadError(TerminalError):
    """A card read failed: bad swipe, garbled track, failed check digit."""

    screen = "READ ERROR, SWIPE AGAIN"


class CodecError(TerminalError):
    """A host message could not be encoded or decoded."""

    screen = "HOST ERROR"


class StaleAnswer(CodecError):
    """A host message that answers some other request (its MTI or STAN is not this request's): discarded."""


class AnswerMismatch(CodecError):
    """An answer to this request (same MTI pair and STAN) whose amount, currency, processing code, terminal or
    merchant differs from what was asked: never an approval; the outcome is unknown and the sale is reversed."""

    screen = "BAD HOST ANSWER"


class PartialApproval(AnswerMismatch):
    """The host approved less than was asked (response code 10). The terminal does not take partial
    approvals: the sale is reversed and the screen says why."""

    screen = "PARTIAL APPROVAL"


class HostError(TerminalError):
    """The acquirer host link failed; `sent` says whether the request may have reached the host."""

    screen = "HOST NOT AVAILABLE"

    def __init__(self, message: str, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class DeviceError(TerminalError):
    """A device could not be found, opened, or written."""

    screen = "DEVICE ERROR"


class ChipReaderError(DeviceError):
    """The contact chip reader failed mid-session: pcscd or the reader went away, or the card stopped answering."""

    screen = "CHIP READER ERROR"


class ChipCardRemoved(ChipReaderError):
    """The chip card was taken out of the reader before the session was over."""

    screen = "CARD REMOVED"


class JournalError(TerminalError):
    """The transaction journal refused an operation (integrity, schema)."""

    screen = "JOURNAL ERROR"


class KeyMaterialError(TerminalError):
    """Key material is missing or exhausted (DUKPT counter overflow)."""

    screen = "KEY ERROR"


class MacError(CodecError):
    """A host message's MAC is missing or does not verify: the message is as good as never received."""

    screen = "HOST ERROR"


class SignOnError(TerminalError):
    """Sign-on failed: no answer, a refusal, or working keys whose check values do not match."""

    screen = "SIGN-ON FAILED"


class UpdateError(TerminalError):
    """A software package was refused: unsigned, tampered, older than installed, or failed to install."""

    screen = "UPDATE REFUSED"


class PermissionDenied(TerminalError):
    """The operator's role does not allow the action."""

    screen = "NOT ALLOWED"
