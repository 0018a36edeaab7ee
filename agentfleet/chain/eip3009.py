"""EIP-3009 authorizations (USDC v2 style) signed and checked off-chain with eth-account.

The typed data here is what ``contracts/src/FleetUSD.sol`` (and USDC) verify on-chain: domain
``{name, version, chainId, verifyingContract}`` and the ``TransferWithAuthorization``,
``ReceiveWithAuthorization`` and ``CancelAuthorization`` structs. A signature made here for a token
settles there, and x402 clients that read ``name``/``version`` from ``extra`` sign the same bytes.
"""

from __future__ import annotations

import secrets
from enum import StrEnum
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.address import to_checksum_address
from pydantic import BaseModel, ConfigDict

__all__ = [
    "AUTHORIZATION_FIELDS",
    "AuthorizationKind",
    "SignedAuthorization",
    "SignedCancellation",
    "domain",
    "random_nonce",
    "recover_authorizer",
    "sign_cancel_authorization",
    "sign_receive_authorization",
    "sign_transfer_authorization",
    "x402_payload",
]

DEFAULT_NAME = "FleetUSD"
DEFAULT_VERSION = "2"

PrivateKey = str | bytes

AUTHORIZATION_FIELDS = [
    {"name": "from", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "validAfter", "type": "uint256"},
    {"name": "validBefore", "type": "uint256"},
    {"name": "nonce", "type": "bytes32"},
]
_CANCEL_FIELDS = [
    {"name": "authorizer", "type": "address"},
    {"name": "nonce", "type": "bytes32"},
]


class AuthorizationKind(StrEnum):
    """The EIP-712 primary type signed; ``RECEIVE`` may only be submitted by the payee."""

    TRANSFER = "TransferWithAuthorization"
    RECEIVE = "ReceiveWithAuthorization"


class SignedAuthorization(BaseModel):
    """A signed transfer/receive authorization, ready to submit to the token.

    ``nonce``, ``r``, ``s`` and ``signature`` are 0x-prefixed hex; ``signature`` is ``r ‖ s ‖ v``
    (65 bytes), the form the ``bytes signature`` overloads and x402 payloads carry.
    """

    model_config = ConfigDict(frozen=True)

    kind: AuthorizationKind = AuthorizationKind.TRANSFER
    from_: str
    to: str
    value: int
    valid_after: int
    valid_before: int
    nonce: str
    v: int
    r: str
    s: str
    signature: str

    def message(self) -> dict[str, Any]:
        """The EIP-712 message (camelCase keys, ``nonce`` as bytes) this signature covers."""
        return _authorization_message(
            self.from_, self.to, self.value, self.valid_after, self.valid_before, self.nonce
        )

    def vrs_args(self) -> tuple[str, str, int, int, int, bytes, int, bytes, bytes]:
        """Arguments of ``transferWithAuthorization``/``receiveWithAuthorization`` (v, r, s)."""
        return (
            self.from_,
            self.to,
            self.value,
            self.valid_after,
            self.valid_before,
            bytes.fromhex(self.nonce[2:]),
            self.v,
            bytes.fromhex(self.r[2:]),
            bytes.fromhex(self.s[2:]),
        )

    def bytes_args(self) -> tuple[str, str, int, int, int, bytes, bytes]:
        """Arguments of the ``bytes signature`` overloads."""
        return (
            self.from_,
            self.to,
            self.value,
            self.valid_after,
            self.valid_before,
            bytes.fromhex(self.nonce[2:]),
            bytes.fromhex(self.signature[2:]),
        )


class SignedCancellation(BaseModel):
    """A signed ``CancelAuthorization``: once submitted, ``nonce`` can never be used."""

    model_config = ConfigDict(frozen=True)

    authorizer: str
    nonce: str
    v: int
    r: str
    s: str
    signature: str

    def message(self) -> dict[str, Any]:
        return {"authorizer": self.authorizer, "nonce": _nonce_bytes(self.nonce)}

    def vrs_args(self) -> tuple[str, bytes, int, bytes, bytes]:
        return (
            self.authorizer,
            bytes.fromhex(self.nonce[2:]),
            self.v,
            bytes.fromhex(self.r[2:]),
            bytes.fromhex(self.s[2:]),
        )

    def bytes_args(self) -> tuple[str, bytes, bytes]:
        return (self.authorizer, bytes.fromhex(self.nonce[2:]), bytes.fromhex(self.signature[2:]))


def domain(
    chain_id: int, token_address: str, name: str = DEFAULT_NAME, version: str = DEFAULT_VERSION
) -> dict[str, Any]:
    """The token's EIP-712 domain (what its ``eip712Domain()`` reports)."""
    return {
        "name": name,
        "version": version,
        "chainId": chain_id,
        "verifyingContract": to_checksum_address(token_address),
    }


def random_nonce() -> bytes:
    """32 random bytes: EIP-3009 nonces are unordered, unique per authorizer."""
    return secrets.token_bytes(32)


def sign_transfer_authorization(
    private_key: PrivateKey,
    *,
    chain_id: int,
    token: str,
    from_: str,
    to: str,
    value: int,
    valid_after: int,
    valid_before: int,
    nonce: bytes,
    name: str = DEFAULT_NAME,
    version: str = DEFAULT_VERSION,
) -> SignedAuthorization:
    """Sign ``TransferWithAuthorization``; anyone may submit it inside the validity window.

    ``from_`` may differ from the key's address when it is an EIP-1271 wallet the key controls.
    The window is strict on both ends: ``valid_after < block.timestamp < valid_before``.
    """
    return _sign_authorization(
        AuthorizationKind.TRANSFER,
        private_key,
        domain(chain_id, token, name, version),
        from_,
        to,
        value,
        valid_after,
        valid_before,
        nonce,
    )


