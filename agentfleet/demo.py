"""Demos ``fleet up`` runs against the fresh stack: one per capability that exists.

Each demo starts real workflows through the same client every user has, so their runs are visible
in the Web UI. A demo that fails is reported, never fatal to the stack.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from temporalio.client import Client

from agentfleet import taskqueues
from agentfleet.messages import StackCheckInput, StackCheckResult
from agentfleet.settings import Settings
from agentfleet.temporal import connect, start_by_business_key

Report = Callable[[str], None]
Demo = Callable[[Client, Settings], Awaitable[str]]


async def stack_check(client: Client, settings: Settings) -> str:
    """Worker -> database -> chain -> audit row, as a workflow visible in the Web UI."""
    from workflows.stack_check import StackCheckWorkflow  # noqa: PLC0415

    workflow_id = f"stack-check-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    handle = await start_by_business_key(
        client,
        StackCheckWorkflow.run,
        StackCheckInput(label="fleet up", check_chain=settings.rpc_url is None),
        id=workflow_id,
        task_queue=taskqueues.WORKFLOWS,
        execution_timeout=timedelta(minutes=2),
    )
    result: StackCheckResult = await handle.result()
    block = (
        f", chain {result.chain.chain_id} at block {result.chain.block_number}"
        if result.chain
        else ""
    )
    return (
        f"stack check {workflow_id}: database {result.database.backend} "
        f"(schema {result.database.revision}){block}"
    )


async def fusd_transfer(client: Client, settings: Settings) -> str:
    """1 fUSD from the first relayer to anvil account 5, through the durable transaction path
    (TransactionWorkflow + RelayerWorkflow, both visible in the Web UI)."""
    from web3 import Web3  # noqa: PLC0415

    from agentfleet.chain import artifacts  # noqa: PLC0415
    from agentfleet.chain.accounts import dev_account  # noqa: PLC0415
    from agentfleet.chain.relayers import relayers  # noqa: PLC0415
    from agentfleet.chain.transactions import send_transaction  # noqa: PLC0415
    from agentfleet.deployment import load_deployment  # noqa: PLC0415
    from agentfleet.messages import TxRequest  # noqa: PLC0415

    deployment = load_deployment(settings)
    senders = relayers(settings)
    if deployment is None or not senders:
        return "fUSD transfer: skipped (no deployment or relayer on this chain)"
    token = Web3().eth.contract(abi=artifacts.load("FleetUSD").abi)
    recipient = dev_account(5).address
    data = token.encode_abi("transfer", args=[recipient, 1_000_000])
    request_id = f"demo-transfer-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    outcome = await send_transaction(
        client,
        chain_id=settings.chain_id,
        sender=senders[0],
        request=TxRequest(request_id=request_id, to=deployment.address("FleetUSD"), data=data),
        reorg_window_s=5,
    )
    return (
        f"fUSD transfer tx-{settings.chain_id}-{request_id}: {outcome.status.value}, "
        f"1 fUSD {senders[0][:10]}… -> {recipient[:10]}… in block {outcome.block_number}"
    )


DEMOS: list[tuple[str, Demo]] = [("stack check", stack_check), ("fUSD transfer", fusd_transfer)]


async def run_demos(settings: Settings, report: Report) -> list[str]:
    """Run every demo in order; return one line each for the status panel."""
    client = await connect(settings)
    lines = []
    for name, demo in DEMOS:
        try:
            line = await demo(client, settings)
        except Exception as exc:  # a demo never takes the stack down
            line = f"{name}: failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        report(line)
        lines.append(line)
    return lines
