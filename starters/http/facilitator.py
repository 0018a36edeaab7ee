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
import time
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from limits import RateLimitItem
from pydantic import BaseModel
from x402.schemas import SettleResponse, SupportedKind, SupportedResponse, VerifyResponse

from agentfleet.chain.relayers import relayers
from agentfleet.models import FacilitatorKey
from agentfleet.payments import facilitator_keys
from agentfleet.payments.answers import settle_refused, verify_refused
from agentfleet.payments.model import Payment, PaymentError
from agentfleet.payments.terms import SCHEME, Terms
from agentfleet.settings import Settings
from clients.checkout import Checkout
from starters.http.ratelimit import RateLimits
from starters.http.refusals import answered_as_http
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
        self._limits = RateLimits(settings)
        self._per_key = RateLimits.parse(settings.facilitator_rate_per_key)
        self._per_payer = RateLimits.parse(settings.facilitator_rate_per_payer)

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
        passed = await self._limits.exceeded(items, identity)
        if passed is not None:
            rate, wait = passed
            raise HTTPException(
                429,
                f"too many requests for {who} ({rate}); retry in {wait} s",
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


def create_router(settings: Settings, checkout: Checkout) -> APIRouter:
    router = APIRouter(tags=["facilitator"])
    guard = Guard(settings)

    async def checked(
        body: FacilitatorRequest, credentials: HTTPAuthorizationCredentials | None
    ) -> tuple[Payment, Terms]:
        """Key, requirements and what the key may pay, the payment against them and its
        signer, then the payer's rate; PaymentError for a refused payment, HTTPException
        otherwise."""
        key = await guard.key(credentials)
        with answered_as_http():
            payment, terms = checkout.to_settle(body.payment_payload, body.payment_requirements)
        await guard.allow(key, terms)
        with answered_as_http():  # a chain that does not answer is a 503
            await checkout.check(payment, terms)
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
            with answered_as_http():
                await checkout.check_funds(payment, terms)
        except PaymentError as refused:
            return verify_refused(refused, payer)
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
            return settle_refused(refused, checkout.chain.caip2)
        with answered_as_http():
            return await checkout.settle(payment, terms)

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
        network = checkout.chain.caip2
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
