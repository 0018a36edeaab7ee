"""FleetUSD on a real anvil: EIP-3009, EIP-2612 and EIP-1271 as USDC v2.2 behaves for x402 payers.

The module has an anvil of its own (its tests move the chain's clock forward, which would expire
other tests' authorizations); every test deploys its own token and uses fresh random accounts;
the clock is only moved forward and always read from the chain, never from wall time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data
from eth_account.signers.local import LocalAccount
from web3 import HTTPProvider, Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractCustomError, ContractLogicError
from web3.logs import DISCARD
from web3.types import TxReceipt

from agentfleet.chain import artifacts, eip3009
from agentfleet.chain.eip3009 import AuthorizationKind, SignedAuthorization
from starters.stack.devchain import private_anvil

FUSD = 10**6
GAS = 500_000
DEPLOY_GAS = 5_000_000

_AUTHORIZATION_ARGS = "address,address,uint256,uint256,uint256,bytes32"
TWA_VRS = f"transferWithAuthorization({_AUTHORIZATION_ARGS},uint8,bytes32,bytes32)"
TWA_BYTES = f"transferWithAuthorization({_AUTHORIZATION_ARGS},bytes)"
RWA_VRS = f"receiveWithAuthorization({_AUTHORIZATION_ARGS},uint8,bytes32,bytes32)"
RWA_BYTES = f"receiveWithAuthorization({_AUTHORIZATION_ARGS},bytes)"
CANCEL_VRS = "cancelAuthorization(address,bytes32,uint8,bytes32,bytes32)"
CANCEL_BYTES = "cancelAuthorization(address,bytes32,bytes)"
PERMIT_VRS = "permit(address,address,uint256,uint256,uint8,bytes32,bytes32)"
PERMIT_BYTES = "permit(address,address,uint256,uint256,bytes)"

NOT_YET_VALID = "FiatTokenV2: authorization is not yet valid"
EXPIRED = "FiatTokenV2: authorization is expired"
USED = "FiatTokenV2: authorization is used or canceled"
INVALID_SIGNATURE = "FiatTokenV2: invalid signature"
NOT_PAYEE = "FiatTokenV2: caller must be the payee"
PERMIT_EXPIRED = "FiatTokenV2: permit is expired"
PERMIT_INVALID = "EIP2612: invalid signature"

AUTHORIZATION_FIELDS = [
    {"name": "from", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "validAfter", "type": "uint256"},
    {"name": "validBefore", "type": "uint256"},
    {"name": "nonce", "type": "bytes32"},
]
PERMIT_FIELDS = [
    {"name": "owner", "type": "address"},
    {"name": "spender", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "nonce", "type": "uint256"},
    {"name": "deadline", "type": "uint256"},
]
DOMAIN_FIELDS = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]


@dataclass
class Chain:
    w3: Web3
    chain_id: int

    def account(self) -> LocalAccount:
        """A fresh random account holding 100 ETH and nothing else."""
        account: LocalAccount = Account.create()
        self.w3.provider.make_request("anvil_setBalance", [account.address, hex(100 * 10**18)])
        return account

    def send(
        self, sender: LocalAccount, call: ContractFunction | None = None, **tx: Any
    ) -> TxReceipt:
        """Sign and send with explicit gas (so a revert is mined, not estimated away)."""
        fields: dict[str, Any] = {
            "from": sender.address,
            "nonce": self.w3.eth.get_transaction_count(sender.address),
            "gas": GAS,
            "maxFeePerGas": 50 * 10**9,
            "maxPriorityFeePerGas": 10**9,
            "chainId": self.chain_id,
            **tx,
        }
        if call is not None:
            fields = call.build_transaction(fields)
        raw = sender.sign_transaction(fields).raw_transaction
        return self.w3.eth.wait_for_transaction_receipt(self.w3.eth.send_raw_transaction(raw))

    def deploy(self, name: str, deployer: LocalAccount, *args: Any) -> Contract:
        artifact = artifacts.load(name)
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        deployment = factory.constructor(*args).data_in_transaction
        receipt = self.send(deployer, data=deployment, gas=DEPLOY_GAS)
        assert receipt["status"] == 1
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi)

    def now(self) -> int:
        """Timestamp of the latest block: what an ``eth_call`` on anvil executes at."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def mine_at(self, timestamp: int) -> None:
        assert timestamp > self.now(), "the anvil clock only moves forward"
        self.w3.provider.make_request("evm_setNextBlockTimestamp", [timestamp])
        self.w3.provider.make_request("evm_mine", [])
        assert self.now() == timestamp

    def next_block_at(self, timestamp: int) -> None:
        assert timestamp > self.now(), "the anvil clock only moves forward"
        self.w3.provider.make_request("evm_setNextBlockTimestamp", [timestamp])


