"""x402 over HTTP: bots' paid skills and payment status.

=============================================  ==============================================
``POST /bots/{name}/skills/{skill}``           a skill call; JSON body = the skill's args.
                                               Unpaid: 402 + ``PAYMENT-REQUIRED``. Paid
                                               (``PAYMENT-SIGNATURE``, or v1 ``X-PAYMENT``):
                                               the payment saga runs, 200 + the skill's data +
                                               ``PAYMENT-RESPONSE`` once settled.
``GET  /payments/{id}``                        a payment saga's state (``status_url`` of a 202);
                                               the result only for the payer
=============================================  ==============================================

What the codes promise a buyer (docs/payments.md has the whole table):

* 402: nothing was started or settled (unpaid; or refused: bad signature, wrong amount, reused
  nonce, funds already promised to the payer's other payments in flight ...), and the reason is
  in ``PAYMENT-REQUIRED``;
* 200: settled, with the skill's data; the same payment sent again (or 100 times at once)
  reaches the one saga and gets its answer;
* 202: still settling (or its outcome is not known yet): the buyer must not pay again; it polls
  ``status_url`` (with the token it was given) until final;
* 403: settled, but this request did not prove it comes from the payer (the authorization is
  public once on chain): the data goes to the payer only;
* 409: the same payment-identifier or authorization nonce with another payload; 400 and 413 for
  malformed or oversized input; 404 for no such bot or skill;
* 502: the skill failed (nothing settled) or the settlement failed on chain (nothing moved);
* 503: our own trouble (Temporal or the database unreachable), never a 402: the same payment
  sent again joins its saga and is never charged twice. While the chain cannot be reached the
  saga keeps trying: the call answers 202 once the wait ends, never a 402.

The steps are :class:`clients.checkout.Checkout`'s (its decisions:
:mod:`agentfleet.payments.sales`); this module gives each outcome its HTTP answer, and each
refusal its status (:mod:`starters.http.refusals`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Body, FastAPI, Header, Path, Request
from fastapi.responses import JSONResponse
from x402.http import encode_payment_required_header, encode_payment_response_header
from x402.schemas import PaymentRequired

from agentfleet.payments import payer_proof
from agentfleet.payments.access import Reader
from agentfleet.payments.answers import settle_response
from agentfleet.payments.model import PaymentView
from agentfleet.payments.sales import (
    Answered,
    Delivered,
    Pending,
    Sale,
    Unpaid,
    Withheld,
)
from agentfleet.settings import Settings
from clients.checkout import Checkout
from starters.http import wire
from starters.http.bots import bot_row
from starters.http.refusals import answered_as_http
from starters.http.wire import PAYMENT_REQUIRED_ANSWER, PaymentState, problem

PAYMENT_REQUIRED = "PAYMENT-REQUIRED"
PAYMENT_SIGNATURE = "PAYMENT-SIGNATURE"
PAYMENT_RESPONSE = "PAYMENT-RESPONSE"
PAYMENT_RESULT_TOKEN = "PAYMENT-RESULT-TOKEN"  # noqa: S105 - a header name
X_PAYMENT = "X-PAYMENT"
X_PAYMENT_RESPONSE = "X-PAYMENT-RESPONSE"

SETTLEMENT_HEADER = {
    "description": "base64 JSON x402 SettleResponse (X-PAYMENT-RESPONSE for a v1 payment)",
    "schema": {"type": "string"},
}
PAID_SKILL_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Settled: the skill's answer (a JSON object), PAYMENT-RESPONSE, and the "
        "payment's result token. A free skill answers at once, without payment.",
        "content": {"application/json": {"schema": {"type": "object"}}},
        "headers": {
            PAYMENT_RESPONSE: SETTLEMENT_HEADER,
            PAYMENT_RESULT_TOKEN: {
                "description": "Bearer token for GET /payments/{id}",
                "schema": {"type": "string"},
            },
        },
    },
    202: {
        "model": wire.Pending,
        "description": "Still settling: do not pay again; poll status_url.",
        "headers": {"location": {"description": "status_url", "schema": {"type": "string"}}},
        "links": {
            "PaymentStatus": {
                "operationId": "payment_status",
                "parameters": {"payment_id": "$response.body#/payment_id"},
            }
        },
    },
    400: problem("Malformed input: the payment header or payment-identifier, or the args."),
    402: PAYMENT_REQUIRED_ANSWER,
    403: {
        "model": wire.Withheld,
        "description": "Settled, but the result goes to the payer only (send the token or a "
        "PAYMENT-PAYER-PROOF signed by the payer).",
        "headers": {PAYMENT_RESPONSE: SETTLEMENT_HEADER},
    },
    404: problem("No such bot, or the bot sells no such skill."),
    409: problem(
        "The bot sells nothing now, or the payment-identifier / authorization nonce was used "
        "with another payload."
    ),
    413: problem("The body is larger than FLEET_HTTP_MAX_BODY_BYTES."),
    502: {
        "model": wire.SkillFailed,
        "description": "The skill failed (nothing settled) or the settlement failed on chain "
        "(nothing moved).",
        "headers": {PAYMENT_RESPONSE: SETTLEMENT_HEADER},
    },
    503: problem(
        "Temporal or the database cannot be reached: send the same payment again later; it "
        "is never charged twice."
    ),
}
STATUS_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "model": PaymentState,
        "description": "The payment's state; `result` only with the result token or a "
        "PAYMENT-PAYER-PROOF signed by the payer.",
    },
    404: problem("No such payment."),
    503: problem("Temporal cannot be reached."),
}
PAID_ARGS = Body(
    default=None,
    description="The skill's arguments (for forecast: symbol, horizon).",
    examples=[{"symbol": "BTCUSDT", "horizon": "1h"}],
)
SIGNATURE_HEADER = Header(
    default=None,
    alias=PAYMENT_SIGNATURE,
    description="x402 v2 payment: base64 JSON PaymentPayload (exact scheme, EIP-3009).",
)
X_PAYMENT_HEADER = Header(
    default=None, alias=X_PAYMENT, description="x402 v1 payment (legacy clients)."
)


def create_router(settings: Settings, checkout: Checkout) -> APIRouter:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await checkout.close()

    router = APIRouter(tags=["payments"], lifespan=lifespan)

    @router.post(
        "/bots/{name}/skills/{skill_name}",
        operation_id="paid_skill",
        responses=PAID_SKILL_ANSWERS,
    )
    async def paid_skill(
        request: Request,
        name: str = Path(max_length=64),
        skill_name: str = Path(max_length=64),
        args: dict[str, Any] | None = PAID_ARGS,
        payment_signature: str | None = SIGNATURE_HEADER,
        x_payment: str | None = X_PAYMENT_HEADER,
    ) -> JSONResponse:
        """Call ``skill_name`` of bot ``name`` (JSON body: its args), paying with x402."""
        row = await asyncio.to_thread(bot_row, settings, name)
        with answered_as_http():
            sale = await checkout.sell(
                row,
                skill_name,
                args or {},
                payment=payment_signature or x_payment,
                resource=str(request.url),
                reader=reader_of(request),
            )
        settlement_header = PAYMENT_RESPONSE if payment_signature else X_PAYMENT_RESPONSE
        return sale_answer(sale, request, settlement_header)

    @router.get(
        "/payments/{payment_id}",
        name="payment_status",
        operation_id="payment_status",
        responses=STATUS_ANSWERS,
        response_model=PaymentState,
    )
    async def payment_status(
        request: Request, payment_id: str = Path(max_length=200)
    ) -> PaymentState:
        """A payment saga's state: steps so far, status, transaction, reason; its result only
        for the payer (``Authorization: Bearer <token>`` or a ``PAYMENT-PAYER-PROOF``)."""
        with answered_as_http():
            state = await checkout.status(payment_id, reader_of(request))
        return PaymentState(
            **state.view.model_dump(), final=state.final, result_withheld=state.withheld
        )

    return router


def reader_of(request: Request) -> Reader:
    """What the request shows to read a paid result."""
    return Reader(
        authorization=request.headers.get("authorization"),
        payer_proof=request.headers.get(payer_proof.HEADER),
    )


def sale_answer(sale: Sale, request: Request, settlement_header: str) -> JSONResponse:
    """A sale's HTTP answer; ``settlement_header`` carries the x402 ``SettleResponse``."""
    if isinstance(sale, Answered):
        return JSONResponse(sale.data)
    if isinstance(sale, Unpaid):
        return payment_required(sale.required)
    if isinstance(sale, Pending):
        return _pending(sale.payment_id, request, sale.token)
    headers = {settlement_header: encode_payment_response_header(settle_response(sale.view))}
    if isinstance(sale, Delivered):
        headers[PAYMENT_RESULT_TOKEN] = sale.token
        return JSONResponse(sale.data, headers=headers)
    if isinstance(sale, Withheld):
        return _withheld(sale.view, request, headers)
    failed = wire.SkillFailed(error=sale.error, payment_id=sale.view.payment_id)
    return JSONResponse(failed.model_dump(), status_code=502, headers=headers)


