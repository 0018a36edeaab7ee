"""A payment in FleetUSD: the EIP-3009 authorization a buyer signs, the saga's input, state and
verdicts, and the reasons a payment is refused.

A payment is identified by what makes its authorization unique on chain:
``payment-{chainId}-{asset}-{from}-{nonce}`` (lower-case). The saga (``PaymentSagaWorkflow``)
has that id, so 100 identical submissions reach one workflow, and an authorization can settle at
most once whatever happens.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from agentfleet.bots.model import Skill, SkillCall, SkillResult
from agentfleet.messages import GasPolicy
from agentfleet.payments.terms import Terms


class Reason(StrEnum):
    """Why a payment is refused (x402 ``invalidReason`` / ``errorReason``): the v2
    specification's code where it has one, the official SDK's exact-EVM codes otherwise."""

    INVALID_PAYLOAD = "invalid_payload"
    INVALID_VERSION = "invalid_x402_version"
    UNSUPPORTED_SCHEME = "unsupported_scheme"
    INVALID_NETWORK = "invalid_network"
    INVALID_REQUIREMENTS = "invalid_payment_requirements"
    RECIPIENT_MISMATCH = "invalid_exact_evm_payload_recipient_mismatch"
    VALUE_MISMATCH = "invalid_exact_evm_payload_authorization_value_mismatch"
    VALID_AFTER = "invalid_exact_evm_payload_authorization_valid_after"
    VALID_BEFORE = "invalid_exact_evm_payload_authorization_valid_before"
    BAD_SIGNATURE = "invalid_exact_evm_payload_signature"
    NONCE_USED = "invalid_exact_evm_nonce_already_used"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    SIMULATION_FAILED = "invalid_exact_evm_transaction_simulation_failed"
    TRANSACTION_FAILED = "transaction_failed"
    IDENTIFIER_CONFLICT = "payment_identifier_conflict"
    """Not an x402 code: the payment-identifier is held by another payload (answered 409)."""
    INVALID_IDENTIFIER = "invalid_payment_identifier"
    """Not an x402 code: the payment-identifier is not 16-128 of [A-Za-z0-9_-] (answered 400)."""


class PaymentError(Exception):
    """A payment refused for ``reason``; ``detail`` is the one line a person reads."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class MalformedPayment(Exception):
    """A payment (or the requirements it answers) that cannot be read at all: answered 400,
    nothing started."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class PayloadConflict(Exception):
    """A payment id or payment-identifier already taken by another payload: answered 409."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Authorization(BaseModel):
    """The EIP-3009 ``TransferWithAuthorization`` an x402 exact-EVM payload carries."""

    model_config = ConfigDict(frozen=True)

    from_: str
    to: str
    value: int = Field(ge=0)
    valid_after: int = Field(ge=0)
    valid_before: int = Field(ge=0)
    nonce: str
    signature: str


class Payment(BaseModel):
    """A decoded payment: the requirements the buyer accepted and its signed authorization."""

    model_config = ConfigDict(frozen=True)

    x402_version: int
    accepted: Terms
    authorization: Authorization
    payment_identifier: str | None = None
    """The ``payment-identifier`` extension's id, when the buyer sent one."""
    sha256: str
    """Hash of the canonical payload: the same id with another payload is a conflict (409)."""

    @property
    def payment_id(self) -> str:
        return payment_id(self.accepted.chain_id, self.accepted.asset, self.authorization)


def payment_id(chain_id: int, asset: str, authorization: Authorization) -> str:
    return (
        f"payment-{chain_id}-{asset.lower()}-{authorization.from_.lower()}-"
        f"{authorization.nonce.lower()}"
    )


class PaymentStatus(StrEnum):
    """Where a payment saga is: rejected and skill_failed settle nothing; settled is final."""

    VERIFYING = "verifying"
    EXECUTING = "executing"
    SETTLING = "settling"
    SETTLED = "settled"
    REJECTED = "rejected"
    SKILL_FAILED = "skill_failed"
    FAILED = "failed"
    REFUNDED = "refunded"


BEFORE_BROADCAST = frozenset({PaymentStatus.VERIFYING, PaymentStatus.EXECUTING})
"""Saga statuses in which its settlement has not been broadcast: the payload is not public."""


class PaymentOrder(BaseModel):
    """Input of a PaymentSagaWorkflow (addresses, amounts and a signed authorization; no key)."""

    payment_id: str
    payment: Payment
    terms: Terms
    call: SkillCall | None = None
    """The skill bought; None for a facilitator ``/settle`` (no skill step)."""
    buyer: str | None = None
    """A name for the payer (a bot of ours, or what the caller said), for the ledger."""
    confirmations: int = 0
    resource: str | None = None
    gas: GasPolicy | None = None
    """The settlement's gas policy (the chain profile's); None: the defaults."""


class PaymentView(BaseModel):
    """A saga's state (query) and result: what ``GET /payments/{id}`` and the CLI show."""

    payment_id: str
    status: PaymentStatus
    network: str
    asset: str
    amount: int
    payer: str
    pay_to: str
    seller: str | None = None
    skill: Skill | None = None
    buyer: str | None = None
    reason: str | None = None
    """An x402 reason code (rejected, failed) or the skill's error (skill_failed)."""
    detail: str | None = None
    tx_hash: str | None = None
    block_number: int | None = None
    confirmations: int = 0
    relayer: str | None = None
    result: SkillResult | None = None
    payload_sha256: str = ""
    steps: list[str] = Field(default_factory=list)
    """What happened so far (verified, executed, signed, settled, confirmed, recorded)."""


class VerifyRequest(BaseModel):
    """Input of the saga's ``verify_payment`` activity."""

    payment: Payment
    terms: Terms
    payment_id: str


class Verified(BaseModel):
    """``verify_payment``'s answer: valid (with the relayer and calldata to settle) or why not."""

    valid: bool
    payer: str
    reason: Reason | None = None
    detail: str | None = None
    relayer: str | None = None
    calldata: str | None = None
    gas_limit: int | None = None
    """The settlement's gas (estimated while verifying, with headroom): the transaction skips
    its own estimate."""
