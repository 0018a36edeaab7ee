"""Tool calls forwarded to the fleet's HTTP gateway, and its answers as MCP tool results in the
shape of x402's MCP transport (``specs/transports-v2/mcp.md``).

A priced skill is paid through the gateway's own paid route (``POST /bots/{name}/skills/{skill}``
with ``PAYMENT-SIGNATURE``), so the payment saga, exactly-once settlement and the ledger are the
ones every HTTP buyer gets; this module only changes the envelope:

=======================  =========================================================================
gateway answer           tool result
=======================  =========================================================================
200                      the skill's data (``structuredContent`` and JSON text); when paid, the
                         x402 ``SettleResponse`` in ``_meta["x402/payment-response"]``
402                      ``isError``, the ``PaymentRequired`` in ``structuredContent`` and, as JSON,
                         in ``content[0].text`` (its ``error`` says why a payment was refused)
202                      ``isError`` (no answer yet; never pay again): the payment id, its token and
                         ``settlement_pending`` in ``_meta["x402/payment-response"]``;
                         ``payment_status`` reads it later
403, 502                 ``isError``, one line, and the settlement the gateway reported in
                         ``_meta["x402/payment-response"]``
other 4xx, 5xx           ``isError``, one line (the gateway's ``detail``)
=======================  =========================================================================
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import httpx
from mcp.types import CallToolResult, TextContent

from agentfleet.errors import first_line
from agentfleet.payments.answers import settlement_of
from agentfleet.redaction import redact
from starters.mcp.tools import BadInput

PAYMENT_META = "x402/payment"
PAYMENT_RESPONSE_META = "x402/payment-response"
PAYMENT_SIGNATURE = "PAYMENT-SIGNATURE"
PAYMENT_RESPONSE = "PAYMENT-RESPONSE"
MAX_PAYMENT_BYTES = 16 * 1024
"""The gateway's limit on a payment header (larger ones are a 400 there)."""


def read_payment(meta: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``PaymentPayload`` a tool call carries in ``_meta["x402/payment"]`` (None: unpaid);
    BadInput when it is not a JSON object. The gateway checks the rest."""
    payment = (meta or {}).get(PAYMENT_META)
    if payment is None:
        return None
    if isinstance(payment, str):  # some clients send the payload as JSON text
        try:
            payment = json.loads(payment)
        except ValueError:
            payment = None
    if not isinstance(payment, dict):
        raise BadInput(f"_meta[{PAYMENT_META!r}] must be an x402 PaymentPayload object")
    if len(json.dumps(payment)) > MAX_PAYMENT_BYTES:
        raise BadInput(f"_meta[{PAYMENT_META!r}] is larger than {MAX_PAYMENT_BYTES} bytes")
    return payment


def payment_header(payment: dict[str, Any]) -> str:
    """``PAYMENT-SIGNATURE``: the payload as base64 JSON, as x402's HTTP transport sends it."""
    return base64.b64encode(json.dumps(payment, separators=(",", ":")).encode()).decode()


def text_result(
    data: Any, *, is_error: bool = False, meta: dict[str, Any] | None = None
) -> CallToolResult:
    """``data`` as ``structuredContent`` and as its JSON text in ``content[0]``."""
    text = json.dumps(data, separators=(",", ":"))
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=data,
        is_error=is_error,
        _meta=meta,
    )


def tool_error(line: str, meta: dict[str, Any] | None = None) -> CallToolResult:
    """A tool error of one line (redacted of the process's secrets)."""
    one = redact(line).strip().splitlines()[0] if line.strip() else "error"
    return CallToolResult(content=[TextContent(type="text", text=one)], is_error=True, _meta=meta)


