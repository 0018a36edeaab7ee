"""Whether a payment may settle: its checks, with x402's reason codes.

They come in two halves:

* :func:`check_offline` - no I/O: scheme, network, asset, payTo, amount, validity window (with a
  few seconds of grace for the settlement to land), signature (EOA). The gateway runs it before
  anything starts, so a malformed or mismatched payment changes nothing.
* :func:`check_on_chain` - the token's view: nonce unused and not cancelled, balance, and a
  simulation of ``transferWithAuthorization`` from the relayer that will submit it. The saga
  runs it again right before settling (the chain may have changed since).

Each raises :class:`~agentfleet.payments.model.PaymentError` for a refusal.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_typing import HexStr
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address
from pydantic import BaseModel
from web3 import AsyncWeb3
from web3.exceptions import ContractLogicError

from agentfleet.chain.eip3009 import AUTHORIZATION_FIELDS
from agentfleet.payments.model import Authorization, Payment, PaymentError, Reason
from agentfleet.payments.terms import Terms

VALID_BEFORE_GRACE_S = 6
"""An authorization must stay valid at least this long (the SDK's facilitator asks the same),
or it could expire between the check and the block that settles it."""
WINDOW_SLACK_S = 60
"""How much further than ``maxTimeoutSeconds`` from now an authorization's ``validBefore`` may
lie (clocks differ; a buyer signs a moment before it sends)."""
SETTLE_SIGNATURE = (
    "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)"
)
SETTLE_TYPES = ("address", "address", "uint256", "uint256", "uint256", "bytes32", "bytes")
_SETTLE = function_signature_to_4byte_selector(SETTLE_SIGNATURE)
_AUTHORIZATION_STATE = function_signature_to_4byte_selector("authorizationState(address,bytes32)")
_BALANCE_OF = function_signature_to_4byte_selector("balanceOf(address)")
"""The three token calls a payment needs, encoded with eth-abi directly: building a web3
contract object from the ABI takes ~7 ms of CPU each time, more than the calls themselves."""


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


def check_network(terms: Terms, network: str) -> None:
    """Requirements a facilitator is asked to settle must name its chain..."""
    if terms.network != network:
        raise PaymentError(Reason.INVALID_NETWORK, f"this facilitator settles on {network}")


def check_asset(terms: Terms, asset: str) -> None:
    """...and its token."""
    if terms.asset.lower() != asset.lower():
        raise PaymentError(Reason.INVALID_REQUIREMENTS, f"asset {terms.asset} is not fUSD")


def check_unpromised(payment: Payment, balance: int, held: int) -> None:
    """The payer's balance less what its payments in flight hold must cover this payment."""
    auth = payment.authorization
    if balance - held < auth.value:
        raise PaymentError(
            Reason.INSUFFICIENT_FUNDS,
            f"{auth.from_} holds {balance} units and {held} of them are promised to "
            "payments in flight",
        )


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
