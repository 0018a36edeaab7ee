"""A payer proves it is the payer: an EIP-712 signature over a payment id, this gateway's origin
and a recent time, sent as the ``PAYMENT-PAYER-PROOF`` header (base64 JSON).

The gateway gives a settled payment's result to whoever proves to be its payer (besides the
holder of the payment's result token). The proof names the origin, so it is worth nothing at
another gateway, and expires after :data:`MAX_AGE_S`. EOA payers only (a contract wallet reads
its result with the token).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data

HEADER = "PAYMENT-PAYER-PROOF"
MAX_AGE_S = 300
DOMAIN_NAME = "agentfleet payment result"
DOMAIN_VERSION = "1"
FIELDS = [
    {"name": "paymentId", "type": "string"},
    {"name": "origin", "type": "string"},
    {"name": "issuedAt", "type": "uint256"},
]


def _typed(chain_id: int, payment_id: str, origin: str, issued_at: int) -> Any:
    return encode_typed_data(
        domain_data={"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": chain_id},
        message_types={"PaymentResultAccess": FIELDS},
        message_data={"paymentId": payment_id, "origin": origin, "issuedAt": issued_at},
    )


def sign(
    private_key: Any, chain_id: int, payment_id: str, origin: str, now: float | None = None
) -> str:
    """The header value proving the key's address is the payer of ``payment_id``."""
    issued_at = int(time.time() if now is None else now)
    signed = Account.sign_message(_typed(chain_id, payment_id, origin, issued_at), private_key)
    proof = {
        "paymentId": payment_id,
        "origin": origin,
        "issuedAt": issued_at,
        "signature": "0x" + bytes(signed.signature).hex(),
    }
    return base64.b64encode(json.dumps(proof, separators=(",", ":")).encode()).decode()


def signer(
    header: str, chain_id: int, payment_id: str, origin: str, now: float | None = None
) -> str | None:
    """The address that signed a valid, fresh proof for ``payment_id`` at ``origin``, or None."""
    try:
        proof = json.loads(base64.b64decode(header.strip(), validate=True))
        issued_at = int(proof["issuedAt"])
        signature = bytes.fromhex(str(proof["signature"]).removeprefix("0x"))
        named = (str(proof["paymentId"]), str(proof["origin"]))
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        return None
    clock = time.time() if now is None else now
    if named != (payment_id, origin) or not clock - MAX_AGE_S <= issued_at <= clock + 30:
        return None
    try:
        recovered: str = Account.recover_message(
            _typed(chain_id, payment_id, origin, issued_at), signature=signature
        )
    except Exception:  # malformed signature bytes
        return None
    return recovered
