"""x402 payments in FleetUSD: terms, the EIP-3009 authorization a buyer signs, and its checks.

A payment is identified by what makes its authorization unique on chain:
``payment-{chainId}-{asset}-{from}-{nonce}`` (lower-case). The saga (``PaymentSagaWorkflow``)
has that id, so 100 identical submissions reach one workflow, and an authorization can settle at
most once whatever happens.

Checks come in two halves with x402's reason codes (the v2 specification's where it has one, the
official SDK's exact-EVM codes otherwise):

* :func:`check_offline` - no I/O: scheme, network, asset, payTo, amount, validity window (with a
  few seconds of grace for the settlement to land), signature (EOA). The gateway runs it before
  anything starts, so a malformed or mismatched payment changes nothing.
* :func:`check_on_chain` - the token's view: nonce unused and not cancelled, balance, and a
  simulation of ``transferWithAuthorization`` from the relayer that will submit it. The saga
  runs it again right before settling (the chain may have changed since).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_typing import HexStr
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import is_address, to_checksum_address
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from web3 import AsyncWeb3
from web3.exceptions import ContractLogicError
from x402.extensions.payment_identifier import is_valid_payment_id

from agentfleet.bots.model import BotKind, Skill, SkillCall, SkillResult
from agentfleet.chain.eip3009 import AUTHORIZATION_FIELDS
from agentfleet.messages import GasPolicy

SCHEME = "exact"
X402_VERSION = 2
FUSD_DECIMALS = 6
EIP712_NAME = "FleetUSD"
EIP712_VERSION = "2"
VALID_BEFORE_GRACE_S = 6
"""An authorization must stay valid at least this long (the SDK's facilitator asks the same),
or it could expire between the check and the block that settles it."""
A2A_X402_EXTENSION = "https://github.com/google-agentic-commerce/a2a-x402/blob/main/spec/v0.2"
"""The agent-card extension under which a bot lists its priced skills (a2a-x402 v0.2)."""
A2A_X402_EXTENSIONS = (
    A2A_X402_EXTENSION,
    "https://github.com/google-agentic-commerce/a2a-x402/blob/main/spec/v0.1",
    "https://google-a2a.github.io/A2A/extensions/payments/x402/v0.1",
)
"""Every URI the a2a-x402 extension has been declared under (v0.2, then v0.1's two): a card or a
request naming any of them means the same extension."""
SIGN_MAX_TIMEOUT_S = 300
"""``maxTimeoutSeconds`` assumed when a payload does not say."""
MAX_TIMEOUT_S = 3600
"""The longest ``maxTimeoutSeconds`` this fleet offers or settles for: an authorization valid
for longer is a standing order to pay, not a payment."""
WINDOW_SLACK_S = 60
"""How much further than ``maxTimeoutSeconds`` from now an authorization's ``validBefore`` may
lie (clocks differ; a buyer signs a moment before it sends)."""

DEFAULT_PRICES: dict[Skill, Decimal] = {
    Skill.FORECAST: Decimal("0.01"),
    Skill.PERFORMANCE: Decimal("0.005"),
    Skill.SHARE_PATTERN: Decimal("0.005"),
    Skill.STATUS: Decimal("0"),
}
"""fUSD per call of each skill a bot sells over HTTP (a bot's ``prices`` parameter overrides);
0 means free: answered without payment."""
SELLABLE: dict[BotKind, tuple[Skill, ...]] = {
    BotKind.FORECASTER: (Skill.FORECAST, Skill.STATUS, Skill.PERFORMANCE, Skill.SHARE_PATTERN),
    BotKind.PUBLISHER: (Skill.STATUS, Skill.PERFORMANCE),
    BotKind.REMOTE: (),
}
"""The skills each built-in kind answers over HTTP (the ones that only read); a remote bot
sells its own."""


class Reason(StrEnum):
    """Why a payment is refused (x402 ``invalidReason`` / ``errorReason``)."""

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


class Terms(BaseModel):
    """What a seller asks for one call (x402 ``PaymentRequirements`` of the exact EVM scheme)."""

    model_config = ConfigDict(frozen=True)

    scheme: str = SCHEME
    network: str
    asset: str
    amount: int = Field(ge=0)
    pay_to: str
    max_timeout_seconds: int = Field(default=SIGN_MAX_TIMEOUT_S, gt=0, le=MAX_TIMEOUT_S)
    name: str = EIP712_NAME
    version: str = EIP712_VERSION

    @property
    def chain_id(self) -> int:
        return int(self.network.removeprefix("eip155:"))

    def requirements(self) -> dict[str, Any]:
        """The x402 wire form (camelCase; amounts as decimal strings)."""
        return {
            "scheme": self.scheme,
            "network": self.network,
            "asset": self.asset,
            "amount": str(self.amount),
            "payTo": self.pay_to,
            "maxTimeoutSeconds": self.max_timeout_seconds,
            "extra": {"name": self.name, "version": self.version},
        }


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


def to_units(amount: Decimal | str | int) -> int:
    """fUSD (``"0.01"``) to token units (10000); ValueError for more than 6 decimals."""
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        raise ValueError(f"not an amount: {amount!r}") from None
    units = value * 10**FUSD_DECIMALS
    if value < 0 or units != units.to_integral_value():
        raise ValueError(f"{amount} fUSD is not a non-negative amount with at most 6 decimals")
    return int(units)


def price_of(kind: BotKind, params: dict[str, Any], skill: Skill) -> int | None:
    """Token units a call of ``skill`` costs at a bot (None: the bot does not sell it)."""
    if skill not in SELLABLE[kind]:
        return None
    prices = params.get("prices") or {}
    return to_units(prices.get(skill.value, DEFAULT_PRICES[skill]))


def decode_payment(raw: dict[str, Any]) -> Payment:
    """A ``PaymentPayload`` (v2, or v1 with ``scheme``/``network`` at the top) -> Payment, or
    PaymentError(invalid_payload / invalid_x402_version / unsupported_scheme)."""
    from x402.schemas import PaymentPayload  # the SDK's wire type
    from x402.schemas.v1 import PaymentPayloadV1

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
    import base64
    import binascii

    try:
        raw = json.loads(base64.b64decode(value.strip(), validate=False))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise PaymentError(
            Reason.INVALID_PAYLOAD, "the payment header is not base64 JSON"
        ) from None
    if not isinstance(raw, dict):
        raise PaymentError(Reason.INVALID_PAYLOAD, "the payment header is not a JSON object")
    return decode_payment(raw)


def adopt_v1(payment: Payment, terms: Terms) -> Payment:
    """A v1 payload names only scheme and network: the rest of what it accepted is the seller's
    terms (its authorization is still checked against them)."""
    if payment.x402_version != 1:
        return payment
    accepted = terms.model_copy(update={"network": payment.accepted.network})
    return payment.model_copy(update={"accepted": accepted})


def check_offline(payment: Payment, terms: Terms, now: float | None = None) -> str:
    """Check ``payment`` against what the seller asked, without I/O; returns the payer or
    raises PaymentError. An EOA signature must recover to the payer; a payer whose recovered
    key differs may be a contract wallet (EIP-1271): the caller then asks the chain."""
    accepted, auth = payment.accepted, payment.authorization
    if accepted.network != terms.network:
        raise PaymentError(
            Reason.INVALID_NETWORK, f"network {accepted.network} is not {terms.network}"
        )
    if accepted.asset.lower() != terms.asset.lower():
        raise PaymentError(
            Reason.INVALID_REQUIREMENTS, f"asset {accepted.asset} is not {terms.asset}"
        )
    if auth.to.lower() != terms.pay_to.lower() or accepted.pay_to.lower() != terms.pay_to.lower():
        raise PaymentError(
            Reason.RECIPIENT_MISMATCH, f"the authorization pays {auth.to}, not {terms.pay_to}"
        )
    if auth.value != terms.amount or accepted.amount != terms.amount:
        raise PaymentError(
            Reason.VALUE_MISMATCH, f"the authorization is for {auth.value}, not {terms.amount}"
        )
    clock = time.time() if now is None else now
    if auth.valid_after > clock:
        raise PaymentError(
            Reason.VALID_AFTER, f"the authorization is valid only after {auth.valid_after}"
        )
    if auth.valid_before < clock + VALID_BEFORE_GRACE_S:
        raise PaymentError(
            Reason.VALID_BEFORE,
            f"the authorization expires at {auth.valid_before}, too soon to settle",
        )
    if auth.valid_before > clock + terms.max_timeout_seconds + WINDOW_SLACK_S:
        raise PaymentError(
            Reason.VALID_BEFORE,
            f"the authorization is valid until {auth.valid_before}, longer than the "
            f"{terms.max_timeout_seconds} s this payment may take",
        )
    return auth.from_


def signer_of(payment: Payment) -> str | None:
    """The address whose key signed the authorization (None when it does not parse)."""
    terms, auth = payment.accepted, payment.authorization
    try:
        signable = encode_typed_data(
            domain_data={
                "name": terms.name,
                "version": terms.version,
                "chainId": terms.chain_id,
                "verifyingContract": to_checksum_address(terms.asset),
            },
            message_types={"TransferWithAuthorization": AUTHORIZATION_FIELDS},
            message_data={
                "from": auth.from_,
                "to": auth.to,
                "value": auth.value,
                "validAfter": auth.valid_after,
                "validBefore": auth.valid_before,
                "nonce": bytes.fromhex(auth.nonce[2:]),
            },
        )
        recovered: str = Account.recover_message(
            signable, signature=bytes.fromhex(auth.signature[2:])
        )
    except Exception:  # malformed signature bytes: not a valid EOA signature
        return None
    return recovered


SETTLE_SIGNATURE = (
    "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)"
)
SETTLE_TYPES = ("address", "address", "uint256", "uint256", "uint256", "bytes32", "bytes")
_SETTLE = function_signature_to_4byte_selector(SETTLE_SIGNATURE)
_AUTHORIZATION_STATE = function_signature_to_4byte_selector("authorizationState(address,bytes32)")
_BALANCE_OF = function_signature_to_4byte_selector("balanceOf(address)")
"""The three token calls a payment needs, encoded with eth-abi directly: building a web3
contract object from the ABI takes ~7 ms of CPU each time, more than the calls themselves."""


def settle_calldata(auth: Authorization) -> str:
    """``transferWithAuthorization(from, to, value, validAfter, validBefore, nonce, bytes)``."""
    return "0x" + (_SETTLE + abi_encode(SETTLE_TYPES, _settle_args(auth))).hex()


async def check_signer(w3: AsyncWeb3[Any], payment: Payment) -> None:
    """An EOA payer must have signed; a payer with code (an EIP-1271 wallet) is left to the
    token, whose simulation asks the wallet (:func:`check_on_chain`)."""
    auth = payment.authorization
    if (signer_of(payment) or "").lower() == auth.from_.lower():
        return
    if len(await w3.eth.get_code(to_checksum_address(auth.from_))) > 0:
        return
    raise PaymentError(Reason.BAD_SIGNATURE, f"the signature is not {auth.from_}'s")


class OnChain(BaseModel):
    """The token's view of an authorization that passed :func:`check_on_chain`."""

    gas: int
    """What the settlement takes (estimated from the relayer that will submit it)."""
    balance: int
    """The payer's balance at ``block``."""
    block: int


async def check_on_chain(w3: AsyncWeb3[Any], payment: Payment, submitter: str) -> OnChain:
    """The token's view of the authorization at the latest block: unused nonce, balance, and
    the settlement estimated (so simulated) from ``submitter`` (the relayer), all at that one
    block. PaymentError on any refusal (the clearest reason first)."""
    auth = payment.authorization
    token = to_checksum_address(payment.accepted.asset)
    payer = to_checksum_address(auth.from_)
    nonce = bytes.fromhex(auth.nonce[2:])
    state = _AUTHORIZATION_STATE + abi_encode(("address", "bytes32"), (payer, nonce))
    holding = _BALANCE_OF + abi_encode(("address",), (payer,))
    block = int(await w3.eth.block_number)
    answers: tuple[Any, ...] = await asyncio.gather(
        w3.eth.call({"to": token, "data": HexStr("0x" + state.hex())}, block),
        w3.eth.call({"to": token, "data": HexStr("0x" + holding.hex())}, block),
        w3.eth.estimate_gas(
            {
                "from": to_checksum_address(submitter),
                "to": token,
                "data": HexStr(settle_calldata(auth)),
            },
            block,
        ),
        return_exceptions=True,
    )
    used_raw, balance_raw, estimate = answers
    for answer in (used_raw, balance_raw):
        if isinstance(answer, BaseException):
            raise answer
    (used,) = abi_decode(("bool",), used_raw)
    (balance,) = abi_decode(("uint256",), balance_raw)
    if used:
        raise PaymentError(
            Reason.NONCE_USED, f"nonce {auth.nonce[:10]}… of {auth.from_} is used or cancelled"
        )
    if int(balance) < auth.value:
        raise PaymentError(
            Reason.INSUFFICIENT_FUNDS, f"{auth.from_} holds {balance} units, {auth.value} needed"
        )
    if isinstance(estimate, ContractLogicError):
        await check_signer(w3, payment)  # an EOA signature that is not the payer's says so
        message = str(estimate.message or estimate)
        raise PaymentError(_reason_of_revert(message), f"simulation reverted: {message}")
    if isinstance(estimate, BaseException):
        raise estimate
    return OnChain(gas=int(estimate), balance=int(balance), block=block)


def _reason_of_revert(message: str) -> Reason:
    lowered = message.lower()
    if "invalid signature" in lowered:
        return Reason.BAD_SIGNATURE
    if "used or canceled" in lowered:
        return Reason.NONCE_USED
    if "not yet valid" in lowered:
        return Reason.VALID_AFTER
    if "expired" in lowered:
        return Reason.VALID_BEFORE
    if "insufficientbalance" in lowered or "exceeds balance" in lowered:
        return Reason.INSUFFICIENT_FUNDS
    return Reason.SIMULATION_FAILED


def _settle_args(auth: Authorization) -> tuple[str, str, int, int, int, bytes, bytes]:
    return (
        to_checksum_address(auth.from_),
        to_checksum_address(auth.to),
        auth.value,
        auth.valid_after,
        auth.valid_before,
        bytes.fromhex(auth.nonce[2:]),
        bytes.fromhex(auth.signature[2:]),
    )


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


def is_evm_address(value: str) -> bool:
    return is_address(value)


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
