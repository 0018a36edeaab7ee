"""Transactions, the core's part: the ids of a transaction's and a relayer's workflows and the
choice among relayer accounts. Sending (starting a TransactionWorkflow, asking a relayer for
nonces) is ``clients.transactions``.

The workflow id is the request id (``tx-{chain}-{request_id}``): the same request sent again,
concurrently, after a crash or after it finished, returns the same outcome and never sends a
second transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

RELAYER_WORKFLOW = "RelayerWorkflow"
"""The relayer entity's workflow type, and below the update and signal that activities send it by
name (an activity that referenced the workflow class would import the workflow that calls it)."""
RESERVE_NOW_UPDATE = "reserve_now"
FINISHED_SIGNAL = "finished"


def relayer_workflow_id(chain_id: int, address: str) -> str:
    """The RelayerWorkflow of one sender account on one chain."""
    return f"relayer-{chain_id}-{address.lower()}"


def transaction_workflow_id(chain_id: int, request_id: str) -> str:
    """The TransactionWorkflow of one request on one chain."""
    return f"tx-{chain_id}-{request_id}"


relayer_id = relayer_workflow_id


def pick_relayer(relayers: Sequence[str], request_id: str) -> str:
    """A stable choice among relayer accounts, so retries of a request use the same account."""
    if not relayers:
        raise ValueError("no relayer accounts configured")
    digest = hashlib.sha256(request_id.encode()).digest()
    return relayers[int.from_bytes(digest[:8], "big") % len(relayers)]