def payment_required(required: PaymentRequired) -> JSONResponse:
    """402 with the SDK's ``PaymentRequired`` in the body and in ``PAYMENT-REQUIRED``."""
    return JSONResponse(
        required.model_dump(by_alias=True, exclude_none=True),
        status_code=402,
        headers={
            PAYMENT_REQUIRED: encode_payment_required_header(required),
            "cache-control": "no-store",
        },
    )


def _pending(payment_id: str, request: Request, token: str | None) -> JSONResponse:
    url = str(request.url_for("payment_status", payment_id=payment_id))
    pending = wire.Pending(
        payment_id=payment_id,
        status_url=url,
        token=token,
        note="the payment is being settled; do not pay again, poll status_url"
        + (" with Authorization: Bearer <token>" if token else ""),
    )
    return JSONResponse(
        pending.model_dump(exclude_none=True), status_code=202, headers={"location": url}
    )


def _withheld(view: PaymentView, request: Request, headers: dict[str, str]) -> JSONResponse:
    url = str(request.url_for("payment_status", payment_id=view.payment_id))
    withheld = wire.Withheld(
        detail="this payment is settled; its result goes to the payer only: send the result "
        "token (Authorization: Bearer) or a PAYMENT-PAYER-PROOF signed by the payer",
        payment_id=view.payment_id,
        status_url=url,
        settled=True,
    )
    return JSONResponse(withheld.model_dump(), status_code=403, headers=headers)
