"""Starting a buyer's purchase: one BuyerPurchaseWorkflow per purchase id, joined when started
again (the CLI, the demo and tests start them here), and followed to its end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from agentfleet import taskqueues
from agentfleet.errors import FleetError
from agentfleet.payments.purchases import PURCHASE_ID, PurchaseRequest, PurchaseView
from agentfleet.temporal import start_or_attach
from workflows.buyer_purchase import BuyerPurchaseWorkflow

POLL_S = 0.25


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


async def follow_purchase(
    handle: Any, timeout_s: float, on_view: Callable[[PurchaseView], None]
) -> PurchaseView:
    """The purchase's result; until it comes, ``on_view`` sees its ``status`` every
    :data:`POLL_S`. Still running after ``timeout_s``: a one-line :class:`FleetError`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            async with asyncio.timeout(POLL_S):
                view: PurchaseView = await handle.result()
            return view
        except TimeoutError:
            view = await handle.query("status", result_type=PurchaseView)
        on_view(view)
        if time.monotonic() > deadline:
            raise FleetError(
                f"{handle.id} is still running; `fleet payments show` or the Web UI shows "
                "where it is"
            )
