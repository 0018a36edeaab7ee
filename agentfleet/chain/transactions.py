"""How code sends a transaction: an update-with-start on the sender's relayer entity.

``send_transaction`` returns when the transaction is final (or known to have failed); the same
``request_id`` sent again, concurrently or after a crash, returns the same outcome and never sends
a second transaction. Pick among several relayer accounts with :func:`pick_relayer`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from agentfleet import taskqueues
from agentfleet.messages import GasPolicy, RelayerState, TxOutcome, TxRequest


def relayer_id(chain_id: int, address: str) -> str:
    return f"relayer-{chain_id}-{address.lower()}"


def pick_relayer(relayers: Sequence[str], request_id: str) -> str:
    """A stable choice among relayer accounts, so retries of a request use the same account."""
    if not relayers:
        raise ValueError("no relayer accounts configured")
    digest = hashlib.sha256(request_id.encode()).digest()
    return relayers[int.from_bytes(digest[:8], "big") % len(relayers)]


async def send_transaction(
    client: Client,
    *,
    chain_id: int,
    sender: str,
    request: TxRequest,
    confirmations: int = 0,
    policy: GasPolicy | None = None,
    reorg_window_s: float = 15.0,
    heartbeat_timeout_s: float = 10.0,
) -> TxOutcome:
    from workflows.relayer import RelayerWorkflow  # noqa: PLC0415

    start = WithStartWorkflowOperation(
        RelayerWorkflow.run,
        RelayerState(
            chain_id=chain_id,
            address=sender,
            confirmations=confirmations,
            policy=policy or GasPolicy(),
            reorg_window_s=reorg_window_s,
            heartbeat_timeout_s=heartbeat_timeout_s,
        ),
        id=relayer_id(chain_id, sender),
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        task_queue=taskqueues.WORKFLOWS,
    )
    outcome: TxOutcome = await client.execute_update_with_start_workflow(
        RelayerWorkflow.submit, request, start_workflow_operation=start
    )
    return outcome
