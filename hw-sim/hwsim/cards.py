"""The test-card catalog: magstripe cards named by the outcome the simulated issuer gives them."""

from __future__ import annotations

from dataclasses import dataclass

CATALOG_PIN = "1234"


@dataclass(frozen=True)
class TestCard:
    """A test card and the issuer's record of it."""

    id: str
    pan: str
    name: str
    expiry: str  # YYMM
    outcome: str  # what the issuer answers, for people reading the list
    balance: int = 100_000_000  # minor units
    status: str = "active"  # active | stolen | do_not_honor | issuer_down | pin_mismatch
    service_code: str = "101"
    pin: str = CATALOG_PIN
    discretionary: str = "1000000000000"

    @property
    def track1(self) -> str:
        """ISO/IEC 7813 track 1 with sentinels, as a reader types it (no LRC)."""
        return f"%B{self.pan}^{self.name}^{self.expiry}{self.service_code}{self.discretionary}?"

    @property
    def track2(self) -> str:
        """ISO/IEC 7813 track 2 with sentinels."""
        return f";{self.pan}={self.expiry}{self.service_code}{self.discretionary}?"

    __test__ = False  # not a pytest test class


CATALOG: dict[str, TestCard] = {
    c.id: c
    for c in (
        TestCard("visa-approve", "4242424242424242", "TEST/VISA", "3012", "00 approved"),
        TestCard("mc-approve", "5555555555554444", "TEST/MASTERCARD", "3012", "00 approved"),
        TestCard("unionpay-approve", "6250941006528599", "TEST/UNIONPAY", "3012", "00 approved"),
        TestCard("visa-insufficient", "4000000000009995", "TEST/NO FUNDS", "3012", "51 insufficient funds", balance=0),
        TestCard(
            "visa-wrong-pin",
            "4000000000000127",
            "TEST/WRONG PIN",
            "3012",
            "55 wrong PIN on every try (the issuer's PIN record does not match)",
            status="pin_mismatch",
        ),
        TestCard("visa-expired", "4000000000000069", "TEST/EXPIRED", "2001", "54 expired card"),
        TestCard("visa-stolen", "4000000000009979", "TEST/STOLEN", "3012", "43 stolen card", status="stolen"),
        TestCard(
            "visa-do-not-honor", "4000000000000002", "TEST/DECLINE", "3012", "05 do not honor", status="do_not_honor"
        ),
        TestCard(
            "visa-invalid-number",
            "4000000000000036",
            "TEST/UNKNOWN",
            "3012",
            "14 invalid card number (Luhn-valid, unknown to the issuer)",
            status="unknown",
        ),
        TestCard(
            "visa-issuer-down",
            "4000000000000119",
            "TEST/ISSUER DOWN",
            "3012",
            "91 issuer unavailable",
            status="issuer_down",
        ),
    )
}


def card(card_id: str) -> TestCard:
    """A catalog card by id; KeyError lists the ids."""
    try:
        return CATALOG[card_id]
    except KeyError:
        raise KeyError(f"no test card {card_id!r}; the catalog has: {', '.join(CATALOG)}") from None
