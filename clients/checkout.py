"""Selling skill calls for x402 payments, and settling payments for the facilitator: the steps
of :mod:`agentfleet.payments` run in order against Temporal, the chain and the database.

What the steps raise besides answering: :class:`~agentfleet.payments.sales.NotForSale`,
:class:`~agentfleet.payments.sales.NotSellingNow`, :class:`~agentfleet.payments.sales.CallFailed`,
:class:`~agentfleet.payments.model.MalformedPayment`,
:class:`~agentfleet.payments.model.PayloadConflict`, :class:`~clients.payments.NoSuchPayment`,
:class:`~clients.payments.SagaEnded` and :class:`~clients.payments.PaymentsUnavailable` (our
own trouble: the same payment sent again joins its saga, never charged twice).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
from sqlalchemy import func
from sqlmodel import select
from temporalio.client import Client
from x402.schemas import SettleResponse

from activities.skills import SkillActivities
from agentfleet import db
from agentfleet.chain.deployment.manifest import load_deployment, manifest_path
from agentfleet.chain.networks import active_profile, effective_confirmations
from agentfleet.chain.relayers import relayers
from agentfleet.chain.rpc import Web3Connection
from agentfleet.chain.transactions import pick_relayer
from agentfleet.errors import FleetError
from agentfleet.models import BotRecord
from agentfleet.payments.access import Reader, ResultAccess
from agentfleet.payments.answers import payment_required, settlement_of
from agentfleet.payments.model import Payment, PaymentError, PaymentOrder
from agentfleet.payments.payload import adopt_v1, read_header, read_payload, read_requirements
from agentfleet.payments.sales import (
    Sale,
    Unpaid,
    answered,
    offer_of,
    outcome,
    seller_address,
)
from agentfleet.payments.terms import Terms, seller_terms
from agentfleet.payments.verification import (
    check_asset,
    check_network,
    check_offline,
    check_on_chain,
    check_signer,
    check_unpromised,
)
from agentfleet.settings import Settings
from agentfleet.temporal import connect
from clients.payers import payer_status
from clients.payments import (
    NoSuchPayment,
    PaymentsUnavailable,
    SagaState,
    saga_handle,
    saga_result,
    saga_state,
    start_or_join,
)

PAYMENT_ID_PREFIX = "payment-"
TERMS_KEPT = 4096
"""Terms (frozen) kept per (asset, price, seller); the lot is dropped when it grows past this."""


@contextmanager
def chain_reachable() -> Iterator[None]:
    """A chain that does not answer (refused, reset, timed out) is our trouble, not the payer's:
    PaymentsUnavailable (a 503), never an internal error."""
    try:
        yield
    except (OSError, aiohttp.ClientError, TimeoutError) as exc:
        raise PaymentsUnavailable(
            f"the chain cannot be reached ({type(exc).__name__}); try again shortly"
        ) from None


class Checkout:
    """One process's seller and facilitator: settings, a Temporal client (connected on first
    use, so the process starts before Temporal does), an RPC connection, the skill runner for
    free calls, and who may read a paid result."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.chain = active_profile(settings)
        self.confirmations = effective_confirmations(settings, self.chain)
        self._asset: tuple[tuple[int, int, int], str] | None = None
        self._terms: dict[tuple[str, int, str], Terms] = {}
        self.rpc = Web3Connection(settings.effective_rpc_url)
        self.skills = SkillActivities(settings)
        self.access = ResultAccess(settings)
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def client(self) -> Client:
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await connect(self.settings)
                except FleetError as exc:
                    raise PaymentsUnavailable(f"payments are unavailable: {exc}") from None
            return self._client

    async def close(self) -> None:
        await self.rpc.close()
        await self.skills.close()

    async def sell(
        self,
        row: BotRecord,
        skill_name: str,
        args: dict[str, Any],
        *,
        payment: str | None,
        resource: str,
        reader: Reader,
    ) -> Sale:
        """A call of ``skill_name`` at the bot of ``row`` for ``resource``, paid with the
        ``payment`` header (None: unpaid); ``reader`` may read a result the saga settled."""
        offer = offer_of(row, skill_name, args)
        if offer.price == 0:
            return answered(await self.skills.run_skill(offer.call))
        terms = self.terms(offer.price, seller_address(row))
        if not payment:
            return Unpaid(payment_required(terms, resource, offer.description))
        try:
            paid = adopt_v1(read_header(payment), terms)
            await self.check(paid, terms)
        except PaymentError as refused:
            reason = refused.reason.value
            return Unpaid(payment_required(terms, resource, offer.description, reason))
        payer = paid.authorization.from_
        order = self.order(
            payment_id=paid.payment_id,
            payment=paid,
            terms=terms,
            call=offer.call,
            buyer=await asyncio.to_thread(self._bot_paying_from, payer),
            resource=resource,
        )
        joined = await start_or_join(await self.client(), order)
        view = await saga_result(joined.handle, self.settings.payment_wait_s)
        readable = joined.fresh or self.access.may_read(reader, order.payment_id, payer)
        token = self.access.token(order.payment_id) if readable else None
        return outcome(
            view,
            payment_id=order.payment_id,
            token=token,
            terms=terms,
            resource=resource,
            offer=offer,
        )

    async def status(self, payment_id: str, reader: Reader) -> SagaState:
        """The saga's state; its result only when ``reader`` may read it."""
        if not payment_id.startswith(PAYMENT_ID_PREFIX):
            raise NoSuchPayment(f"no payment {payment_id!r}")
        found = await saga_state(saga_handle(await self.client(), payment_id))
        if found is None:
            raise NoSuchPayment(f"no payment {payment_id}")
        view = found.view
        if view.result is None or self.access.may_read(reader, payment_id, view.payer):
            return found
        return SagaState(view.model_copy(update={"result": None}), found.final, withheld=True)

    def to_settle(
        self, payload: dict[str, Any], requirements: dict[str, Any]
    ) -> tuple[Payment, Terms]:
        """What a facilitator client asks to verify or settle: the payment and the
        requirements it answers, which must name this chain and its token."""
        payment = read_payload(payload)
        terms = read_requirements(requirements)
        check_network(terms, self.chain.caip2)
        check_asset(terms, self.asset())
        return payment, terms

    async def check(self, payment: Payment, terms: Terms) -> None:
        """The checks before anything starts: the payment against ``terms``, then its signer."""
        check_offline(payment, terms)
        with chain_reachable():
            await check_signer(self.rpc.get(), payment)

    async def check_funds(self, payment: Payment, terms: Terms) -> None:
        """The token's view from the relayer that would settle it, and the payer's balance
        less what its payments in flight hold (its payer entity's)."""
        relayer = await self._relayer(payment.payment_id)
        with chain_reachable():
            chain = await check_on_chain(self.rpc.get(), payment, relayer)
        status = await payer_status(
            await self.client(), (terms.chain_id, terms.asset, payment.authorization.from_)
        )
        check_unpromised(payment, chain.balance, status.held if status is not None else 0)

    async def settle(self, payment: Payment, terms: Terms) -> SettleResponse:
        """The payment's saga without a skill step: started or joined, its answer within
        ``payment_wait_s`` (else a pending answer)."""
        order = self.order(payment_id=payment.payment_id, payment=payment, terms=terms)
        joined = await start_or_join(await self.client(), order)
        view = await saga_result(joined.handle, self.settings.payment_wait_s)
        return settlement_of(view, order.payment_id, payment.authorization.from_, terms.network)

    def asset(self) -> str:
        """The FleetUSD contract on this chain, as the deployment manifest says now (read again
        only when the file changed)."""
        try:
            found = manifest_path(self.settings).stat()
        except FileNotFoundError:
            found = None
        stamp = None if found is None else (found.st_mtime_ns, found.st_size, found.st_ino)
        if stamp is not None and self._asset is not None and self._asset[0] == stamp:
            return self._asset[1]
        try:
            deployment = load_deployment(self.settings)
        except FleetError as exc:
            raise PaymentsUnavailable(str(exc)) from None
        if deployment is None:
            raise PaymentsUnavailable("no contracts on this chain yet; run `fleet chain deploy`")
        asset = deployment.address("FleetUSD")
        self._asset = None if stamp is None else (stamp, asset)
        return asset

    def terms(self, amount: int, pay_to: str) -> Terms:
        asset = self.asset()
        key = (asset, amount, pay_to)
        terms = self._terms.get(key)
        if terms is None:
            if len(self._terms) >= TERMS_KEPT:
                self._terms.clear()
            terms = self._terms[key] = seller_terms(
                network=self.chain.caip2,
                asset=asset,
                amount=amount,
                pay_to=pay_to,
                gas=self.chain.gas,
                confirmations=self.confirmations,
            )
        return terms

    def order(self, **fields: Any) -> PaymentOrder:
        return PaymentOrder(confirmations=self.confirmations, gas=self.chain.gas, **fields)

    def _bot_paying_from(self, address: str) -> str | None:
        """The fleet's bot paying from ``address`` (the ledger's buyer), if it is one of ours."""
        with db.session_scope(self.settings.effective_database_url) as session:
            row = session.exec(
                select(BotRecord).where(func.lower(BotRecord.address) == address.lower())
            ).first()
        return row.name if row else None

    async def _relayer(self, payment_id: str) -> str:
        accounts = await asyncio.to_thread(relayers, self.settings)
        if not accounts:
            raise PaymentsUnavailable(
                "no relayer account: the relayers are the keystore's keys labelled relayer-0, "
                "relayer-1, ... (docs/chain.md)"
            )
        return pick_relayer(accounts, payment_id)
