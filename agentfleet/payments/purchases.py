"""A bot buying another bot's skill with x402 (``BuyerPurchaseWorkflow``, ``fleet pay``).

The purchase id is the business key: the workflow id, and the source of the EIP-3009 nonce
(``sha256(purchase id)``) and of the authorization's validity window (fixed when the purchase
starts). A retry of any step therefore signs the very same authorization, which the seller's
saga settles at most once: a purchase can never pay twice.
"""

from __future__ import annotations

import hashlib
import re
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from agentfleet.bots.model import Skill

PURCHASE_ID = re.compile(r"^purchase-[a-z0-9-]{1,120}$")
FEEDBACK_VALUE = 100
"""ERC-8004 feedback a buyer leaves for a delivered, settled purchase (0-100 scale, 0 dec.)."""


def purchase_nonce(purchase_id: str) -> str:
    """The 32-byte EIP-3009 nonce of a purchase (hex)."""
    return "0x" + hashlib.sha256(purchase_id.encode()).hexdigest()


def payment_id_of(network: str, asset: str, payer: str, purchase_id: str) -> str:
    """The seller's payment id for this purchase's authorization (see agentfleet.payments.model)."""
    chain_id = network.removeprefix("eip155:")
    nonce = purchase_nonce(purchase_id)
    return f"payment-{chain_id}-{asset.lower()}-{payer.lower()}-{nonce}"


class PurchaseStatus(StrEnum):
    RUNNING = "running"
    DONE = "done"
    REFUSED = "refused"
    """Not paid: the seller failed a check or the spending policy said no."""
    FAILED = "failed"
    """Paid nothing, or paid and the seller did not deliver (see the reason)."""
    REFUNDED = "refunded"
    """Paid, delivered, scored under the buyer's threshold by the validator: paid back."""


class PurchaseRequest(BaseModel):
    purchase_id: str
    buyer: str
    seller: str
    skill: Skill
    args: dict[str, Any] = Field(default_factory=dict)
    validator: str | None = None
    """A bot that scores the delivery (ERC-8004 ValidationRegistry); None: no validation."""
    min_score: int = Field(default=50, ge=0, le=100)
    """A validation score under this refunds the payment."""


class Offer(BaseModel):
    """What the seller's agent card offers for the skill, checked against the chain."""

    endpoint: str
    amount: int
    asset: str
    network: str
    pay_to: str
    max_timeout_seconds: int
    agent_id: int
    buyer_address: str
    per_call_limit: int
    per_day_limit: int
    reputation: Decimal | None = None
    feedback_count: int = 0


class SignRequest(BaseModel):
    purchase_id: str
    buyer: str
    offer: Offer
    valid_before: int


class PaidCall(BaseModel):
    purchase_id: str
    endpoint: str
    header: str
    args: dict[str, Any] = Field(default_factory=dict)


class PaidAnswer(BaseModel):
    """What the seller answered: its status code, body, and decoded ``PAYMENT-RESPONSE``."""

    status_code: int
    data: dict[str, Any] = Field(default_factory=dict)
    settlement: dict[str, Any] = Field(default_factory=dict)
    payment_id: str | None = None
    settled_nothing: bool = False
    """The seller refused the payment (402) or its skill failed, so its saga settled nothing;
    False for a settlement and for any outcome that is not known (money may have moved)."""


class SettlementCheck(BaseModel):
    tx_hash: str
    payer: str
    pay_to: str
    amount: int
    asset: str
    nonce: str


class FeedbackRequest(BaseModel):
    agent_id: int
    skill: Skill
    endpoint: str
    tx_hash: str
    value: int = Field(default=FEEDBACK_VALUE, ge=0, le=100)


class FeedbackTx(BaseModel):
    """A call to send: contract address and calldata (addresses only, no key)."""

    to: str
    data: str


class ValidationAsk(BaseModel):
    purchase_id: str
    seller: str
    validator: str
    agent_id: int
    request_uri: str
    delivery: dict[str, Any]


class ValidationPlan(BaseModel):
    """``validationRequest`` from the seller's wallet (its agent's owner) naming the validator."""

    seller_address: str
    validator_address: str
    request_hash: str
    request: FeedbackTx


class ScoreRequest(BaseModel):
    skill: Skill
    args: dict[str, Any] = Field(default_factory=dict)
    delivery: dict[str, Any] = Field(default_factory=dict)


class Score(BaseModel):
    score: int = Field(ge=0, le=100)
    why: str
    scorer: str
    """``llm:<model>`` or ``offline`` (the rule-based default when no LLM is configured)."""


class ValidationAnswer(BaseModel):
    request_hash: str
    score: int = Field(ge=0, le=100)


class RefundAsk(BaseModel):
    payer: str
    amount: int


class RefundRecord(BaseModel):
    payment_id: str
    tx_hash: str


class SpentQuery(BaseModel):
    buyer: str


class PurchaseView(BaseModel):
    """The purchase so far (query) and at the end (result)."""

    purchase_id: str
    buyer: str
    seller: str
    skill: Skill
    status: PurchaseStatus = PurchaseStatus.RUNNING
    steps: list[str] = Field(default_factory=list)
    """discovered, checked, signed, paid, settled, confirmed, reviewed (in that order)."""
    amount: int | None = None
    pay_to: str | None = None
    payment_id: str | None = None
    tx_hash: str | None = None
    feedback_tx_hash: str | None = None
    result: dict[str, Any] | None = None
    validation: Score | None = None
    validation_request_hash: str | None = None
    refund_tx_hash: str | None = None
    reason: str | None = None


def new_purchase_id(buyer: str) -> str:
    import uuid

    return f"purchase-{buyer}-{uuid.uuid4().hex[:12]}"
