"""Stripe's test payment methods (``pm_card_*``) and how the sandbox's issuer treats them.

Using one of these names where a PaymentMethod id is expected creates a fresh ``pm_...``
PaymentMethod with that card's behaviour, as Stripe test mode does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Decline:
    code: str
    decline_code: str
    message: str


@dataclass(frozen=True)
class TestCard:
    brand: str
    last4: str
    funding: str = "credit"
    country: str = "US"
    #: Declines every charge (and saving it, unless ``declines_on_setup`` is False).
    decline: Decline | None = None
    declines_on_setup: bool = True
    #: "always": every payment needs 3DS (off-session ones are declined with
    #: ``authentication_required``); "setup": only saving it needs 3DS, later off-session
    #: charges succeed; "none": frictionless.
    authentication: Literal["none", "always", "setup"] = "none"
    #: Networks that support incremental authorization in the sandbox.
    incremental_authorization: bool = True

    __test__ = False  # not a pytest test class


GENERIC = Decline("card_declined", "generic_decline", "Your card was declined.")

TEST_CARDS: dict[str, TestCard] = {
    "pm_card_visa": TestCard("visa", "4242"),
    "pm_card_visa_debit": TestCard("visa", "5556", funding="debit"),
    "pm_card_mastercard": TestCard("mastercard", "4444"),
    "pm_card_mastercard_debit": TestCard("mastercard", "8210", funding="debit"),
    "pm_card_amex": TestCard("amex", "8431", incremental_authorization=False),
    "pm_card_discover": TestCard("discover", "1117", incremental_authorization=False),
    "pm_card_jcb": TestCard("jcb", "0505", country="JP", incremental_authorization=False),
    "pm_card_de": TestCard("visa", "0016", country="DE"),
    "pm_card_chargeDeclined": TestCard("visa", "0002", decline=GENERIC),
    "pm_card_chargeDeclinedInsufficientFunds": TestCard(
        "visa", "9995", decline=Decline("card_declined", "insufficient_funds", "Your card has insufficient funds.")
    ),
    "pm_card_chargeDeclinedLostCard": TestCard(
        "visa", "9987", decline=Decline("card_declined", "lost_card", "Your card was declined.")
    ),
    "pm_card_chargeDeclinedStolenCard": TestCard(
        "visa", "9979", decline=Decline("card_declined", "stolen_card", "Your card was declined.")
    ),
    "pm_card_chargeDeclinedFraudulent": TestCard(
        "visa", "0019", decline=Decline("card_declined", "fraudulent", "Your card was declined.")
    ),
    "pm_card_chargeDeclinedExpiredCard": TestCard(
        "visa", "0069", decline=Decline("expired_card", "expired_card", "Your card has expired.")
    ),
    "pm_card_chargeDeclinedIncorrectCvc": TestCard(
        "visa", "0127", decline=Decline("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect.")
    ),
    "pm_card_chargeDeclinedProcessingError": TestCard(
        "visa",
        "0119",
        decline=Decline(
            "processing_error", "processing_error", "An error occurred while processing your card. Try again in a little bit."
        ),
    ),
    # Saving it works; every later charge is declined (Stripe's 4000 0000 0000 0341).
    "pm_card_chargeCustomerFail": TestCard("visa", "0341", decline=GENERIC, declines_on_setup=False),
    "pm_card_authenticationRequired": TestCard("visa", "3184", authentication="always"),
    "pm_card_threeDSecure2Required": TestCard("visa", "3220", authentication="always"),
    "pm_card_authenticationRequiredOnSetup": TestCard("visa", "3155", authentication="setup"),
}

AUTHENTICATION_REQUIRED = Decline(
    "authentication_required", "authentication_required", "Your card was declined. This transaction requires authentication."
)
