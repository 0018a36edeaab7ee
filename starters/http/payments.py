"""x402 over HTTP: bots' paid skills, payment status, and a facilitator other servers can use.

=============================================  ==============================================
``POST /bots/{name}/skills/{skill}``           a skill call; JSON body = the skill's args.
                                               Unpaid: 402 + ``PAYMENT-REQUIRED``. Paid
                                               (``PAYMENT-SIGNATURE``, or v1 ``X-PAYMENT``):
                                               the payment saga runs, 200 + the skill's data +
                                               ``PAYMENT-RESPONSE`` once settled.
``GET  /payments/{id}``                        a payment saga's state (``status_url`` of a 202)
``POST /verify`` ``POST /settle``              x402 v2 facilitator (settle = the same saga
``GET  /supported``                            with no skill step)
=============================================  ==============================================

Answers a buyer can rely on:

* a payment refused (bad signature, wrong amount, reused nonce ...) is a 402 whose
  ``PAYMENT-REQUIRED`` names the x402 reason; nothing was started or settled;
* the same payment sent again (or 100 times at once) reaches the one saga and gets its answer;
  the same ``payment-identifier`` with another payload is a 409;
* a skill that fails settles nothing (502 with its error);
* a saga still settling after ``FLEET_PAYMENT_WAIT_S`` answers 202 with ``status_url``: the buyer
  must not pay again, the saga carries on;
* our own failure (Temporal or the chain unreachable) is a 5xx, never a 402 (a 402 invites a
  second payment).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import func
from sqlmodel import select
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from x402.http import encode_payment_required_header, encode_payment_response_header
from x402.schemas import (
    PaymentRequired,
    PaymentRequirements,
    ResourceInfo,
    SettleResponse,
    SupportedKind,
    SupportedResponse,
    VerifyResponse,
)

from activities.skills import SkillActivities
from agentfleet import db, ledger, taskqueues
from agentfleet.bots import BotKind, BotRef, BotStatus, Skill, SkillCall
from agentfleet.chain.networks import active_profile, effective_confirmations
from agentfleet.chain.relayers import relayers
from agentfleet.chain.rpc import Web3Connection
from agentfleet.chain.transactions import pick_relayer
from agentfleet.deployment import load_deployment
from agentfleet.errors import FleetError, first_line
from agentfleet.models import BotRecord
from agentfleet.payments import (
    SCHEME,
    Payment,
    PaymentError,
    PaymentOrder,
    PaymentStatus,
    PaymentView,
    Reason,
    Terms,
    adopt_v1,
    check_offline,
    check_on_chain,
    check_signer,
    decode_header,
    decode_payment,
    price_of,
)
from agentfleet.settings import Settings
from agentfleet.temporal import connect, started_or_attached
from starters.http.bots import bot_row
from workflows.payment_saga import (
    PaymentSagaWorkflow,
    payment_start_attributes,
    payment_workflow_id,
)

log = logging.getLogger("agentfleet.http.payments")

PAYMENT_REQUIRED = "PAYMENT-REQUIRED"
PAYMENT_SIGNATURE = "PAYMENT-SIGNATURE"
PAYMENT_RESPONSE = "PAYMENT-RESPONSE"
X_PAYMENT = "X-PAYMENT"
X_PAYMENT_RESPONSE = "X-PAYMENT-RESPONSE"
PAYLOAD_MEMO = "payload_sha256"
"""The saga's memo key for the sha256 of the payment payload it was started with."""
SKILL_RUN_S = 15
"""Upper bound of a skill's run (the saga's activity timeout)."""