@dataclass
class Token:
    chain: Chain
    contract: Contract
    admin: LocalAccount
    payer: LocalAccount
    relayer: LocalAccount

    @property
    def address(self) -> str:
        return str(self.contract.address)

    def fn(self, signature: str, *args: Any) -> ContractFunction:
        return self.contract.get_function_by_signature(signature)(*args)

    def balance(self, who: str) -> int:
        return int(self.contract.functions.balanceOf(who).call())

    def used(self, authorizer: str, nonce: bytes) -> bool:
        return bool(self.contract.functions.authorizationState(authorizer, nonce).call())

    def sign(
        self,
        key: Any,
        *,
        to: str,
        value: int = FUSD,
        from_: str | None = None,
        kind: AuthorizationKind = AuthorizationKind.TRANSFER,
        valid_after: int = 0,
        valid_before: int | None = None,
        nonce: bytes | None = None,
        name: str = "FleetUSD",
        version: str = "2",
        token: str | None = None,
    ) -> SignedAuthorization:
        sign = (
            eip3009.sign_transfer_authorization
            if kind is AuthorizationKind.TRANSFER
            else eip3009.sign_receive_authorization
        )
        return sign(
            key,
            chain_id=self.chain.chain_id,
            token=token or self.address,
            from_=from_ or Account.from_key(key).address,
            to=to,
            value=value,
            valid_after=valid_after,
            valid_before=self.chain.now() + 3600 if valid_before is None else valid_before,
            nonce=nonce or eip3009.random_nonce(),
            name=name,
            version=version,
        )

    def authorization_call(self, signed: SignedAuthorization, via: str) -> ContractFunction:
        if signed.kind is AuthorizationKind.TRANSFER:
            signature = TWA_VRS if via == "vrs" else TWA_BYTES
        else:
            signature = RWA_VRS if via == "vrs" else RWA_BYTES
        args = signed.vrs_args() if via == "vrs" else signed.bytes_args()
        return self.fn(signature, *args)


def assert_reverts(call: ContractFunction, sender: str, reason: str) -> None:
    with pytest.raises(ContractLogicError) as info:
        call.call({"from": sender})
    assert info.value.message == f"execution reverted: {reason}"


def custom_error(signature: str, types: list[str], *args: Any) -> str:
    return Web3.to_hex(Web3.keccak(text=signature)[:4] + abi_encode(types, list(args)))


def events(token: Token, receipt: TxReceipt, name: str) -> list[dict[str, Any]]:
    logs = token.contract.events[name]().process_receipt(receipt, errors=DISCARD)
    return [dict(log["args"]) for log in logs]


@pytest.fixture(scope="module")
def chain() -> Iterator[Chain]:
    """An anvil of this module's own: its tests move the chain's clock forward (expiry,
    deadlines), which would expire other tests' authorizations on the shared anvil."""
    with private_anvil() as url:
        w3 = Web3(HTTPProvider(url))
        yield Chain(w3=w3, chain_id=w3.eth.chain_id)


@pytest.fixture
def token(chain: Chain) -> Token:
    """A fresh FleetUSD whose payer holds 100 fUSD; the relayer holds only ETH."""
    admin = chain.account()
    contract = chain.deploy("FleetUSD", admin, admin.address)
    deployed = Token(chain, contract, admin, chain.account(), chain.account())
    assert chain.send(admin, contract.functions.mint(deployed.payer.address, 100 * FUSD))["status"]
    return deployed


@pytest.fixture
def wallet(chain: Chain, token: Token) -> tuple[Contract, LocalAccount]:
    """An EIP-1271 contract wallet holding 50 fUSD, and the key that signs for it."""
    owner = chain.account()
    contract = chain.deploy("ERC1271WalletMock", token.admin, owner.address)
    assert chain.send(token.admin, token.contract.functions.mint(contract.address, 50 * FUSD))[
        "status"
    ]
    return contract, owner


def test_token_metadata_matches_usdc_shape(token: Token) -> None:
    functions = token.contract.functions
    assert functions.name().call() == "FleetUSD"
    assert functions.symbol().call() == "fUSD"
    assert functions.decimals().call() == 6
    assert functions.version().call() == "2"
    assert functions.totalSupply().call() == 100 * FUSD


