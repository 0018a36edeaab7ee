"""What a seller and the facilitator answer about a payment, as the x402 SDK's wire types: the
``PaymentRequired`` of a 402, and the ``SettleResponse`` / ``VerifyResponse`` of a payment's
saga or refusal. Transport (headers, status codes) is the caller's.
"""

from __future__ import annotations

from x402.schemas import (
    PaymentRequired,
    PaymentRequirements,
    ResourceInfo,
    SettleResponse,
    VerifyResponse,
)

from agentfleet.payments.model import (
    PayloadConflict,
    PaymentError,
    PaymentStatus,
    PaymentView,
    Reason,
)
from agentfleet.payments.terms import Terms
from agentfleet.redaction import redact

IDENTIFIER_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "minLength": 16, "maxLength": 128, "pattern": "^[a-zA-Z0-9_-]+$"}
    },
}
"""The ``payment-identifier`` extension a 402 offers (optional for the buyer)."""


def payment_required(
    terms: Terms, resource: str, description: str, error: str | None = None
) -> PaymentRequired:
    """A 402's answer: ``terms`` for ``resource``, and why an offered payment was refused."""
    return PaymentRequired(
        error=error,
        resource=ResourceInfo(url=resource, description=description, mime_type="application/json"),
        accepts=[PaymentRequirements.model_validate(terms.requirements())],
        extensions={
            "payment-identifier": {"info": {"required": False}, "schema": IDENTIFIER_SCHEMA}
        },
    )


def settle_response(view: PaymentView) -> SettleResponse:
    """A saga's state as x402 ``SettleResponse``: success only once settled."""
    settled = view.status is PaymentStatus.SETTLED
    return SettleResponse(
        success=settled,
        payer=view.payer,
        transaction=view.tx_hash or "",
        network=view.network,
        amount=str(view.amount) if settled else None,
        error_reason=None if settled else (view.reason or "unexpected_settle_error"),
        error_message=None if settled or view.detail is None else redact(view.detail),
    )


def settlement_of(
    view: PaymentView | None, payment_id: str, payer: str, network: str
) -> SettleResponse:
    """The facilitator's ``/settle`` answer once it waited for the saga (``view`` None: not
    done yet); PayloadConflict when the saga refused the payment-identifier."""
    if view is None:
        return SettleResponse(
            success=False,
            error_reason="settlement_pending",
            error_message=f"still settling; GET /payments/{payment_id}",
            payer=payer,
            transaction="",
            network=network,
        )
    if view.status is PaymentStatus.REJECTED and view.reason == Reason.IDENTIFIER_CONFLICT:
        raise PayloadConflict(view.detail or "payment-identifier conflict")
    return settle_response(view)


def settle_refused(refused: PaymentError, network: str) -> SettleResponse:
    """``/settle`` of a payment refused before anything started."""
    return SettleResponse(
        success=False,
        error_reason=refused.reason.value,
        error_message=redact(refused.detail),
        transaction="",
        network=network,
    )


def verify_refused(refused: PaymentError, payer: str | None) -> VerifyResponse:
    """``/verify`` of a refused payment (``payer`` None: refused before its signer was known)."""
    return VerifyResponse(
        is_valid=False,
        invalid_reason=refused.reason.value,
        invalid_message=redact(refused.detail),
        payer=payer,
    )
