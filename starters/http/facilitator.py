"""The x402 v2 facilitator: ``POST /verify``, ``POST /settle`` (the payment saga without a skill
step) and ``GET /supported``, for resource servers that let agentfleet's relayers settle.

The relayers pay the gas, so ``/verify`` and ``/settle`` serve authenticated clients only: an
API key (``Authorization: Bearer fk_...``, ``fleet facilitator key add``), a ``payTo`` the key
may pay (by default the fleet's own wallets), an amount of at least
``FLEET_FACILITATOR_MIN_AMOUNT``, and rate limits per key and per payer. ``/supported`` is
public. Answers: 200 with the x402 ``VerifyResponse`` / ``SettleResponse`` (a refused payment is
``isValid: false`` / ``success: false`` with its reason); 400 malformed body; 401 no or bad
key; 403 the key may not pay that ``payTo`` or the amount is under the minimum; 409 the
payment-identifier or nonce was used with another payload; 413 too large; 429 too many
requests (``Retry-After``); 503 our own trouble.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from limits import RateLimitItem, parse_many
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from pydantic import BaseModel
from x402.schemas import SettleResponse, SupportedKind, SupportedResponse, VerifyResponse

from agentfleet.chain.relayers import relayers
from agentfleet.chain.transactions import pick_relayer
from agentfleet.errors import first_line
from agentfleet.models import FacilitatorKey
from agentfleet.payments import facilitator_keys
from agentfleet.payments.model import Payment, PaymentError, PaymentStatus, Reason
from agentfleet.payments.payload import decode_payment
from agentfleet.payments.terms import SCHEME, Terms
from agentfleet.payments.verification import check_offline, check_on_chain, check_signer
from agentfleet.redaction import redact
from agentfleet.settings import Settings
from clients.payers import payer_status
from starters.http.gateway import Gateway, settle_response
from starters.http.wire import FacilitatorRequest, problem

KEY_CACHE_S = 2.0
"""How long a looked-up key is trusted before the database is asked again (a revocation takes
effect within this time)."""
ANSWERS: dict[int | str, dict[str, Any]] = {
    400: problem("Malformed body or payment requirements."),
    401: problem("No API key, or not a live one: `fleet facilitator key add NAME` makes one."),
    403: problem("This key may not pay that payTo, or the amount is under the minimum."),
    409: problem("The payment-identifier or authorization nonce was used with another payload."),
    413: problem("The body is larger than FLEET_HTTP_MAX_BODY_BYTES."),
    429: {
        **problem("Too many requests for this key or this payer; retry after Retry-After s."),
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
    503: problem("Temporal, the database or the chain cannot be reached."),
}

bearer = HTTPBearer(auto_error=False, description="A facilitator API key (fk_...)")
_BEARER = Depends(bearer)
Credentials = HTTPAuthorizationCredentials | None


class Guard:
    """Who may use the facilitator, for which payTo, how much and how often."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.effective_database_url
        self._keys: dict[str, tuple[float, FacilitatorKey | None]] = {}
        self._limiter = MovingWindowRateLimiter(storage_from_string(_async(settings)))
        self._per_key = parse_many(settings.facilitator_rate_per_key)
        self._per_payer = parse_many(settings.facilitator_rate_per_payer)

    async def key(self, credentials: HTTPAuthorizationCredentials | None) -> FacilitatorKey | None:
        """The caller's live key (None when keys are not required); 401 otherwise."""
        if not self.settings.facilitator_auth:
            return None
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise HTTPException(
                401,
                "the facilitator needs an API key: Authorization: Bearer fk_... "
                "(`fleet facilitator key add NAME`)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        presented = credentials.credentials
        cached = self._keys.get(presented)
        if cached is not None and time.monotonic() - cached[0] < KEY_CACHE_S:
            row = cached[1]
        else:
            row = await asyncio.to_thread(facilitator_keys.authenticate, self.url, presented)
            if len(self._keys) > 10_000:
                self._keys.clear()
            self._keys[presented] = (time.monotonic(), row)
        if row is None:
            raise HTTPException(
                401, "not a live facilitator API key", headers={"WWW-Authenticate": "Bearer"}
            )
        await self.limit(self._per_key, f"key:{row.key_id}", f"key {row.key_id}")
        return row

    async def limit(self, items: list[RateLimitItem], identity: str, who: str) -> None:
        for item in items:
            if not await self._limiter.hit(item, identity):
                stats = await self._limiter.get_window_stats(item, identity)
                wait = max(1, math.ceil(stats.reset_time - time.time()))
                raise HTTPException(
                    429,
                    f"too many requests for {who} ({item}); retry in {wait} s",
                    headers={"Retry-After": str(wait)},
                )

    async def allow(self, key: FacilitatorKey | None, terms: Terms) -> None:
        """403 unless ``key`` may pay ``terms.pay_to`` and the amount is at least the minimum."""
        if terms.amount < self.settings.facilitator_min_amount:
            raise HTTPException(
                403,
                f"this facilitator settles {self.settings.facilitator_min_amount} units or more; "
                f"the payment is for {terms.amount}",
            )
        allowed = key.pay_to if key is not None else None
        if allowed == [facilitator_keys.ANY]:
            return
        if allowed is None:
            wallets = await asyncio.to_thread(facilitator_keys.fleet_wallets, self.url)
        else:
            wallets = {address.lower() for address in allowed}
        if terms.pay_to.lower() not in wallets:
            raise HTTPException(
                403,
                f"this key may not pay {terms.pay_to}"
                + (" (only the fleet's own wallets)" if allowed is None else ""),
            )

    async def limit_payer(self, payment: Payment) -> None:
        """429 when the payer (whose signature was checked) asks too often."""
        payer = payment.authorization.from_.lower()
        await self.limit(self._per_payer, f"payer:{payer}", f"payer {payer}")


def x402_answer(model: type[BaseModel]) -> dict[str, Any]:
    """Route options of a facilitator endpoint: the x402 model, camelCase, no nulls."""
    return {
        "response_model": model,
        "response_model_by_alias": True,
        "response_model_exclude_none": True,
        "responses": ANSWERS,
    }


def _async(settings: Settings) -> str:
    uri = settings.rate_limit_storage
    return uri if uri.startswith("async+") else f"async+{uri}"


def create_router(settings: Settings, gateway: Gateway) -> APIRouter:
    router = APIRouter(tags=["facilitator"])
    guard = Guard(settings)

    def inputs(body: FacilitatorRequest) -> tuple[Payment, Terms]:
        """The payment and the requirements it answers; PaymentError or 400."""
        try:
            payment = decode_payment(body.payment_payload)
        except PaymentError as refused:
            if refused.reason is Reason.INVALID_IDENTIFIER:
                raise HTTPException(400, refused.detail) from None
            raise
        requirements = body.payment_requirements
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
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise HTTPException(400, f"payment requirements: {first_line(exc)}") from None
        if terms.network != gateway.chain.caip2:
            raise PaymentError(
                Reason.INVALID_NETWORK, f"this facilitator settles on {gateway.chain.caip2}"
            )
        if terms.asset.lower() != gateway.asset().lower():
            raise PaymentError(Reason.INVALID_REQUIREMENTS, f"asset {terms.asset} is not fUSD")
        return payment, terms

    async def checked(
        body: FacilitatorRequest, credentials: HTTPAuthorizationCredentials | None
    ) -> tuple[Payment, Terms]:
        """Key, requirements and what the key may pay, the payment against them and its
        signer, then the payer's rate; PaymentError for a refused payment, HTTPException
        otherwise."""
        key = await guard.key(credentials)
        payment, terms = inputs(body)
        await guard.allow(key, terms)
        check_offline(payment, terms)
        await check_signer(gateway.rpc.get(), payment)
        await guard.limit_payer(payment)
        return payment, terms

    @router.post("/verify", operation_id="facilitator_verify", **x402_answer(VerifyResponse))
    async def verify(
        body: FacilitatorRequest,
        credentials: Credentials = _BEARER,
    ) -> VerifyResponse:
        """x402 facilitator ``/verify``: 200 with ``isValid`` (and ``invalidReason``). A payer
        whose balance is already promised to its payments in flight is ``insufficient_funds``."""
        payer = None
        try:
            payment, terms = await checked(body, credentials)
            payer = payment.authorization.from_
            submitter = await _submitter(settings, payment.payment_id)
            chain = await check_on_chain(gateway.rpc.get(), payment, submitter)
            status = await payer_status(
                await gateway.client(),
                (terms.chain_id, terms.asset, payment.authorization.from_),
            )
            held = status.held if status is not None else 0
            if chain.balance - held < payment.authorization.value:
                raise PaymentError(
                    Reason.INSUFFICIENT_FUNDS,
                    f"{payer} holds {chain.balance} units and {held} of them are promised to "
                    "payments in flight",
                )
        except PaymentError as refused:
            return VerifyResponse(
                is_valid=False,
                invalid_reason=refused.reason.value,
                invalid_message=redact(refused.detail),
                payer=payer,
            )
        return VerifyResponse(is_valid=True, payer=payer)

    @router.post("/settle", operation_id="facilitator_settle", **x402_answer(SettleResponse))
    async def settle(
        body: FacilitatorRequest,
        credentials: Credentials = _BEARER,
    ) -> SettleResponse:
        """x402 facilitator ``/settle``: the payment saga without a skill step (the same
        payment again answers the first settlement)."""
        try:
            payment, terms = await checked(body, credentials)
        except PaymentError as refused:
            return SettleResponse(
                success=False,
                error_reason=refused.reason.value,
                error_message=redact(refused.detail),
                transaction="",
                network=gateway.chain.caip2,
            )
        order = gateway.order(payment_id=payment.payment_id, payment=payment, terms=terms)
        joined = await gateway.start_or_join(order)
        view = await gateway.wait(joined.handle, settings.payment_wait_s)
        if view is None:
            return SettleResponse(
                success=False,
                error_reason="settlement_pending",
                error_message=f"still settling; GET /payments/{order.payment_id}",
                payer=payment.authorization.from_,
                transaction="",
                network=terms.network,
            )
        if view.status is PaymentStatus.REJECTED and view.reason == Reason.IDENTIFIER_CONFLICT:
            raise HTTPException(409, view.detail or "payment-identifier conflict")
        return settle_response(view)

    @router.get(
        "/supported",
        operation_id="facilitator_supported",
        response_model=SupportedResponse,
        response_model_by_alias=True,
        response_model_exclude_none=True,
        responses={503: problem("The database cannot be read.")},
    )
    async def supported() -> SupportedResponse:
        """x402 facilitator ``/supported`` (public): exact EVM on this chain, v2 and v1."""
        network = gateway.chain.caip2
        signers = await asyncio.to_thread(relayers, settings)
        return SupportedResponse(
            kinds=[
                SupportedKind(x402_version=2, scheme=SCHEME, network=network),
                SupportedKind(x402_version=1, scheme=SCHEME, network=network),
            ],
            extensions=["payment-identifier"],
            signers={"eip155:*": signers},
        )

    return router


async def _submitter(settings: Settings, payment_id: str) -> str:
    accounts = await asyncio.to_thread(relayers, settings)
    if not accounts:
        raise HTTPException(503, "no relayer account; `fleet chain relayer import` adds one")
    return pick_relayer(accounts, payment_id)