def test_eip712_domain_is_fleetusd_version_2_on_this_chain(token: Token) -> None:
    fields, name, version, chain_id, contract, salt, extensions = (
        token.contract.functions.eip712Domain().call()
    )
    assert (fields, name, version) == (b"\x0f", "FleetUSD", "2")
    assert (chain_id, contract) == (token.chain.chain_id, token.address)
    assert (salt, extensions) == (b"\x00" * 32, [])
    by_spec = Web3.keccak(
        abi_encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [
                Web3.keccak(
                    text="EIP712Domain(string name,string version,uint256 chainId,"
                    "address verifyingContract)"
                ),
                Web3.keccak(text="FleetUSD"),
                Web3.keccak(text="2"),
                token.chain.chain_id,
                token.address,
            ],
        )
    )
    message = {"authorizer": token.payer.address, "nonce": b"\x00" * 32}
    by_eth_account = encode_typed_data(
        full_message=_typed(token, "CancelAuthorization", message)
    ).header
    assert token.contract.functions.DOMAIN_SEPARATOR().call() == by_spec == by_eth_account


def test_type_hashes_are_the_eip3009_and_eip2612_struct_hashes(token: Token) -> None:
    functions = token.contract.functions
    authorization = (
        "(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,"
        "bytes32 nonce)"
    )
    expected = {
        functions.TRANSFER_WITH_AUTHORIZATION_TYPEHASH: "TransferWithAuthorization" + authorization,
        functions.RECEIVE_WITH_AUTHORIZATION_TYPEHASH: "ReceiveWithAuthorization" + authorization,
        functions.CANCEL_AUTHORIZATION_TYPEHASH: (
            "CancelAuthorization(address authorizer,bytes32 nonce)"
        ),
        functions.PERMIT_TYPEHASH: (
            "Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"
        ),
    }
    for constant, type_string in expected.items():
        assert constant().call() == Web3.keccak(text=type_string)


def _typed(token: Token, primary: str, message: dict[str, Any]) -> dict[str, Any]:
    fields = {
        "TransferWithAuthorization": AUTHORIZATION_FIELDS,
        "ReceiveWithAuthorization": AUTHORIZATION_FIELDS,
        "CancelAuthorization": [
            {"name": "authorizer", "type": "address"},
            {"name": "nonce", "type": "bytes32"},
        ],
        "Permit": PERMIT_FIELDS,
    }[primary]
    return {
        "types": {"EIP712Domain": DOMAIN_FIELDS, primary: fields},
        "primaryType": primary,
        "domain": {
            "name": "FleetUSD",
            "version": "2",
            "chainId": token.chain.chain_id,
            "verifyingContract": token.address,
        },
        "message": message,
    }


