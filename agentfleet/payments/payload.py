"""Reading a buyer's x402 payment: the ``PAYMENT-SIGNATURE`` header (or v1 ``X-PAYMENT``),
base64 JSON of a ``PaymentPayload``, decoded to a :class:`~agentfleet.payments.model.Payment`;
and the ``paymentRequirements`` a facilitator client sends with one.

Decoding checks only the form (version, scheme, addresses, hex, the payment-identifier);
whether the payment answers the seller's terms is :mod:`agentfleet.payments.verification`'s.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from eth_utils.address import to_checksum_address
from pydantic import ValidationError
from x402.extensions.payment_identifier import is_valid_payment_id
from x402.schemas import PaymentPayload  # the SDK's wire types
from x402.schemas.v1 import PaymentPayloadV1

from agentfleet.errors import first_line
from agentfleet.payments.model import Authorization, MalformedPayment, Payment, PaymentError, Reason
from agentfleet.payments.terms import EIP712_NAME, EIP712_VERSION, SCHEME, SIGN_MAX_TIMEOUT_S, Terms

MAX_HEADER = 16_384
"""Characters of a payment header (a real one is about 1,200)."""


def decode_payment(raw: dict[str, Any]) -> Payment:
    """A ``PaymentPayload`` (v2, or v1 with ``scheme``/``network`` at the top) -> Payment, or
    PaymentError(invalid_payload / invalid_x402_version / unsupported_scheme)."""
    version = raw.get("x402Version")
    if version not in (1, 2):
        raise PaymentError(Reason.INVALID_VERSION, f"x402Version {version!r} is not 1 or 2")
    try:
        if version == 2:
            v2 = PaymentPayload.model_validate(raw)
            accepted: dict[str, Any] = v2.accepted.model_dump(by_alias=True)
            inner, extensions = v2.payload, v2.extensions or {}
        else:
            v1 = PaymentPayloadV1.model_validate(raw)
            accepted = {"scheme": v1.scheme, "network": v1.network}
            inner, extensions = v1.payload, {}
        if accepted.get("scheme") != SCHEME:
            raise PaymentError(
                Reason.UNSUPPORTED_SCHEME, f"scheme {accepted.get('scheme')!r} is not 'exact'"
            )
        auth = inner["authorization"]
        authorization = Authorization(
            from_=to_checksum_address(auth["from"]),
            to=to_checksum_address(auth["to"]),
            value=int(auth["value"]),
            valid_after=int(auth["validAfter"]),
            valid_before=int(auth["validBefore"]),
            nonce=_hex32(auth["nonce"]),
            signature=_hexbytes(inner["signature"]),
        )
        extra = accepted.get("extra") or {}
        terms = Terms(
            network=str(accepted["network"]),
            asset=to_checksum_address(accepted.get("asset") or authorization.to),
            amount=int(accepted.get("amount", authorization.value)),
            pay_to=to_checksum_address(accepted.get("payTo") or authorization.to),
            max_timeout_seconds=int(accepted.get("maxTimeoutSeconds") or SIGN_MAX_TIMEOUT_S),
            name=str(extra.get("name", EIP712_NAME)),
            version=str(extra.get("version", EIP712_VERSION)),
        )
    except PaymentError:
        raise
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        raise PaymentError(
            Reason.INVALID_PAYLOAD, f"not an exact EVM payment: {_why(exc)}"
        ) from None
    identifier = None
    declared = extensions.get("payment-identifier")
    if isinstance(declared, dict):
        info = declared.get("info")
        if isinstance(info, dict) and "id" in info:
            identifier = info["id"]
            if not isinstance(identifier, str) or not is_valid_payment_id(identifier):
                raise PaymentError(
                    Reason.INVALID_IDENTIFIER,
                    "the payment-identifier must be 16 to 128 letters, digits, '_' or '-'",
                )
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()
    return Payment(
        x402_version=int(version),
        accepted=terms,
        authorization=authorization,
        payment_identifier=identifier,
        sha256=hashlib.sha256(canonical).hexdigest(),
    )


def decode_header(value: str) -> Payment:
    """The ``PAYMENT-SIGNATURE`` (or v1 ``X-PAYMENT``) header -> Payment, or PaymentError."""
    try:
        raw = json.loads(base64.b64decode(value.strip(), validate=False))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise PaymentError(
            Reason.INVALID_PAYLOAD, "the payment header is not base64 JSON"
        ) from None
    if not isinstance(raw, dict):
        raise PaymentError(Reason.INVALID_PAYLOAD, "the payment header is not a JSON object")
    return decode_payment(raw)


def read_header(value: str) -> Payment:
    """A payment header as a seller reads it: :func:`decode_header`, with what cannot be read
    at all (too long, a malformed payment-identifier) as MalformedPayment; PaymentError for
    the rest."""
    if len(value) > MAX_HEADER:
        raise MalformedPayment(f"the payment header is over {MAX_HEADER} characters")
    try:
        return decode_header(value)
    except PaymentError as refused:
        raise _malformed_identifier(refused) from None


def read_payload(raw: dict[str, Any]) -> Payment:
    """A facilitator body's ``paymentPayload``: :func:`decode_payment`, with a malformed
    payment-identifier as MalformedPayment."""
    try:
        return decode_payment(raw)
    except PaymentError as refused:
        raise _malformed_identifier(refused) from None


def _malformed_identifier(refused: PaymentError) -> Exception:
    """A malformed payment-identifier is a malformed payment (400), not a refused one (402)."""
    if refused.reason is Reason.INVALID_IDENTIFIER:
        return MalformedPayment(refused.detail)
    return refused


def read_requirements(requirements: dict[str, Any]) -> Terms:
    """The ``paymentRequirements`` a facilitator client sends (v2 ``amount`` or v1
    ``maxAmountRequired``) as terms; MalformedPayment when they do not parse."""
    try:
        extra = requirements.get("extra") or {}
        return Terms(
            scheme=str(requirements.get("scheme", SCHEME)),
            network=str(requirements["network"]),
            asset=str(requirements["asset"]),
            amount=int(requirements.get("amount") or requirements["maxAmountRequired"]),
            pay_to=str(requirements["payTo"]),
            max_timeout_seconds=int(requirements.get("maxTimeoutSeconds") or SIGN_MAX_TIMEOUT_S),
            name=str(extra.get("name", EIP712_NAME)),
            version=str(extra.get("version", EIP712_VERSION)),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MalformedPayment(f"payment requirements: {first_line(exc)}") from None


def adopt_v1(payment: Payment, terms: Terms) -> Payment:
    """A v1 payload names only scheme and network: the rest of what it accepted is the seller's
    terms (its authorization is still checked against them)."""
    if payment.x402_version != 1:
        return payment
    accepted = terms.model_copy(update={"network": payment.accepted.network})
    return payment.model_copy(update={"accepted": accepted})


def _hex32(value: Any) -> str:
    text = _hexbytes(value)
    if len(text) != 66:
        raise ValueError("the nonce must be 32 bytes of hex")
    return text


def _hexbytes(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError(f"{value!r} is not 0x-prefixed hex")
    bytes.fromhex(value[2:])
    return value.lower()


def _why(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"missing {exc.args[0]!r}"
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
