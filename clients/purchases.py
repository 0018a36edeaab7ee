"""Starting a buyer's purchase: one BuyerPurchaseWorkflow per purchase id, joined when started
again (the CLI, the demo and tests start them here)."""

from __future__ import annotations

from typing import Any

from agentfleet import taskqueues
from agentfleet.payments.purchases import PURCHASE_ID, PurchaseRequest
from agentfleet.temporal import start_or_attach
from workflows.buyer_purchase import BuyerPurchaseWorkflow


async def start_purchase(client: Any, request: PurchaseRequest) -> Any:
    """Start (or join) the purchase's BuyerPurchaseWorkflow; returns its handle."""
    if not PURCHASE_ID.match(request.purchase_id):
        raise ValueError(f"purchase id {request.purchase_id!r} must match {PURCHASE_ID.pattern}")
    return await start_or_attach(
        client,
        BuyerPurchaseWorkflow.run,
        request,
        id=request.purchase_id,
        task_queue=taskqueues.WORKFLOWS,
    )
