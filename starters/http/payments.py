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
* 503: our own trouble (Temporal or the chain unreachable), never a 402: the same payment sent
  again joins its saga and is never charged twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Body, FastAPI, Header, HTTPException, Path, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func
from sqlmodel import select
from x402.http import encode_payment_response_header

from agentfleet import db
from agentfleet.bots.model import BotKind, BotRef, BotStatus, Skill, SkillCall
from agentfleet.models import BotRecord
from agentfleet.payments.model import PaymentError, PaymentStatus, PaymentView, Reason
from agentfleet.payments.payload import adopt_v1, decode_header
from agentfleet.payments.terms import price_of
from agentfleet.payments.verification import check_offline, check_signer
from agentfleet.redaction import redact
from agentfleet.settings import Settings
from starters.http.bots import bot_row
from starters.http.gateway import Gateway, settle_response
from starters.http.wire import (
    PAYMENT_REQUIRED_ANSWER,
    PaymentState,
    Pending,
    SkillFailed,
    Withheld,
    problem,
)
from workflows.payment_saga import PaymentSagaWorkflow

PAYMENT_SIGNATURE = "PAYMENT-SIGNATURE"
PAYMENT_RESPONSE = "PAYMENT-RESPONSE"
PAYMENT_RESULT_TOKEN = "PAYMENT-RESULT-TOKEN"  # noqa: S105 - a header name
X_PAYMENT = "X-PAYMENT"
X_PAYMENT_RESPONSE = "X-PAYMENT-RESPONSE"
MAX_PAYMENT_HEADER = 16_384
"""Characters of a payment header (a real one is about 1,200)."""

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
        "model": Pending,
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
        "model": Withheld,
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
        "model": SkillFailed,
        "description": "The skill failed (nothing settled) or the settlement failed on chain "
        "(nothing moved).",
        "headers": {PAYMENT_RESPONSE: SETTLEMENT_HEADER},
    },
    503: problem(
        "Temporal, the database or the chain cannot be reached: send the same payment "
        "again later; it is never charged twice."
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


def create_router(settings: Settings, gateway: Gateway) -> APIRouter:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await gateway.close()

    router = APIRouter(tags=["payments"], lifespan=lifespan)

    def bot_owning(address: str) -> str | None:
        """The fleet's bot paying from ``address`` (the ledger's buyer), if it is one of ours."""
        with db.session_scope(settings.effective_database_url) as session:
            row = session.exec(
                select(BotRecord).where(func.lower(BotRecord.address) == address.lower())
            ).first()
        return row.name if row else None

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
        kind = BotKind(row.kind)
        try:
            skill = Skill(skill_name)
            price = price_of(kind, dict(row.params), skill)
        except ValueError:
            price = None
        if price is None:
            raise HTTPException(404, f"bot {name} does not sell a skill named {skill_name!r}")
        bot = BotRef(
            name=row.name,
            kind=kind,
            status=BotStatus(row.status),
            owner=row.owner,
            params=dict(row.params),
        )
        call = SkillCall(bot=bot, skill=skill, args=args or {})
        if price == 0:
            result = await gateway.skills.run_skill(call)
            if not result.ok:
                raise HTTPException(502, result.error or "the skill failed")
            return JSONResponse(result.data)
        if row.address is None or BotStatus(row.status) not in (
            BotStatus.ACTIVE,
            BotStatus.DEGRADED,
        ):
            raise HTTPException(409, f"bot {name} is {row.status} and sells nothing now")
        terms = gateway.terms(price, row.address)
        url = str(request.url)
        description = f"{skill.value} of {name} ({price / 10**6:g} fUSD)"
        header = payment_signature or x_payment
        if not header:
            return gateway.payment_required(terms, url, description)
        if len(header) > MAX_PAYMENT_HEADER:
            raise HTTPException(400, f"the payment header is over {MAX_PAYMENT_HEADER} characters")
        response_header = PAYMENT_RESPONSE if payment_signature else X_PAYMENT_RESPONSE
        try:
            payment = adopt_v1(decode_header(header), terms)
            check_offline(payment, terms)
            await check_signer(gateway.rpc.get(), payment)
        except PaymentError as refused:
            if refused.reason is Reason.INVALID_IDENTIFIER:
                raise HTTPException(400, refused.detail) from None
            return gateway.payment_required(terms, url, description, refused.reason.value)
        order = gateway.order(
            payment_id=payment.payment_id,
            payment=payment,
            terms=terms,
            call=call,
            buyer=await asyncio.to_thread(bot_owning, payment.authorization.from_),
            resource=url,
        )
        joined = await gateway.start_or_join(order)
        view = await gateway.wait(joined.handle, settings.payment_wait_s)
        payer = payment.authorization.from_
        readable = joined.fresh or gateway.access.may_read(request, order.payment_id, payer)
        token = gateway.access.token(order.payment_id) if readable else None
        if view is None:
            return _pending(order.payment_id, request, token)
        if view.status is PaymentStatus.REJECTED:
            if view.reason == Reason.IDENTIFIER_CONFLICT:
                raise HTTPException(409, view.detail or "payment-identifier conflict")
            return gateway.payment_required(terms, url, description, view.reason)
        headers = {response_header: encode_payment_response_header(settle_response(view))}
        if view.status is PaymentStatus.SETTLED and view.result is not None:
            if token is None:
                return _withheld(view, request, headers)
            headers[PAYMENT_RESULT_TOKEN] = token
            return JSONResponse(view.result.data, headers=headers)
        if view.status is PaymentStatus.SKILL_FAILED:
            error = view.detail or "the skill failed"
        else:
            error = f"settlement {view.status.value}: {view.detail or view.reason}"
        failed = SkillFailed(error=redact(error), payment_id=view.payment_id)
        return JSONResponse(failed.model_dump(), status_code=502, headers=headers)

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
        if not payment_id.startswith("payment-"):
            raise HTTPException(404, f"no payment {payment_id!r}")
        client = await gateway.client()
        handle = client.get_workflow_handle_for(PaymentSagaWorkflow.run, payment_id)
        found = await gateway.state(handle)
        if found is None:
            raise HTTPException(404, f"no payment {payment_id}")
        view, ended = found
        state = PaymentState(**view.model_dump(), final=ended)
        if view.result is not None and not gateway.access.may_read(request, payment_id, view.payer):
            state.result = None
            state.result_withheld = True
        return state

    return router


def _pending(payment_id: str, request: Request, token: str | None) -> JSONResponse:
    url = str(request.url_for("payment_status", payment_id=payment_id))
    pending = Pending(
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
    withheld = Withheld(
        detail="this payment is settled; its result goes to the payer only: send the result "
        "token (Authorization: Bearer) or a PAYMENT-PAYER-PROOF signed by the payer",
        payment_id=view.payment_id,
        status_url=url,
        settled=True,
    )
    return JSONResponse(withheld.model_dump(), status_code=403, headers=headers)
