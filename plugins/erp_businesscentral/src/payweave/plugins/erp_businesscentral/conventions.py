"""Every choice about Business Central that the reference marks **unconfirmed**, in one place.

Both the API client and the BC sandbox read these names, so changing one value here changes the
connector and the emulator together (and the sandbox tests then show whether the rest still
holds). Each entry says what the reference (/shared/reference/bc-api-v2.md) left open and why
this value was picked. Confirmed facts (URLs, field names, enum captions, error codes the
reference quotes) are not repeated here; they live where they are used.
"""
from __future__ import annotations

from typing import Final, Literal

# --- customer payments -------------------------------------------------------------------------

#: Sign of ``customerPayments.amount`` for a payment received from a customer.
#: Reference §4 "Amount sign": the API page validates the amount as sent, the Learn examples use
#: ``1500``, but a BC cash-receipt journal enters a customer payment as a *credit* (negative), and
#: BC's journal check refuses a positive Payment on a customer ("Amount must be negative ...").
#: We send ``-1 * amount``. The sandbox accepts only this sign on payment lines (and refuses the
#: other with BC's "must be negative/positive" message). This is the default of the one setting
#: ``BusinessCentralSettings.payment_amount_sign`` (``PAYWEAVE_BC_PAYMENT_AMOUNT_SIGN``); the
#: sandbox's ``SandboxState.payment_sign`` follows it, so flipping the default flips both sides.
CUSTOMER_PAYMENT_AMOUNT_SIGN: Final[Literal[-1, 1]] = -1

#: Reference §4: posting a customer-payment batch through ``journals({id})/Microsoft.NAV.post``
#: is "inferred from source; unconfirmed live" (customerPaymentJournals have no bound action).
#: The write-back posts a customer payment batch through this entity set's ``post`` action.
CUSTOMER_PAYMENT_BATCH_POST_SET: Final = "journals"

# --- concurrency / ETags -----------------------------------------------------------------------

#: Reference §5: a stale If-Match gives ``Request_EntityChanged`` with HTTP 409 per the
#: troubleshooting table, 412 "also plausible". The sandbox answers this status; the client
#: treats *both* 409 and 412 with that code as a concurrency conflict, so either is handled.
STALE_ETAG_STATUS: Final = 409

# --- throttling --------------------------------------------------------------------------------

#: Reference §7: a Retry-After on 429 is unconfirmed (documented for 502/503 only). The sandbox
#: sends one on rate-window 429s (so honouring it is testable) and none on concurrency 429s
#: (so the exponential-backoff path is testable). The client honours it when present.
SANDBOX_RETRY_AFTER_ON_WINDOW_429: Final = True
SANDBOX_RETRY_AFTER_ON_CONCURRENCY_429: Final = False

#: The error code in a 429 body is not in the reference. The client never relies on it (it keys
#: on the HTTP status); the sandbox emits this.
THROTTLED_ERROR_CODE: Final = "Application_TooManyRequests"

# --- paging ------------------------------------------------------------------------------------
# Reference §5: the ``$skiptoken`` format is unconfirmed. Nothing to choose: the client follows
# ``@odata.nextLink`` verbatim and never parses it; the sandbox's token is an opaque blob.

# --- webhooks ----------------------------------------------------------------------------------

#: Reference §6: the method of the validation call is not stated (Microsoft Graph, the model
#: for BC's webhooks, uses POST). The sandbox calls ``POST notificationUrl?validationToken=..``;
#: a subscriber endpoint should answer the token on any method.
WEBHOOK_HANDSHAKE_METHOD: Final = "POST"

#: Reference §6: the ``collection`` notification's filter field is ``lastDateTimeModified`` in
#: the Learn sample, which looks like a typo. Subscribers should not parse this URL: treat a
#: ``collection`` item as "run a delta poll of that entity set". The sandbox writes this field.
WEBHOOK_COLLECTION_FILTER_FIELD: Final = "lastModifiedDateTime"

#: Reference §6: whether ``resource`` in a notification has a leading slash is not pinned down;
#: the reference example has none. The sandbox writes none; the client accepts either.
WEBHOOK_RESOURCE_LEADING_SLASH: Final = False

# --- documents ---------------------------------------------------------------------------------

#: Reference §2: salesOrder status mapping Released -> "Open" is assumed from the invoice
#: aggregator. The sandbox maps unposted order and invoice statuses the same way:
#: Open -> "Draft", Pending Approval -> "In Review", Released / Pending Prepayment -> "Open".
UNPOSTED_STATUS_CAPTIONS: Final = {
    "Open": "Draft",
    "Pending Approval": "In Review",
    "Released": "Open",
    "Pending Prepayment": "Open",
}

# Reference §2: ``promisedPayDate`` / ``disputeStatusId`` / ``disputeStatus`` appear only in
# newer docs. The client never reads them; the sandbox does not emit them.

#: ``$count`` is unconfirmed (reference §5); the client never uses it and the sandbox refuses it.
SUPPORTS_COUNT: Final = False