class Gateway:
    """What the routes share: settings, a Temporal client (connected on first use, so the app
    starts before Temporal does), an RPC connection, the skill runner for free calls."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.chain = active_profile(settings)
        self.rpc = Web3Connection(settings.effective_rpc_url)
        self.skills = SkillActivities(settings)
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def client(self) -> Client:
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await connect(self.settings)
                except FleetError as exc:
                    raise HTTPException(503, f"payments are unavailable: {exc}") from None
            return self._client

    async def close(self) -> None:
        await self.rpc.close()
        await self.skills.close()

    def asset(self) -> str:
        try:
            deployment = load_deployment(self.settings)
        except FleetError as exc:
            raise HTTPException(503, str(exc)) from None
        if deployment is None:
            raise HTTPException(503, "no contracts on this chain yet; run `fleet chain deploy`")
        return deployment.address("FleetUSD")

    def terms(self, amount: int, pay_to: str) -> Terms:
        policy = self.chain.gas
        settle_s = policy.receipt_timeout_s + effective_confirmations(self.settings) * 15
        return Terms(
            network=self.chain.caip2,
            asset=self.asset(),
            amount=amount,
            pay_to=pay_to,
            max_timeout_seconds=int(SKILL_RUN_S + settle_s + 300),
        )

    def payment_required(
        self, terms: Terms, url: str, description: str, error: str | None = None
    ) -> JSONResponse:
        """402 with the SDK's ``PaymentRequired`` in the body and in ``PAYMENT-REQUIRED``."""
        required = PaymentRequired(
            error=error,
            resource=ResourceInfo(url=url, description=description, mime_type="application/json"),
            accepts=[PaymentRequirements.model_validate(terms.requirements())],
            extensions={
                "payment-identifier": {
                    "info": {"required": False},
                    "schema": {
                        "type": "object",
                        "properties": {"id": {"type": "string", "minLength": 16}},
                    },
                }
            },
        )
        return JSONResponse(
            required.model_dump(by_alias=True, exclude_none=True),
            status_code=402,
            headers={
                PAYMENT_REQUIRED: encode_payment_required_header(required),
                "cache-control": "no-store",
            },
        )

    async def start_or_join(self, order: PaymentOrder) -> WorkflowHandle[Any, PaymentView]:
        """The saga of ``order.payment_id``: started, or the running/finished one joined; a
        different payload under that id (or under its payment-identifier) is a 409."""
        identifier = order.payment.payment_identifier
        if identifier is not None:
            claimed = await asyncio.to_thread(
                ledger.claim_identifier,
                self.settings.effective_database_url,
                identifier,
                order.payment_id,
                order.payment.sha256,
            )
            if not claimed:
                raise HTTPException(
                    409, f"payment-identifier {identifier} was used with a different payload"
                )
        client = await self.client()
        try:
            handle, started = await started_or_attached(
                client,
                PaymentSagaWorkflow.run,
                order,
                id=payment_workflow_id(order.payment_id),
                task_queue=taskqueues.WORKFLOWS,
                search_attributes=payment_start_attributes(),
                memo={PAYLOAD_MEMO: order.payment.sha256},
            )
        except RPCError as exc:
            raise HTTPException(503, f"payments are unavailable: {exc.message}") from None
        if started:  # this payload is the saga's input: nothing to compare
            return handle
        payload_sha256 = await self.started_with(handle)
        if payload_sha256 is not None and payload_sha256 != order.payment.sha256:
            raise HTTPException(
                409, f"payment {order.payment_id} was submitted with a different payload"
            )
        return handle

    async def started_with(self, handle: WorkflowHandle[Any, PaymentView]) -> str | None:
        """The sha256 of the payload the saga was started with: from its memo (one describe,
        which a burst of retries of one payment can afford; a query each would queue them all
        behind the saga's worker), else, for a saga started before the memo, its view."""
        try:
            memo = await (await handle.describe()).memo()
        except RPCError as exc:
            if exc.status is RPCStatusCode.NOT_FOUND:
                return None
            raise HTTPException(503, f"payments are unavailable: {exc.message}") from None
        if PAYLOAD_MEMO in memo:
            return str(memo[PAYLOAD_MEMO])
        view = await self.view(handle)
        return None if view is None else view.payload_sha256

    async def view(self, handle: WorkflowHandle[Any, PaymentView]) -> PaymentView | None:
        """The saga's view: its result when it has finished, else its ``status`` query."""
        found = await self.state(handle)
        return found[0] if found else None

    async def state(
        self, handle: WorkflowHandle[Any, PaymentView]
    ) -> tuple[PaymentView, bool] | None:
        """(view, whether the saga has ended), or None for no such saga. A status can read
        final a moment before the saga ends (the ledger row is its last step): only the end
        is final."""
        try:
            description = await handle.describe()
        except RPCError as exc:
            if exc.status is RPCStatusCode.NOT_FOUND:
                return None
            raise HTTPException(503, f"payments are unavailable: {exc.message}") from None
        if description.status is WorkflowExecutionStatus.COMPLETED:
            return await handle.result(), True
        if description.status is not WorkflowExecutionStatus.RUNNING:
            raise HTTPException(500, f"payment saga {handle.id} ended {description.status}")
        return await handle.query(PaymentSagaWorkflow.status), False

    async def wait(
        self, handle: WorkflowHandle[Any, PaymentView], seconds: float
    ) -> PaymentView | None:
        """The saga's result within ``seconds``, else None (it carries on). Losing Temporal
        meanwhile is a 503: the saga is durable, the same payment sent again joins it."""
        try:
            async with asyncio.timeout(seconds):
                return await handle.result()
        except TimeoutError:
            return None
        except RPCError as exc:
            raise HTTPException(
                503,
                f"payment {handle.id} is in progress but Temporal did not answer "
                f"({exc.message}); send the same payment again: it is never charged twice",
            ) from None


