"""The JSON bodies of the HTTP app's answers, as models, so the OpenAPI document says exactly
what each status code carries (and a schema-driven fuzzer can hold us to it)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from x402.schemas import PaymentRequired

from agentfleet.payments.model import PaymentView


class Problem(BaseModel):
    """Any refusal or failure that is not a payment's: one line saying what to do next."""

    detail: str


class Pending(BaseModel):
    """202: the payment is still settling. Do not pay again: poll ``status_url``; send
    ``Authorization: Bearer <token>`` there to receive the result once settled."""

    status: str = "pending"
    payment_id: str
    status_url: str
    token: str | None = None
    """The payment's result token; only for a request that may read the result."""
    note: str


class SkillFailed(BaseModel):
    """502: the skill failed (nothing was settled), or the settlement failed on chain."""

    error: str
    settled: bool = False
    payment_id: str


class Withheld(BaseModel):
    """403: the payment settled, but this request did not prove it comes from the payer."""

    detail: str
    payment_id: str
    status_url: str
    settled: bool


class PaymentState(PaymentView):
    """``GET /payments/{id}``: the saga's state; ``result`` only for the payer."""

    final: bool
    result_withheld: bool = False


class FacilitatorRequest(BaseModel):
    """The body of ``/verify`` and ``/settle`` (x402 v2 facilitator API)."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    x402_version: int = Field(alias="x402Version", ge=1, le=2)
    payment_payload: dict[str, Any] = Field(alias="paymentPayload")
    payment_requirements: dict[str, Any] = Field(alias="paymentRequirements")


def problem(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description}


PAYMENT_REQUIRED_ANSWER: dict[str, Any] = {
    "model": PaymentRequired,
    "description": "Payment required: unpaid, or the payment was refused (its x402 reason is "
    "in `error` and in the PAYMENT-REQUIRED header); nothing was started or settled.",
    "headers": {
        "PAYMENT-REQUIRED": {
            "description": "base64 JSON of the body (x402 v2)",
            "schema": {"type": "string"},
        }
    },
}
