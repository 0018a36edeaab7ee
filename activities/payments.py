"""Payment saga activities: verify an x402 payment against the chain, and write the ledger.

``verify_payment`` is the authoritative check right before a payment is executed and settled:
the offline checks again (time has passed since the gateway's), then the token's view through
the relayer that will submit the settlement, then the payment-identifier claimed for this
payload, then the amount held against the payer's balance by its payer entity (so racing
authorizations never promise more than the payer holds). A refusal is an answer
(``valid=False`` with the x402 reason), not an activity failure; only RPC trouble is retried.
``record_payment`` writes the ledger row and releases the hold.
"""

from __future__ import annotations

import asyncio

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.queues import also_local, runs_on
from agentfleet import taskqueues
from agentfleet.chain.relayers import relayers
from agentfleet.chain.rpc import Web3Connection
from agentfleet.chain.transactions import pick_relayer
from agentfleet.chaos import chaos_point
from agentfleet.payments import ledger
from agentfleet.payments.holds import HoldAsk, Release
from agentfleet.payments.model import (
    Payment,
    PaymentError,
    PaymentStatus,
    PaymentView,
    Reason,
    Verified,
    VerifyRequest,
)
from agentfleet.payments.purchases import RefundRecord
from agentfleet.payments.verification import OnChain, check_offline, check_on_chain, settle_calldata
from agentfleet.settings import Settings
from clients.payers import HoldDesk, release_funds

GAS_HEADROOM_PERCENT = 20
STALE_READS = 5
"""Balance reads a hold may be refused as stale before verify fails (and is retried)."""
ENDED = (PaymentStatus.SETTLED, PaymentStatus.SKILL_FAILED, PaymentStatus.FAILED)
"""The statuses whose ledger write releases the payment's hold."""


class PaymentActivities:
    task_queue = taskqueues.IO

    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self._settings = settings
        self._rpc = Web3Connection(settings.effective_rpc_url)
        self._client = client
        self._desk: HoldDesk | None = None

    def _holds(self) -> HoldDesk:
        if self._desk is None:
            self._desk = HoldDesk(self._client or activity.client())
        return self._desk

    async def close(self) -> None:
        await self._rpc.close()

    @activity.defn(name="verify_payment")
    @runs_on(taskqueues.CHAIN)
    @also_local
    async def verify_payment(self, request: VerifyRequest) -> Verified:
        chaos_point("before_verify", request.payment_id)
        payment = request.payment
        payer = payment.authorization.from_
        accounts = await asyncio.to_thread(relayers, self._settings)
        if not accounts:
            raise ApplicationError(
                "no relayer account to settle with: the relayers are the keystore's keys "
                "labelled relayer-0, relayer-1, ... (docs/chain.md)",
                type="NoRelayer",
            )
        relayer = pick_relayer(accounts, request.payment_id)
        try:
            check_offline(payment, request.terms)
            chain = await self._held(payment, request.payment_id, relayer)
        except PaymentError as refused:
            if activity.info().attempt > 1:  # an earlier attempt may have held the amount
                await self._release(payment, Release(payment_id=request.payment_id))
            return Verified(valid=False, payer=payer, reason=refused.reason, detail=refused.detail)
        chaos_point("after_verify", request.payment_id)
        return Verified(
            valid=True,
            payer=payer,
            relayer=relayer,
            calldata=settle_calldata(payment.authorization),
            gas_limit=chain.gas * (100 + GAS_HEADROOM_PERCENT) // 100,
        )

    async def _held(self, payment: Payment, payment_id: str, relayer: str) -> OnChain:
        """The token's view, the payment-identifier claimed for this payload, and the amount
        held against the payer's balance; PaymentError for any refusal."""
        for _ in range(STALE_READS):
            chain = await check_on_chain(self._rpc.get(), payment, relayer)
            identifier = payment.payment_identifier
            if identifier is not None and not await asyncio.to_thread(
                ledger.claim_identifier,
                self._settings.effective_database_url,
                identifier,
                payment_id,
                payment.sha256,
            ):
                raise PaymentError(
                    Reason.IDENTIFIER_CONFLICT,
                    f"payment-identifier {identifier} was used with a different payload",
                )
            auth = payment.authorization
            answer = await self._holds().hold(
                _payer(payment),
                HoldAsk(
                    payment_id=payment_id,
                    amount=auth.value,
                    balance=chain.balance,
                    block=chain.block,
                ),
            )
            if answer.granted:
                return chain
            if not answer.stale:
                raise PaymentError(
                    Reason.INSUFFICIENT_FUNDS,
                    f"{auth.from_} holds {chain.balance} units and {answer.committed} of them "
                    f"are promised to payments in flight; {auth.value} more do not fit",
                )
        raise ApplicationError(f"the balance of {payment.authorization.from_} kept moving")

    async def _release(self, payment: Payment, release: Release) -> None:
        await release_funds(self._client or activity.client(), _payer(payment), release)

    @activity.defn(name="record_payment")
    @also_local
    async def record_payment(self, view: PaymentView) -> None:
        """Upsert the ledger row of ``view.payment_id`` (a retry rewrites the same row)."""
        chaos_point("before_record", view.payment_id)
        await asyncio.to_thread(ledger.record, self._settings.effective_database_url, view)
        if view.status in ENDED:
            settled = view.status is PaymentStatus.SETTLED
            await release_funds(
                self._client or activity.client(),
                (int(view.network.removeprefix("eip155:")), view.asset, view.payer),
                Release(
                    payment_id=view.payment_id,
                    settled_block=view.block_number if settled else None,
                ),
            )

    @activity.defn(name="record_refund")
    async def record_refund(self, refund: RefundRecord) -> None:
        """Mark the ledger row refunded (idempotent)."""
        found = await asyncio.to_thread(
            ledger.mark_refunded,
            self._settings.effective_database_url,
            refund.payment_id,
            refund.tx_hash,
        )
        if not found:
            raise ApplicationError(f"no ledger row for {refund.payment_id}", type="NoPayment")


def _payer(payment: Payment) -> tuple[int, str, str]:
    return (payment.accepted.chain_id, payment.accepted.asset, payment.authorization.from_)
