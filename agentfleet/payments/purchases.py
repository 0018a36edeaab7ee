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
from agentfleet.payments.terms import A2A_X402_EXTENSIONS

DEFAULT_VALIDITY_S = 300
"""The authorization's validity when a seller's 402 names no ``maxTimeoutSeconds``."""
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


def validity_seconds(asked: object) -> int | None:
    """The seller's ``maxTimeoutSeconds`` as a positive whole number of seconds (300 when it
    asks none, as before the cap), else None."""
    if asked is None:
        return DEFAULT_VALIDITY_S
    if isinstance(asked, bool) or not isinstance(asked, int | str):
        return None
    try:
        seconds = int(asked)
    except ValueError:
        return None
    return seconds if seconds > 0 else None


def offered_terms(
    requirements: dict[str, Any], seller: str, buyer: str, chain_id: int, max_validity_s: int
) -> tuple[str, int]:
    """The network and validity (seconds) of a seller's 402 requirements, when the buyer may sign
    them: on the fleet's chain, valid at most ``max_validity_s``. Else ValueError saying why."""
    network = str(requirements.get("network"))
    fleet_network = f"eip155:{chain_id}"
    if network != fleet_network:
        raise ValueError(
            f"{seller} asks to be paid on {network}; {buyer} pays on {fleet_network} only"
        )
    asked = requirements.get("maxTimeoutSeconds")
    validity = validity_seconds(asked)
    if validity is None:
        raise ValueError(f"{seller} asks for maxTimeoutSeconds {asked!r}, not seconds > 0")
    if validity > max_validity_s:
        raise ValueError(
            f"{seller} asks for an authorization valid {validity} s; {buyer} "
            f"signs at most {max_validity_s} s (spending.max_validity_s)"
        )
    return network, validity


def offer_in_card(card: dict[str, Any], skill: str) -> dict[str, Any] | None:
    """The x402 offer an agent card makes for ``skill`` (its x402 extension's params), if any."""
    extensions = (card.get("capabilities") or {}).get("extensions") or []
    for extension in extensions:
        if isinstance(extension, dict) and extension.get("uri") in A2A_X402_EXTENSIONS:
            offers = (extension.get("params") or {}).get("skills") or {}
            found = offers.get(skill)
            return found if isinstance(found, dict) else None
    return None


def offline_score(request: ScoreRequest) -> tuple[int, str]:
    """The rule-based validator used without an LLM. A forecast must carry a value and the last
    observation, and the value must be near the last (EMA forecasts are): within 10 %: 90,
    within 50 %: 60, else 10. Any other skill: 80 for a non-empty answer."""
    data = request.delivery
    if not data:
        return 0, "empty delivery"
    if request.skill.value != "forecast":
        return 80, "a non-empty answer"
    value, last = data.get("value"), data.get("last")
    if not isinstance(value, int | float) or not isinstance(last, int | float) or last == 0:
        return 0, "a forecast without a numeric value and last observation"
    gap = abs(value - last) / abs(last)
    if gap <= 0.1:
        return 90, f"forecast within {gap:.1%} of the last observation"
    if gap <= 0.5:
        return 60, f"forecast {gap:.0%} away from the last observation"
    return 10, f"forecast {gap:.0%} away from the last observation: implausible"
