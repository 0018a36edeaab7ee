"""Payment saga activities: verify an x402 payment against the chain, and write the ledger.

``verify_payment`` is the authoritative check right before a payment is executed and settled:
the offline checks again (time has passed since the gateway's), then the token's view through
the relayer that will submit the settlement. A refusal is an answer (``valid=False`` with the
x402 reason), not an activity failure; only RPC trouble is retried.
"""

from __future__ import annotations

import asyncio

from temporalio import activity
from temporalio.exceptions import ApplicationError

from agentfleet import ledger
from agentfleet.chain.relayers import relayers
from agentfleet.chain.rpc import Web3Connection
from agentfleet.chain.transactions import pick_relayer
from agentfleet.chaos import chaos_point
from agentfleet.payments import (
    PaymentError,
    PaymentView,
    Verified,
    VerifyRequest,
    check_offline,
    check_on_chain,
    settle_calldata,
)
from agentfleet.purchases import RefundRecord
from agentfleet.settings import Settings

GAS_HEADROOM_PERCENT = 20


class PaymentActivities:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._rpc = Web3Connection(settings.effective_rpc_url)

    async def close(self) -> None:
        await self._rpc.close()

    @activity.defn(name="verify_payment")
    async def verify_payment(self, request: VerifyRequest) -> Verified:
        chaos_point("before_verify", request.payment_id)
        payment = request.payment
        payer = payment.authorization.from_
        accounts = await asyncio.to_thread(relayers, self._settings)
        if not accounts:
            raise ApplicationError(
                "no relayer account to settle with; `fleet chain relayer import` adds one",
                type="NoRelayer",
            )
        relayer = pick_relayer(accounts, request.payment_id)
        try:
            check_offline(payment, request.terms)
            gas = await check_on_chain(self._rpc.get(), payment, relayer)
        except PaymentError as refused:
            return Verified(valid=False, payer=payer, reason=refused.reason, detail=refused.detail)
        chaos_point("after_verify", request.payment_id)
        return Verified(
            valid=True,
            payer=payer,
            relayer=relayer,
            calldata=settle_calldata(payment.authorization),
            gas_limit=gas * (100 + GAS_HEADROOM_PERCENT) // 100,
        )

    @activity.defn(name="record_payment")
    async def record_payment(self, view: PaymentView) -> None:
        """Upsert the ledger row of ``view.payment_id`` (a retry rewrites the same row)."""
        chaos_point("before_record", view.payment_id)
        await asyncio.to_thread(ledger.record, self._settings.effective_database_url, view)

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
