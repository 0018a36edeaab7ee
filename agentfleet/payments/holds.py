"""Funds held for payments in flight: a payer's authorizations never promise more than it holds.

Each payer of each token has one entity (``PayerWorkflow``, id ``payer-{chain}-{asset}-{payer}``)
that is the only judge of what its in-flight payments add up to. A payment's verify step reads
the payer's balance at a block and asks the entity to hold the payment's amount against it; the
entity grants the hold only when the amounts it already holds, plus the ones settled after that
block (which the balance read cannot show yet), plus this one fit in the balance. The saga's
ledger step releases the hold: as spent (settled in a block) or as nothing moved. So 100
authorizations racing from a payer funded for 10 get 10 holds; 90 are refused at verify, before
any skill runs and before any settlement could revert on chain.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

SPENT_DEPTH = 32
"""A settled amount is forgotten once balance reads are this many blocks past its block."""
SPENT_KEEP_S = 600.0
"""...or after this long: a balance read older than that is not trusted anyway (a stale ask)."""


def payer_workflow_id(chain_id: int, asset: str, payer: str) -> str:
    return f"payer-{chain_id}-{asset.lower()}-{payer.lower()}"


class Hold(BaseModel):
    amount: int = Field(ge=0)
    since: datetime


class Spent(BaseModel):
    amount: int = Field(ge=0)
    block: int = Field(ge=0)
    """The block the settlement was mined in: balance reads at this block or later show it."""
    at: datetime


class PayerState(BaseModel):
    """A payer entity's state (its input, carried across continue-as-new)."""

    chain_id: int
    asset: str
    payer: str
    holds: dict[str, Hold] = Field(default_factory=dict)
    spent: dict[str, Spent] = Field(default_factory=dict)
    newest_block: int = 0
    """The newest block a balance was read at."""
    forgotten_through: int = -1
    """The newest block of a settled amount already forgotten: an ask that read its balance
    before it is stale (it would not count that amount) and must read again."""


class HoldAsk(BaseModel):
    """Hold ``amount`` for ``payment_id`` against ``balance``, read at ``block``."""

    payment_id: str = Field(min_length=1, max_length=300)
    amount: int = Field(ge=0)
    balance: int = Field(ge=0)
    block: int = Field(ge=0)


class HoldAsks(BaseModel):
    chain_id: int
    asset: str
    payer: str
    asks: list[HoldAsk] = Field(min_length=1)


class HoldAnswer(BaseModel):
    granted: bool
    stale: bool = False
    """Refused because the balance was read before an amount the entity has forgotten: read the
    balance again and ask again."""
    committed: int = 0
    """What the entity counted against the balance besides this payment."""


class HoldAnswers(BaseModel):
    answers: dict[str, HoldAnswer]


class Release(BaseModel):
    """The end of a held payment: settled in ``settled_block``, or (None) nothing moved."""

    payment_id: str
    settled_block: int | None = None


class PayerStatus(BaseModel):
    payer: str
    asset: str
    chain_id: int
    held: int
    holds: int
    spent_unseen: int
