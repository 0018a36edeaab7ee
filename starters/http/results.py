"""Who may read a paid result: the payer only.

A payment's id is public (chain, asset, payer and nonce are in the token's ``AuthorizationUsed``
event), and once settled so is its whole authorization (the settlement's calldata). So neither
knowing the id nor sending the same payment again proves anything. The gateway releases a
skill's data to:

* a request that sent the payment before its settlement was broadcast (only the payer had the
  payload then);
* a request carrying the payment's result token (``Authorization: Bearer <token>``), which the
  gateway hands out with the result or with a 202's ``status_url``;
* a request signed by the payer's key: the x402 ``sign-in-with-x`` extension (a SIWE message
  for this gateway's origin, in the ``SIGN-IN-WITH-X`` header), checked with the x402 SDK.

Everyone else sees the payment's status without the result.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from fastapi import Request
from x402.extensions.sign_in_with_x import (
    SIGN_IN_WITH_X,
    parse_siwx_header,
    validate_siwx_message,
    verify_siwx_signature,
)

from agentfleet.secretfile import read_or_create
from agentfleet.settings import Settings

BEARER = "bearer "


class ResultAccess:
    """Result tokens (HMAC of the payment id under the gateway secret) and payer proofs."""

    def __init__(self, settings: Settings) -> None:
        if settings.gateway_secret is not None:
            secret = settings.gateway_secret.get_secret_value()
        else:
            secret = read_or_create(settings.home / "gateway.secret")
        self._key = hashlib.sha256(b"agentfleet payment result tokens\0" + secret.encode()).digest()
        self.origin = settings.effective_public_url

    def token(self, payment_id: str) -> str:
        """The result token of ``payment_id`` (the same on every gateway with this secret)."""
        digest = hmac.new(self._key, payment_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def has_token(self, request: Request, payment_id: str) -> bool:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith(BEARER):
            return False
        given = header[len(BEARER) :].strip().encode()
        return hmac.compare_digest(given, self.token(payment_id).encode())

    async def proves_payer(self, request: Request, payer: str) -> bool:
        """The request carries a valid sign-in-with-x proof by ``payer`` for this origin."""
        header = request.headers.get(SIGN_IN_WITH_X)
        if not header or len(header) > 8192:
            return False
        try:
            proof = parse_siwx_header(header.strip())
        except ValueError:
            return False
        if not (await validate_siwx_message(proof, self.origin)).is_valid:
            return False
        verified = await verify_siwx_signature(proof)
        return bool(verified.is_valid and (verified.payer or "").lower() == payer.lower())

    async def may_read(self, request: Request, payment_id: str, payer: str) -> bool:
        return self.has_token(request, payment_id) or await self.proves_payer(request, payer)