class Gateway:
    """The fleet's HTTP gateway at ``base_url``, over one HTTP client."""

    def __init__(self, base_url: str, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout_s)

    async def close(self) -> None:
        await self.http.aclose()

    async def call_skill(
        self, bot: str, skill: str, args: dict[str, Any], payment: dict[str, Any] | None
    ) -> CallToolResult:
        """``skill`` of ``bot`` with ``args``, paid with ``payment`` (None: unpaid)."""
        headers = {PAYMENT_SIGNATURE: payment_header(payment)} if payment else {}
        try:
            response = await self.http.post(
                f"/bots/{bot}/skills/{skill}", json=args, headers=headers
            )
        except httpx.HTTPError as exc:
            return self._unreachable(exc, paid=payment is not None)
        return skill_result(response, payment)

    async def payment_status(self, payment_id: str, token: str | None) -> CallToolResult:
        """A payment's state (``GET /payments/{id}``); its result too with ``token``."""
        headers = {"authorization": f"Bearer {token}"} if token else {}
        try:
            response = await self.http.get(f"/payments/{payment_id}", headers=headers)
        except httpx.HTTPError as exc:
            return self._unreachable(exc, paid=False)
        body = _json(response)
        if response.status_code == 200 and isinstance(body, dict):
            return text_result(body)
        return tool_error(detail_of(response))

    def _unreachable(self, exc: httpx.HTTPError, *, paid: bool) -> CallToolResult:
        again = " (send the same payment again: it is never charged twice)" if paid else ""
        return tool_error(
            f"the fleet's gateway at {self.base_url} did not answer: {first_line(exc, 200)}{again}"
        )


def skill_result(response: httpx.Response, payment: dict[str, Any] | None) -> CallToolResult:
    """The gateway's answer to a skill call as a tool result (the table above)."""
    status = response.status_code
    settlement = settlement_in(response)
    meta = {PAYMENT_RESPONSE_META: settlement} if settlement is not None else None
    body = _json(response)
    if status == 200 and isinstance(body, dict):
        return text_result(body, meta=meta)
    if status == 402 and isinstance(body, dict):
        return text_result(body, is_error=True)
    if status == 202 and isinstance(body, dict):
        pending = _pending(str(body.get("payment_id")), payment or {})
        return text_result(body, is_error=True, meta={PAYMENT_RESPONSE_META: pending})
    if status == 403 and isinstance(body, dict):
        transaction = settlement.get("transaction") if settlement else None
        return tool_error(
            f"payment {body.get('payment_id')} was settled once (transaction {transaction}) "
            "and is not charged again; its result went to the call that paid",
            meta,
        )
    if status == 502 and isinstance(body, dict) and "error" in body:
        return tool_error(f"{body['error']} (nothing was paid)", meta)
    return tool_error(detail_of(response))


def settlement_in(response: httpx.Response) -> dict[str, Any] | None:
    """The x402 ``SettleResponse`` the gateway put in ``PAYMENT-RESPONSE``, if any."""
    header = response.headers.get(PAYMENT_RESPONSE)
    if not header:
        return None
    try:
        decoded = json.loads(base64.b64decode(header, validate=True))
    except (ValueError, binascii.Error):
        return None
    return decoded if isinstance(decoded, dict) else None


def detail_of(response: httpx.Response) -> str:
    """The one line a gateway's error answer says."""
    body = _json(response)
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):  # FastAPI's validation errors
        detail = "; ".join(str(item.get("msg", item)) for item in detail if isinstance(item, dict))
    text = str(detail) if detail else response.text[:200] or response.reason_phrase
    return f"{text} (gateway answered {response.status_code})"


def _pending(payment_id: str, payment: dict[str, Any]) -> dict[str, Any]:
    """A settlement not known yet, as the fleet's facilitator says it (``settlement_pending``)."""
    accepted = payment.get("accepted") or {}
    authorization = (payment.get("payload") or {}).get("authorization") or {}
    pending = settlement_of(
        None, payment_id, str(authorization.get("from", "")), str(accepted.get("network", ""))
    )
    return pending.model_dump(by_alias=True, exclude_none=True)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