@pytest.mark.parametrize(
    "primary",
    ["TransferWithAuthorization", "ReceiveWithAuthorization", "CancelAuthorization", "Permit"],
)
def test_onchain_digest_equals_eth_account_typed_data_digest(token: Token, primary: str) -> None:
    """The contract accepts a signature exactly when its own digest equals eth-account's."""
    payer, relayer, functions = token.payer, token.relayer, token.contract.functions
    nonce = eip3009.random_nonce()
    deadline = token.chain.now() + 600
    if primary == "CancelAuthorization":
        message: dict[str, Any] = {"authorizer": payer.address, "nonce": nonce}
        typehash = functions.CANCEL_AUTHORIZATION_TYPEHASH().call()
        struct = abi_encode(["bytes32", "address", "bytes32"], [typehash, payer.address, nonce])
    elif primary == "Permit":
        message = {
            "owner": payer.address,
            "spender": relayer.address,
            "value": 7 * FUSD,
            "nonce": 0,
            "deadline": deadline,
        }
        typehash = functions.PERMIT_TYPEHASH().call()
        struct = abi_encode(
            ["bytes32", "address", "address", "uint256", "uint256", "uint256"],
            [typehash, payer.address, relayer.address, 7 * FUSD, 0, deadline],
        )
    else:
        message = {
            "from": payer.address,
            "to": relayer.address,
            "value": 3 * FUSD,
            "validAfter": 0,
            "validBefore": deadline,
            "nonce": nonce,
        }
        constant = "TRANSFER" if primary.startswith("Transfer") else "RECEIVE"
        typehash = functions[f"{constant}_WITH_AUTHORIZATION_TYPEHASH"]().call()
        struct = abi_encode(
            ["bytes32", "address", "address", "uint256", "uint256", "uint256", "bytes32"],
            [typehash, payer.address, relayer.address, 3 * FUSD, 0, deadline, nonce],
        )
    typed = _typed(token, primary, message)
    eth_account_digest = _hash_eip191_message(encode_typed_data(full_message=typed))
    onchain_parts_digest = Web3.keccak(
        b"\x19\x01" + functions.DOMAIN_SEPARATOR().call() + Web3.keccak(struct)
    )
    assert onchain_parts_digest == eth_account_digest

    signed = Account.sign_typed_data(payer.key, full_message=typed)
    vrs = (signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big"))
    if primary == "CancelAuthorization":
        call = token.fn(CANCEL_VRS, payer.address, nonce, *vrs)
    elif primary == "Permit":
        call = token.fn(PERMIT_VRS, payer.address, relayer.address, 7 * FUSD, deadline, *vrs)
    else:
        fn = TWA_VRS if primary.startswith("Transfer") else RWA_VRS
        call = token.fn(fn, payer.address, relayer.address, 3 * FUSD, 0, deadline, nonce, *vrs)
    call.call({"from": relayer.address})  # reverts with "invalid signature" on any mismatch


@pytest.mark.parametrize("via", ["vrs", "bytes"])
def test_transfer_with_authorization_settles_once_for_any_submitter(token: Token, via: str) -> None:
    payee = token.chain.account()
    signed = token.sign(token.payer.key, to=payee.address, value=3 * FUSD)
    nonce = bytes.fromhex(signed.nonce[2:])
    assert not token.used(token.payer.address, nonce)

    receipt = token.chain.send(token.relayer, token.authorization_call(signed, via))

    assert receipt["status"] == 1
    assert token.balance(token.payer.address) == 97 * FUSD
    assert token.balance(payee.address) == 3 * FUSD
    assert token.used(token.payer.address, nonce)
    assert events(token, receipt, "AuthorizationUsed") == [
        {"authorizer": token.payer.address, "nonce": nonce}
    ]
    assert events(token, receipt, "Transfer") == [
        {"from": token.payer.address, "to": payee.address, "value": 3 * FUSD}
    ]
    used_topic = Web3.keccak(text="AuthorizationUsed(address,bytes32)")
    assert receipt["logs"][0]["topics"][0] == used_topic, "USDC logs AuthorizationUsed first"

    for overload in ("vrs", "bytes"):
        assert_reverts(token.authorization_call(signed, overload), token.relayer.address, USED)
    replay = token.chain.send(token.relayer, token.authorization_call(signed, via))
    assert replay["status"] == 0
    assert token.balance(payee.address) == 3 * FUSD


def test_validity_window_is_strict_at_both_ends_for_calls(token: Token) -> None:
    chain, payee = token.chain, token.chain.account().address
    start = chain.now()
    signed = token.sign(
        token.payer.key, to=payee, valid_after=start + 100, valid_before=start + 200
    )
    call = token.authorization_call(signed, "vrs")
    sender = token.relayer.address

    assert_reverts(call, sender, NOT_YET_VALID)
    chain.mine_at(start + 100)
    assert_reverts(call, sender, NOT_YET_VALID)
    chain.mine_at(start + 101)
    call.call({"from": sender})
    chain.mine_at(start + 199)
    call.call({"from": sender})
    chain.mine_at(start + 200)
    assert_reverts(call, sender, EXPIRED)


def test_authorization_mined_at_a_bound_reverts_and_inside_settles(token: Token) -> None:
    chain, payee = token.chain, token.chain.account().address
    start = chain.now()
    window = {"valid_after": start + 100, "valid_before": start + 200}
    first = token.sign(token.payer.key, to=payee, **window)
    second = token.sign(token.payer.key, to=payee, **window)

    chain.next_block_at(start + 100)
    assert chain.send(token.relayer, token.authorization_call(first, "bytes"))["status"] == 0
    chain.next_block_at(start + 101)
    assert chain.send(token.relayer, token.authorization_call(first, "bytes"))["status"] == 1
    chain.next_block_at(start + 200)
    assert chain.send(token.relayer, token.authorization_call(second, "bytes"))["status"] == 0

    assert token.balance(payee) == FUSD
    assert not token.used(token.payer.address, bytes.fromhex(second.nonce[2:]))
    assert_reverts(token.authorization_call(second, "bytes"), token.relayer.address, EXPIRED)


@pytest.mark.parametrize("via", ["vrs", "bytes"])
def test_authorization_signed_by_another_key_is_rejected(token: Token, via: str) -> None:
    intruder = token.chain.account()
    signed = token.sign(intruder.key, from_=token.payer.address, to=intruder.address)
    assert_reverts(token.authorization_call(signed, via), intruder.address, INVALID_SIGNATURE)


@pytest.mark.parametrize(
    "tamper",
    [
        {"value": 2 * FUSD},
        {"to": "0x000000000000000000000000000000000000dEaD"},
        {"valid_before": 2**40},
        {"nonce": "0x" + "11" * 32},
    ],
    ids=["value", "payee", "valid_before", "nonce"],
)
def test_tampered_authorization_is_rejected_and_nonce_stays_free(
    token: Token, tamper: dict[str, Any]
) -> None:
    signed = token.sign(token.payer.key, to=token.relayer.address, value=FUSD)
    tampered = signed.model_copy(update=tamper)
    for via in ("vrs", "bytes"):
        assert_reverts(
            token.authorization_call(tampered, via), token.relayer.address, INVALID_SIGNATURE
        )
    receipt = token.chain.send(token.relayer, token.authorization_call(tampered, "bytes"))
    assert receipt["status"] == 0
    assert not token.used(token.payer.address, bytes.fromhex(signed.nonce[2:]))
    token.authorization_call(signed, "vrs").call({"from": token.relayer.address})


@pytest.mark.parametrize(
    "domain",
    [
        {"name": "USD Coin"},
        {"version": "1"},
        {"token": "0x000000000000000000000000000000000000dEaD"},
    ],
    ids=["name", "version", "verifying_contract"],
)
def test_authorization_for_another_domain_is_rejected(token: Token, domain: dict[str, str]) -> None:
    signed = token.sign(token.payer.key, to=token.relayer.address, **domain)
    assert_reverts(
        token.authorization_call(signed, "vrs"), token.relayer.address, INVALID_SIGNATURE
    )


def test_authorization_beyond_balance_reverts_without_consuming_nonce(token: Token) -> None:
    signed = token.sign(token.payer.key, to=token.relayer.address, value=101 * FUSD)
    with pytest.raises(ContractCustomError) as info:
        token.authorization_call(signed, "vrs").call({"from": token.relayer.address})
    assert info.value.data == custom_error(
        "ERC20InsufficientBalance(address,uint256,uint256)",
        ["address", "uint256", "uint256"],
        token.payer.address,
        100 * FUSD,
        101 * FUSD,
    )
    assert token.chain.send(token.relayer, token.authorization_call(signed, "vrs"))["status"] == 0
    assert not token.used(token.payer.address, bytes.fromhex(signed.nonce[2:]))


@pytest.mark.parametrize("via", ["vrs", "bytes"])
def test_receive_with_authorization_settles_only_when_the_payee_submits(
    token: Token, via: str
) -> None:
    payee = token.chain.account()
    signed = token.sign(
        token.payer.key, to=payee.address, value=4 * FUSD, kind=AuthorizationKind.RECEIVE
    )
    call = token.authorization_call(signed, via)
    assert_reverts(call, token.relayer.address, NOT_PAYEE)
    assert token.chain.send(token.relayer, call)["status"] == 0

    receipt = token.chain.send(payee, call)

    assert receipt["status"] == 1
    assert token.balance(payee.address) == 4 * FUSD
    nonce = bytes.fromhex(signed.nonce[2:])
    assert events(token, receipt, "AuthorizationUsed") == [
        {"authorizer": token.payer.address, "nonce": nonce}
    ]
    assert events(token, receipt, "Transfer") == [
        {"from": token.payer.address, "to": payee.address, "value": 4 * FUSD}
    ]
    assert_reverts(call, payee.address, USED)


def test_receive_checks_the_payee_before_the_window_as_usdc_does(token: Token) -> None:
    start = token.chain.now()
    signed = token.sign(
        token.payer.key,
        to=token.relayer.address,
        kind=AuthorizationKind.RECEIVE,
        valid_after=start + 1000,
    )
    assert_reverts(token.authorization_call(signed, "bytes"), token.payer.address, NOT_PAYEE)
    assert_reverts(token.authorization_call(signed, "bytes"), token.relayer.address, NOT_YET_VALID)


def test_transfer_and_receive_signatures_are_not_interchangeable(token: Token) -> None:
    payee = token.relayer
    transfer = token.sign(token.payer.key, to=payee.address)
    receive = token.sign(token.payer.key, to=payee.address, kind=AuthorizationKind.RECEIVE)
    as_receive = token.fn(RWA_VRS, *transfer.vrs_args())
    as_transfer = token.fn(TWA_VRS, *receive.vrs_args())
    assert_reverts(as_receive, payee.address, INVALID_SIGNATURE)
    assert_reverts(as_transfer, payee.address, INVALID_SIGNATURE)


@pytest.mark.parametrize("via", ["vrs", "bytes"])
def test_canceled_authorization_can_never_be_used(token: Token, via: str) -> None:
    payer = token.payer
    signed = token.sign(payer.key, to=token.relayer.address)
    nonce = bytes.fromhex(signed.nonce[2:])
    cancel = eip3009.sign_cancel_authorization(
        payer.key,
        chain_id=token.chain.chain_id,
        token=token.address,
        authorizer=payer.address,
        nonce=nonce,
    )
    cancel_call = token.fn(
        CANCEL_VRS if via == "vrs" else CANCEL_BYTES,
        *(cancel.vrs_args() if via == "vrs" else cancel.bytes_args()),
    )

    receipt = token.chain.send(token.relayer, cancel_call)

    assert receipt["status"] == 1
    assert events(token, receipt, "AuthorizationCanceled") == [
        {"authorizer": payer.address, "nonce": nonce}
    ]
    assert token.used(payer.address, nonce)
    for overload in ("vrs", "bytes"):
        assert_reverts(token.authorization_call(signed, overload), token.relayer.address, USED)
    assert_reverts(cancel_call, token.relayer.address, USED)
    assert token.balance(payer.address) == 100 * FUSD


def test_cancel_of_a_used_nonce_reverts(token: Token) -> None:
    payer = token.payer
    signed = token.sign(payer.key, to=token.relayer.address)
    assert token.chain.send(token.relayer, token.authorization_call(signed, "vrs"))["status"] == 1
    cancel = eip3009.sign_cancel_authorization(
        payer.key,
        chain_id=token.chain.chain_id,
        token=token.address,
        authorizer=payer.address,
        nonce=bytes.fromhex(signed.nonce[2:]),
    )
    for call in (
        token.fn(CANCEL_VRS, *cancel.vrs_args()),
        token.fn(CANCEL_BYTES, *cancel.bytes_args()),
    ):
        assert_reverts(call, payer.address, USED)


def test_cancel_signed_by_another_key_is_rejected(token: Token) -> None:
    intruder = token.chain.account()
    cancel = eip3009.sign_cancel_authorization(
        intruder.key,
        chain_id=token.chain.chain_id,
        token=token.address,
        authorizer=token.payer.address,
        nonce=eip3009.random_nonce(),
    )
    for call in (
        token.fn(CANCEL_VRS, *cancel.vrs_args()),
        token.fn(CANCEL_BYTES, *cancel.bytes_args()),
    ):
        assert_reverts(call, intruder.address, INVALID_SIGNATURE)
    assert not token.used(token.payer.address, bytes.fromhex(cancel.nonce[2:]))


def _sign_permit(
    token: Token, key: Any, owner: str, spender: str, value: int, nonce: int, deadline: int
) -> tuple[int, bytes, bytes, bytes]:
    message = {
        "owner": owner,
        "spender": spender,
        "value": value,
        "nonce": nonce,
        "deadline": deadline,
    }
    signed = Account.sign_typed_data(key, full_message=_typed(token, "Permit", message))
    r, s = signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big")
    return signed.v, r, s, r + s + bytes([signed.v])


def test_permit_sets_allowance_once_and_spender_can_pull(token: Token) -> None:
    payer, spender, functions = token.payer, token.relayer, token.contract.functions
    deadline = token.chain.now() + 600
    v, r, s, _ = _sign_permit(
        token, payer.key, payer.address, spender.address, 9 * FUSD, 0, deadline
    )
    call = token.fn(PERMIT_VRS, payer.address, spender.address, 9 * FUSD, deadline, v, r, s)

    receipt = token.chain.send(spender, call)

    assert receipt["status"] == 1
    assert events(token, receipt, "Approval") == [
        {"owner": payer.address, "spender": spender.address, "value": 9 * FUSD}
    ]
    assert functions.allowance(payer.address, spender.address).call() == 9 * FUSD
    assert functions.nonces(payer.address).call() == 1
    assert_reverts(call, spender.address, PERMIT_INVALID)

    pulled = token.chain.send(
        spender, functions.transferFrom(payer.address, spender.address, 9 * FUSD)
    )
    assert pulled["status"] == 1
    assert token.balance(spender.address) == 9 * FUSD
    assert functions.allowance(payer.address, spender.address).call() == 0


def test_permit_deadline_is_inclusive_then_expired(token: Token) -> None:
    payer, spender = token.payer, token.relayer
    deadline = token.chain.now() + 100
    v, r, s, _ = _sign_permit(token, payer.key, payer.address, spender.address, FUSD, 0, deadline)
    call = token.fn(PERMIT_VRS, payer.address, spender.address, FUSD, deadline, v, r, s)
    token.chain.mine_at(deadline)
    call.call({"from": spender.address})
    token.chain.mine_at(deadline + 1)
    assert_reverts(call, spender.address, PERMIT_EXPIRED)


def test_permit_signed_by_another_key_is_rejected(token: Token) -> None:
    intruder = token.chain.account()
    deadline = token.chain.now() + 600
    owner = token.payer.address
    v, r, s, packed = _sign_permit(token, intruder.key, owner, intruder.address, FUSD, 0, deadline)
    vrs_call = token.fn(PERMIT_VRS, owner, intruder.address, FUSD, deadline, v, r, s)
    assert_reverts(vrs_call, intruder.address, PERMIT_INVALID)
    bytes_call = token.fn(PERMIT_BYTES, owner, intruder.address, FUSD, deadline, packed)
    assert_reverts(bytes_call, intruder.address, PERMIT_INVALID)
    assert token.chain.send(intruder, vrs_call)["status"] == 0
    assert token.contract.functions.nonces(owner).call() == 0


def test_only_minters_mint(token: Token) -> None:
    functions, admin = token.contract.functions, token.admin
    outsider = token.chain.account()
    minter_role = functions.MINTER_ROLE().call()
    assert functions.hasRole(minter_role, admin.address).call()
    assert functions.hasRole(b"\x00" * 32, admin.address).call()

    with pytest.raises(ContractCustomError) as info:
        functions.mint(outsider.address, FUSD).call({"from": outsider.address})
    assert info.value.data == custom_error(
        "AccessControlUnauthorizedAccount(address,bytes32)",
        ["address", "bytes32"],
        outsider.address,
        minter_role,
    )
    assert token.chain.send(outsider, functions.mint(outsider.address, FUSD))["status"] == 0

    granted = token.chain.send(admin, functions.grantRole(minter_role, outsider.address))
    assert granted["status"] == 1
    receipt = token.chain.send(outsider, functions.mint(outsider.address, 2 * FUSD))
    assert events(token, receipt, "Transfer") == [
        {"from": "0x" + "00" * 20, "to": outsider.address, "value": 2 * FUSD}
    ]
    assert token.balance(outsider.address) == 2 * FUSD
    assert functions.totalSupply().call() == 102 * FUSD


def test_plain_erc20_transfer_and_approve(token: Token) -> None:
    functions, payer, other = token.contract.functions, token.payer, token.relayer
    assert token.chain.send(payer, functions.transfer(other.address, 5 * FUSD))["status"] == 1
    assert token.chain.send(payer, functions.approve(other.address, FUSD))["status"] == 1
    assert token.balance(other.address) == 5 * FUSD
    assert functions.allowance(payer.address, other.address).call() == FUSD


@pytest.mark.parametrize("via", ["vrs", "bytes"])
def test_contract_wallet_authorization_is_honoured_via_eip1271(
    token: Token, wallet: tuple[Contract, LocalAccount], via: str
) -> None:
    contract, owner = wallet
    payee = token.chain.account().address
    signed = token.sign(owner.key, from_=contract.address, to=payee, value=20 * FUSD)

    receipt = token.chain.send(token.relayer, token.authorization_call(signed, via))

    assert receipt["status"] == 1
    assert token.balance(contract.address) == 30 * FUSD
    assert token.balance(payee) == 20 * FUSD
    assert events(token, receipt, "AuthorizationUsed") == [
        {"authorizer": contract.address, "nonce": bytes.fromhex(signed.nonce[2:])}
    ]


def test_contract_wallet_rejects_authorization_signed_by_non_owner(
    token: Token, wallet: tuple[Contract, LocalAccount]
) -> None:
    contract, owner = wallet
    stranger = token.chain.account()
    signed = token.sign(stranger.key, from_=contract.address, to=stranger.address)
    for via in ("bytes", "vrs"):
        assert_reverts(token.authorization_call(signed, via), stranger.address, INVALID_SIGNATURE)
    owners_signature = token.sign(owner.key, from_=token.payer.address, to=stranger.address)
    assert_reverts(
        token.authorization_call(owners_signature, "bytes"), stranger.address, INVALID_SIGNATURE
    )
    assert token.balance(contract.address) == 50 * FUSD


def test_contract_wallet_can_cancel_and_permit_via_eip1271(
    token: Token, wallet: tuple[Contract, LocalAccount]
) -> None:
    contract, owner = wallet
    chain, spender = token.chain, token.relayer
    cancel = eip3009.sign_cancel_authorization(
        owner.key,
        chain_id=chain.chain_id,
        token=token.address,
        authorizer=contract.address,
        nonce=eip3009.random_nonce(),
    )
    assert chain.send(spender, token.fn(CANCEL_BYTES, *cancel.bytes_args()))["status"] == 1
    assert token.used(contract.address, bytes.fromhex(cancel.nonce[2:]))

    deadline = chain.now() + 600
    *_, packed = _sign_permit(
        token, owner.key, contract.address, spender.address, FUSD, 0, deadline
    )
    permit = token.fn(PERMIT_BYTES, contract.address, spender.address, FUSD, deadline, packed)
    assert chain.send(spender, permit)["status"] == 1
    assert token.contract.functions.allowance(contract.address, spender.address).call() == FUSD


@pytest.mark.parametrize("kind", ["transfer", "receive", "cancel"])
def test_recover_authorizer_returns_the_signing_key(token: Token, kind: str) -> None:
    payer, chain_id = token.payer, token.chain.chain_id
    signed: eip3009.SignedAuthorization | eip3009.SignedCancellation
    if kind == "cancel":
        signed = eip3009.sign_cancel_authorization(
            payer.key,
            chain_id=chain_id,
            token=token.address,
            authorizer=payer.address,
            nonce=eip3009.random_nonce(),
        )
    else:
        signed = token.sign(
            payer.key,
            to=token.relayer.address,
            kind=AuthorizationKind(
                "TransferWithAuthorization" if kind == "transfer" else "ReceiveWithAuthorization"
            ),
        )
    assert eip3009.recover_authorizer(signed, chain_id=chain_id, token=token.address) == (
        payer.address
    )
    assert signed.signature == signed.r + signed.s[2:] + f"{signed.v:02x}"
    other_domain = eip3009.recover_authorizer(
        signed, chain_id=chain_id, token=token.address, version="1"
    )
    assert other_domain != payer.address


def test_nonces_are_32_random_bytes_and_other_lengths_are_refused(token: Token) -> None:
    first, second = eip3009.random_nonce(), eip3009.random_nonce()
    assert len(first) == len(second) == 32
    assert first != second
    with pytest.raises(ValueError, match="32 bytes"):
        token.sign(token.payer.key, to=token.relayer.address, nonce=b"\x01" * 31)


def test_official_x402_sdk_signs_an_authorization_fleetusd_accepts(token: Token) -> None:
    from x402.mechanisms.evm import EthAccountSigner
    from x402.mechanisms.evm.exact.client import ExactEvmScheme
    from x402.schemas import PaymentRequirements

    payee = token.chain.account().address
    chain_ahead_of_wall_clock = max(0, token.chain.now() - int(time.time()))
    requirements = PaymentRequirements(
        scheme="exact",
        network=f"eip155:{token.chain.chain_id}",
        asset=token.address,
        amount=str(FUSD // 100),
        pay_to=payee,
        max_timeout_seconds=chain_ahead_of_wall_clock + 600,
        extra={"name": "FleetUSD", "version": "2"},
    )
    payload = ExactEvmScheme(EthAccountSigner(token.payer)).create_payment_payload(requirements)

    authorization = payload["authorization"]
    assert authorization["from"] == token.payer.address
    signature = bytes.fromhex(payload["signature"].removeprefix("0x"))
    assert len(signature) == 65
    nonce = bytes.fromhex(authorization["nonce"].removeprefix("0x"))
    args = [
        authorization["from"],
        authorization["to"],
        int(authorization["value"]),
        int(authorization["validAfter"]),
        int(authorization["validBefore"]),
        nonce,
    ]
    vrs = (signature[64], signature[:32], signature[32:64])
    receipt = token.chain.send(token.relayer, token.fn(TWA_VRS, *args, *vrs))

    assert receipt["status"] == 1
    assert token.balance(payee) == FUSD // 100
    assert token.used(token.payer.address, nonce)
    assert_reverts(token.fn(TWA_BYTES, *args, signature), token.relayer.address, USED)
