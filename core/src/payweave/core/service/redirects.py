"""Pay-by-link redirects: where the customer's browser lands after the PSP's hosted page.

``GET /pay/{link}/success|error|cancel`` records how the customer came back (history of the
transaction) and redirects (303) to the payment method's Success / Error / Cancel URL, with
``payweave_transaction`` and ``payweave_status`` (the status payweave holds, never one read from
the query string). On success, payweave asks the PSP for the payment's state when the PSP offers
a lookup; otherwise the PSP's webhook decides.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse

from .context import get_context
from .problems import PROBLEM_JSON, Problem


def _problem(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description, "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


router = APIRouter(prefix="/pay", tags=["redirects"])


@router.get(
    "/{link_id}/{outcome}",
    status_code=303,
    response_class=RedirectResponse,
    summary="The customer returns from the PSP's payment page",
    responses={
        303: {"description": "On to the payment method's Success, Error or Cancel URL."},
        404: _problem("No such payment link."),
        422: _problem("Not a valid return address, or the payment method has no URL for it."),
    },
)
async def customer_returned(
    request: Request,
    link_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9-]{1,36}$")],
    outcome: Literal["success", "error", "cancel"],
) -> RedirectResponse:
    context = get_context(request)
    target = await run_in_threadpool(context.links.customer_returned, link_id, outcome)
    return RedirectResponse(target, status_code=303)