def _settle_response(view: PaymentView) -> SettleResponse:
    settled = view.status is PaymentStatus.SETTLED
    return SettleResponse(
        success=settled,
        payer=view.payer,
        transaction=view.tx_hash or "",
        network=view.network,
        amount=str(view.amount) if settled else None,
        error_reason=None if settled else (view.reason or "unexpected_settle_error"),
        error_message=None if settled else view.detail,
    )


def _wire(model: BaseModel) -> dict[str, Any]:
    data: dict[str, Any] = model.model_dump(by_alias=True, exclude_none=True)
    return data


def create_router(settings: Settings) -> APIRouter:
    gateway = Gateway(settings)

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

    @router.post("/bots/{name}/skills/{skill_name}")
    async def paid_skill(name: str, skill_name: str, request: Request) -> JSONResponse:
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
        args = await _json_args(request)
        bot = BotRef(
            name=row.name,
            kind=kind,
            status=BotStatus(row.status),
            owner=row.owner,
            params=dict(row.params),
        )
        call = SkillCall(bot=bot, skill=skill, args=args)
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
        header = request.headers.get(PAYMENT_SIGNATURE) or request.headers.get(X_PAYMENT)
        if not header:
            return gateway.payment_required(terms, url, description)
        response_header = (
            PAYMENT_RESPONSE if request.headers.get(PAYMENT_SIGNATURE) else (X_PAYMENT_RESPONSE)
        )
        try:
            payment = adopt_v1(decode_header(header), terms)
            check_offline(payment, terms)
            await check_signer(gateway.rpc.get(), payment)
        except PaymentError as refused:
            return gateway.payment_required(terms, url, description, refused.reason.value)
        order = PaymentOrder(
            payment_id=payment.payment_id,
            payment=payment,
            terms=terms,
            call=call,
            buyer=await asyncio.to_thread(bot_owning, payment.authorization.from_),
            confirmations=effective_confirmations(settings),
            resource=url,
        )
        handle = await gateway.start_or_join(order)
        view = await gateway.wait(handle, settings.payment_wait_s)
        if view is None:
            return _pending(order.payment_id, request)
        if view.status is PaymentStatus.REJECTED:
            return gateway.payment_required(terms, url, description, view.reason)
        headers = {response_header: encode_payment_response_header(_settle_response(view))}
        if view.status is PaymentStatus.SETTLED and view.result is not None:
            return JSONResponse(view.result.data, headers=headers)
        if view.status is PaymentStatus.SKILL_FAILED:
            error = view.detail or "the skill failed"
            return JSONResponse(
                {"error": error, "settled": False, "payment_id": view.payment_id},
                status_code=502,
                headers=headers,
            )
        return JSONResponse(
            {
                "error": f"settlement {view.status.value}: {view.detail or view.reason}",
                "settled": False,
                "payment_id": view.payment_id,
            },
            status_code=502,
            headers=headers,
        )

    @router.get("/payments/{payment_id}", name="payment_status")
    async def payment_status(payment_id: str) -> dict[str, Any]:
        """A payment saga's state: steps so far, status, transaction, reason."""
        if not payment_id.startswith("payment-") or len(payment_id) > 200:
            raise HTTPException(404, f"no payment {payment_id!r}")
        client = await gateway.client()
        handle = client.get_workflow_handle_for(PaymentSagaWorkflow.run, payment_id)
        found = await gateway.state(handle)
        if found is None:
            raise HTTPException(404, f"no payment {payment_id}")
        view, ended = found
        data = view.model_dump(mode="json")
        data["final"] = ended
        return data

    async def facilitator_input(request: Request) -> tuple[Payment, Terms]:
        try:
            body = await request.json()
        except ValueError:
            raise HTTPException(400, "the body is not JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("paymentPayload"), dict):
            raise HTTPException(400, "expected {x402Version, paymentPayload, paymentRequirements}")
        requirements = body.get("paymentRequirements")
        if not isinstance(requirements, dict):
            raise HTTPException(400, "expected {x402Version, paymentPayload, paymentRequirements}")
        payment = decode_payment(body["paymentPayload"])
        try:
            extra = requirements.get("extra") or {}
            terms = Terms(
                scheme=str(requirements.get("scheme", SCHEME)),
                network=str(requirements["network"]),
                asset=str(requirements["asset"]),
                amount=int(requirements.get("amount") or requirements["maxAmountRequired"]),
                pay_to=str(requirements["payTo"]),
                max_timeout_seconds=int(requirements.get("maxTimeoutSeconds") or 300),
                name=str(extra.get("name", "FleetUSD")),
                version=str(extra.get("version", "2")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PaymentError(
                Reason.INVALID_REQUIREMENTS, f"payment requirements: {first_line(exc)}"
            ) from None
        if terms.network != gateway.chain.caip2:
            raise PaymentError(
                Reason.INVALID_NETWORK, f"this facilitator settles on {gateway.chain.caip2}"
            )
        if terms.asset.lower() != gateway.asset().lower():
            raise PaymentError(Reason.INVALID_REQUIREMENTS, f"asset {terms.asset} is not fUSD")
        return payment, terms

    @router.post("/verify")
    async def verify(request: Request) -> dict[str, Any]:
        """x402 facilitator ``/verify``: 200 with ``isValid`` (and ``invalidReason``)."""
        payer = None
        try:
            payment, terms = await facilitator_input(request)
            payer = payment.authorization.from_
            check_offline(payment, terms)
            submitter = await _submitter(settings, payment.payment_id)
            await check_on_chain(gateway.rpc.get(), payment, submitter)
        except PaymentError as refused:
            return _wire(
                VerifyResponse(
                    is_valid=False,
                    invalid_reason=refused.reason.value,
                    invalid_message=refused.detail,
                    payer=payer,
                )
            )
        return _wire(VerifyResponse(is_valid=True, payer=payer))

    @router.post("/settle")
    async def settle(request: Request) -> dict[str, Any]:
        """x402 facilitator ``/settle``: the payment saga without a skill step."""
        try:
            payment, terms = await facilitator_input(request)
            check_offline(payment, terms)
            await check_signer(gateway.rpc.get(), payment)
        except PaymentError as refused:
            return _wire(
                SettleResponse(
                    success=False,
                    error_reason=refused.reason.value,
                    error_message=refused.detail,
                    transaction="",
                    network=gateway.chain.caip2,
                )
            )
        order = PaymentOrder(
            payment_id=payment.payment_id,
            payment=payment,
            terms=terms,
            confirmations=effective_confirmations(settings),
        )
        handle = await gateway.start_or_join(order)
        view = await gateway.wait(handle, settings.payment_wait_s)
        if view is None:
            return _wire(
                SettleResponse(
                    success=False,
                    error_reason="settlement_pending",
                    error_message=f"still settling; GET /payments/{order.payment_id}",
                    payer=payment.authorization.from_,
                    transaction="",
                    network=terms.network,
                )
            )
        return _wire(_settle_response(view))

    @router.get("/supported")
    async def supported() -> dict[str, Any]:
        """x402 facilitator ``/supported``: exact EVM on this chain, v2 and v1."""
        network = gateway.chain.caip2
        signers = await asyncio.to_thread(relayers, settings)
        return _wire(
            SupportedResponse(
                kinds=[
                    SupportedKind(x402_version=2, scheme=SCHEME, network=network),
                    SupportedKind(x402_version=1, scheme=SCHEME, network=network),
                ],
                extensions=["payment-identifier"],
                signers={"eip155:*": signers},
            )
        )

    return router


async def _submitter(settings: Settings, payment_id: str) -> str:
    accounts = await asyncio.to_thread(relayers, settings)
    if not accounts:
        raise HTTPException(503, "no relayer account; `fleet chain relayer import` adds one")
    return pick_relayer(accounts, payment_id)


async def _json_args(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        args = json.loads(raw)
    except ValueError:
        raise HTTPException(400, "the body must be a JSON object of the skill's args") from None
    if not isinstance(args, dict):
        raise HTTPException(400, "the body must be a JSON object of the skill's args")
    return args


def _pending(payment_id: str, request: Request) -> JSONResponse:
    url = str(request.url_for("payment_status", payment_id=payment_id))
    return JSONResponse(
        {
            "status": "pending",
            "payment_id": payment_id,
            "status_url": url,
            "note": "the payment is being settled; do not pay again, poll status_url",
        },
        status_code=202,
        headers={"location": url},
    )