def sign_receive_authorization(
    private_key: PrivateKey,
    *,
    chain_id: int,
    token: str,
    from_: str,
    to: str,
    value: int,
    valid_after: int,
    valid_before: int,
    nonce: bytes,
    name: str = DEFAULT_NAME,
    version: str = DEFAULT_VERSION,
) -> SignedAuthorization:
    """Sign ``ReceiveWithAuthorization``; only ``to`` may submit it (no front-running)."""
    return _sign_authorization(
        AuthorizationKind.RECEIVE,
        private_key,
        domain(chain_id, token, name, version),
        from_,
        to,
        value,
        valid_after,
        valid_before,
        nonce,
    )


def sign_cancel_authorization(
    private_key: PrivateKey,
    *,
    chain_id: int,
    token: str,
    authorizer: str,
    nonce: bytes,
    name: str = DEFAULT_NAME,
    version: str = DEFAULT_VERSION,
) -> SignedCancellation:
    """Sign ``CancelAuthorization`` for an authorization not used yet."""
    raw_nonce = _nonce_bytes(nonce)
    message: dict[str, Any] = {"authorizer": to_checksum_address(authorizer), "nonce": raw_nonce}
    v, r, s, signature = _sign(
        private_key,
        domain(chain_id, token, name, version),
        "CancelAuthorization",
        _CANCEL_FIELDS,
        message,
    )
    return SignedCancellation(
        authorizer=message["authorizer"],
        nonce=_hex(raw_nonce),
        v=v,
        r=r,
        s=s,
        signature=signature,
    )


def recover_authorizer(
    signed: SignedAuthorization | SignedCancellation,
    *,
    chain_id: int,
    token: str,
    name: str = DEFAULT_NAME,
    version: str = DEFAULT_VERSION,
) -> str:
    """The address whose key made ``signed.signature`` for this token's domain.

    For an EOA payer it equals ``from_``/``authorizer`` exactly when the token would accept the
    signature; for an EIP-1271 wallet it is the wallet's signing key, not the wallet.
    """
    if isinstance(signed, SignedCancellation):
        primary_type, fields = "CancelAuthorization", _CANCEL_FIELDS
    else:
        primary_type, fields = signed.kind.value, AUTHORIZATION_FIELDS
    signable = encode_typed_data(
        domain_data=domain(chain_id, token, name, version),
        message_types={primary_type: fields},
        message_data=signed.message(),
    )
    recovered: str = Account.recover_message(
        signable, signature=bytes.fromhex(signed.signature[2:])
    )
    return recovered


def _sign_authorization(
    kind: AuthorizationKind,
    private_key: PrivateKey,
    domain_data: dict[str, Any],
    from_: str,
    to: str,
    value: int,
    valid_after: int,
    valid_before: int,
    nonce: bytes,
) -> SignedAuthorization:
    message = _authorization_message(from_, to, value, valid_after, valid_before, nonce)
    v, r, s, signature = _sign(private_key, domain_data, kind.value, AUTHORIZATION_FIELDS, message)
    return SignedAuthorization(
        kind=kind,
        from_=message["from"],
        to=message["to"],
        value=value,
        valid_after=valid_after,
        valid_before=valid_before,
        nonce=_hex(message["nonce"]),
        v=v,
        r=r,
        s=s,
        signature=signature,
    )


def _authorization_message(
    from_: str, to: str, value: int, valid_after: int, valid_before: int, nonce: bytes | str
) -> dict[str, Any]:
    return {
        "from": to_checksum_address(from_),
        "to": to_checksum_address(to),
        "value": value,
        "validAfter": valid_after,
        "validBefore": valid_before,
        "nonce": _nonce_bytes(nonce),
    }


def _sign(
    private_key: PrivateKey,
    domain_data: dict[str, Any],
    primary_type: str,
    fields: list[dict[str, str]],
    message: dict[str, Any],
) -> tuple[int, str, str, str]:
    signed = Account.sign_typed_data(
        private_key,
        domain_data=domain_data,
        message_types={primary_type: fields},
        message_data=message,
    )
    r = signed.r.to_bytes(32, "big")
    s = signed.s.to_bytes(32, "big")
    return signed.v, _hex(r), _hex(s), _hex(r + s + bytes([signed.v]))


def _nonce_bytes(nonce: bytes | str) -> bytes:
    raw = bytes.fromhex(nonce.removeprefix("0x")) if isinstance(nonce, str) else bytes(nonce)
    if len(raw) != 32:
        raise ValueError(f"an EIP-3009 nonce is 32 bytes, got {len(raw)}")
    return raw


def _hex(raw: bytes) -> str:
    return "0x" + raw.hex()


def x402_payload(signed: SignedAuthorization, accepted: dict[str, Any]) -> dict[str, Any]:
    """The x402 v2 ``PaymentPayload`` of the exact EVM scheme carrying ``signed`` for the
    requirements ``accepted`` (wire form: camelCase, numbers as decimal strings)."""
    return {
        "x402Version": 2,
        "accepted": accepted,
        "payload": {
            "authorization": {
                "from": signed.from_,
                "to": signed.to,
                "value": str(signed.value),
                "validAfter": str(signed.valid_after),
                "validBefore": str(signed.valid_before),
                "nonce": signed.nonce,
            },
            "signature": signed.signature,
        },
    }
