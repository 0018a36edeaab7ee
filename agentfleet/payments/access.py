"""Who may read a paid result: the payer only.

A payment's id is public (chain, asset, payer and nonce are in the token's ``AuthorizationUsed``
event), and once settled so is its whole authorization (the settlement's calldata). So neither
knowing the id nor sending the same payment again proves anything. The gateway releases a
skill's data to:

* a request that sent the payment before its settlement was broadcast (only the payer had the
  payload then);
* a request carrying the payment's result token (``Authorization: Bearer <token>``), which the
  gateway hands out with the result or with a 202's ``status_url``;
* a request signed by the payer's key: ``PAYMENT-PAYER-PROOF``, an EIP-712 signature over the
  payment id, this gateway's origin and a recent time (:mod:`agentfleet.payments.payer_proof`). (The
  x402 ``sign-in-with-x`` extension would do the same job, but its EVM half needs the
  ``signinwithethereum`` package, which requires web3 7 and eth-account 0.13.)

Everyone else sees the payment's status without the result.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from agentfleet.chain.networks import active_profile, expected_chain_id
from agentfleet.payments import payer_proof
from agentfleet.secretfile import read_or_create
from agentfleet.settings import Settings

BEARER = "bearer "
MAX_PROOF = 2048
"""Characters of a ``PAYMENT-PAYER-PROOF`` header beyond which it is not read."""


@dataclass(frozen=True)
class Reader:
    """What a request shows to read a paid result: its ``Authorization`` and
    ``PAYMENT-PAYER-PROOF`` headers (None: absent)."""

    authorization: str | None = None
    payer_proof: str | None = None


class ResultAccess:
    """Result tokens (HMAC of the payment id under the gateway secret) and payer proofs."""

    def __init__(self, settings: Settings) -> None:
        if settings.gateway_secret is not None:
            secret = settings.gateway_secret.get_secret_value()
        else:
            secret = read_or_create(settings.home / "gateway.secret")
        self._key = hashlib.sha256(b"agentfleet payment result tokens\0" + secret.encode()).digest()
        self.origin = settings.effective_public_url
        self.chain_id = expected_chain_id(settings, active_profile(settings))

    def token(self, payment_id: str) -> str:
        """The result token of ``payment_id`` (the same on every gateway with this secret)."""
        digest = hmac.new(self._key, payment_id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def has_token(self, reader: Reader, payment_id: str) -> bool:
        header = reader.authorization or ""
        if not header.lower().startswith(BEARER):
            return False
        given = header[len(BEARER) :].strip().encode()
        return hmac.compare_digest(given, self.token(payment_id).encode())

    def proves_payer(self, reader: Reader, payment_id: str, payer: str) -> bool:
        """The reader shows a fresh ``PAYMENT-PAYER-PROOF`` by ``payer`` for this origin."""
        header = reader.payer_proof
        if not header or len(header) > MAX_PROOF:
            return False
        signer = payer_proof.signer(header, self.chain_id, payment_id, self.origin)
        return signer is not None and signer.lower() == payer.lower()

    def may_read(self, reader: Reader, payment_id: str, payer: str) -> bool:
        return self.has_token(reader, payment_id) or self.proves_payer(reader, payment_id, payer)
