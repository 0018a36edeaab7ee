"""ERC-8004 registries (contracts/src/erc8004) on a real anvil: ABI parity with the reference
contracts v2.0.0, every write path and every revert, events with their arguments."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD

from agentfleet.chain import artifacts
from agentfleet.chain.erc8004 import (
    MAX_DEADLINE_DELAY,
    agent_wallet_digest,
    agent_wallet_typed_data,
    sign_agent_wallet,
)

ZERO = "0x0000000000000000000000000000000000000000"
NONEXISTENT_TOKEN = "0x7e273289"  # ERC721NonexistentToken(uint256)
Z32 = bytes(32)

# The reference's ABI (erc-8004/erc-8004-contracts @ b9e466c, abis/*.json) minus its proxy
# administration (UUPS, Ownable, Initializable), one entry per unindented line: selector (events:
# topic) and signature with parameter names, indexed flags, mutability and outputs. Adjusted:
# isAuthorizedOrOwner is in the reference source (ReputationRegistry calls it) but missing from its
# stale abis/ JSON; its ECDSA* errors are left out (both implementations only use tryRecover, so
# they cannot be raised).
REFERENCE_ABI = """
[IdentityRegistry]
64283d7b error ERC721IncorrectOwner(address sender,uint256 tokenId,address owner)
177e802f error ERC721InsufficientApproval(address operator,uint256 tokenId)
a9fbf51f error ERC721InvalidApprover(address approver)
5b08ba18 error ERC721InvalidOperator(address operator)
89c62b64 error ERC721InvalidOwner(address owner)
64a0ae92 error ERC721InvalidReceiver(address receiver)
73c6ac6e error ERC721InvalidSender(address sender)
7e273289 error ERC721NonexistentToken(uint256 tokenId)
8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925 event Approval(
    address indexed owner,address indexed approved,uint256 indexed tokenId)
17307eab39ab6107e8899845ad3d59bd9653f200f220920489ca2b5937696c31 event ApprovalForAll(
    address indexed owner,address indexed operator,bool approved)
6bd5c950a8d8df17f772f5af37cb3655737899cbf903264b9795592da439661c event BatchMetadataUpdate(
    uint256 _fromTokenId,uint256 _toTokenId)
0a6387c9ea3628b88a633bb4f3b151770f70085117a15f9bf3787cda53f13d31 event EIP712DomainChanged()
2c149ed548c6d2993cd73efe187df6eccabe4538091b33adbd25fafdb8a1468b event MetadataSet(
    uint256 indexed agentId,string indexed indexedMetadataKey,string metadataKey,
    bytes metadataValue)
f8e1a15aba9398e019f0b49df1a4fde98ee17ae345cb5f6b5e2c27f5033e8ce7 event MetadataUpdate(
    uint256 _tokenId)
ca52e62c367d81bb2e328eb795f7c7ba24afb478408a26c0e201d155c449bc4a event Registered(
    uint256 indexed agentId,string agentURI,address indexed owner)
ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef event Transfer(
    address indexed from,address indexed to,uint256 indexed tokenId)
3a2c7fffc2cba7582c690e3b82c453ea02a308326a98a3ad7576c606336409fb event URIUpdated(
    uint256 indexed agentId,string newURI,address indexed updatedBy)
095ea7b3 function approve(address to,uint256 tokenId) nonpayable
70a08231 function balanceOf(address owner) view returns (uint256)
84b0196e function eip712Domain() view returns (bytes1 fields,string name,string version,
    uint256 chainId,address verifyingContract,bytes32 salt,uint256[] extensions)
00339509 function getAgentWallet(uint256 agentId) view returns (address)
081812fc function getApproved(uint256 tokenId) view returns (address)
cb4799f2 function getMetadata(uint256 agentId,string metadataKey) view returns (bytes)
0d8e6e2c function getVersion() pure returns (string)
e985e9c5 function isApprovedForAll(address owner,address operator) view returns (bool)
d95e72be function isAuthorizedOrOwner(address spender,uint256 agentId) view returns (bool)
06fdde03 function name() view returns (string)
6352211e function ownerOf(uint256 tokenId) view returns (address)
1aa3a008 function register() nonpayable returns (uint256 agentId)
f2c298be function register(string agentURI) nonpayable returns (uint256 agentId)
8ea42286 function register(string agentURI,(string,bytes)[] metadata) nonpayable returns (
    uint256 agentId)
42842e0e function safeTransferFrom(address from,address to,uint256 tokenId) nonpayable
b88d4fde function safeTransferFrom(address from,address to,uint256 tokenId,
    bytes data) nonpayable
0af28bd3 function setAgentURI(uint256 agentId,string newURI) nonpayable
2d1ef5ae function setAgentWallet(uint256 agentId,address newWallet,uint256 deadline,
    bytes signature) nonpayable
a22cb465 function setApprovalForAll(address operator,bool approved) nonpayable
466648da function setMetadata(uint256 agentId,string metadataKey,
    bytes metadataValue) nonpayable
01ffc9a7 function supportsInterface(bytes4 interfaceId) view returns (bool)
95d89b41 function symbol() view returns (string)
c87b56dd function tokenURI(uint256 tokenId) view returns (string)
23b872dd function transferFrom(address from,address to,uint256 tokenId) nonpayable
3fddcf19 function unsetAgentWallet(uint256 agentId) nonpayable
[ReputationRegistry]
25156fd3288212246d8b008d5921fde376c71ed14ac2e072a506eb06fde6d09d event FeedbackRevoked(
    uint256 indexed agentId,address indexed clientAddress,uint64 indexed feedbackIndex)
6a4a61743519c9d648a14e6493f47dbe3ff1aa29e7785c96c8326a205e58febc event NewFeedback(
    uint256 indexed agentId,address indexed clientAddress,uint64 feedbackIndex,int128 value,
    uint8 valueDecimals,string indexed indexedTag1,string tag1,string tag2,string endpoint,
    string feedbackURI,bytes32 feedbackHash)
b1c6be0b5b8aef6539e2fac0fd131a2faa7b49edf8e505b5eb0ad487d56051d4 event ResponseAppended(
    uint256 indexed agentId,address indexed clientAddress,uint64 feedbackIndex,
    address indexed responder,string responseURI,bytes32 responseHash)
c2349ab2 function appendResponse(uint256 agentId,address clientAddress,uint64 feedbackIndex,
    string responseURI,bytes32 responseHash) nonpayable
42dd519c function getClients(uint256 agentId) view returns (address[])
bc4d861b function getIdentityRegistry() view returns (address)
f2d81759 function getLastIndex(uint256 agentId,address clientAddress) view returns (uint64)
6e04cacd function getResponseCount(uint256 agentId,address clientAddress,
    uint64 feedbackIndex,address[] responders) view returns (uint64 count)
81bbba58 function getSummary(uint256 agentId,address[] clientAddresses,string tag1,
    string tag2) view returns (uint64 count,int128 summaryValue,uint8 summaryValueDecimals)
0d8e6e2c function getVersion() pure returns (string)
3c036a7e function giveFeedback(uint256 agentId,int128 value,uint8 valueDecimals,string tag1,
    string tag2,string endpoint,string feedbackURI,bytes32 feedbackHash) nonpayable
d9d84224 function readAllFeedback(uint256 agentId,address[] clientAddresses,string tag1,
    string tag2,bool includeRevoked) view returns (address[] clients,uint64[] feedbackIndexes,
    int128[] values,uint8[] valueDecimals,string[] tag1s,string[] tag2s,bool[] revokedStatuses)
232b0810 function readFeedback(uint256 agentId,address clientAddress,
    uint64 feedbackIndex) view returns (int128 value,uint8 valueDecimals,string tag1,
    string tag2,bool isRevoked)
4ab3ca99 function revokeFeedback(uint256 agentId,uint64 feedbackIndex) nonpayable
[ValidationRegistry]
530436c3634a98e1e626b0898be2f1e9980cc1bd2a78c07a0aba52d0a48a5059 event ValidationRequest(
    address indexed validatorAddress,uint256 indexed agentId,string requestURI,
    bytes32 indexed requestHash)
afddf629e874ccc3963b6a888c477bd464a6c8525024fc88759ea3b2326349ae event ValidationResponse(
    address indexed validatorAddress,uint256 indexed agentId,bytes32 indexed requestHash,
    uint8 response,string responseURI,bytes32 responseHash,string tag)
8d5d0c2d function getAgentValidations(uint256 agentId) view returns (bytes32[])
bc4d861b function getIdentityRegistry() view returns (address)
1b7cabd6 function getSummary(uint256 agentId,address[] validatorAddresses,
    string tag) view returns (uint64 count,uint8 avgResponse)
ff2febfc function getValidationStatus(bytes32 requestHash) view returns (
    address validatorAddress,uint256 agentId,uint8 response,bytes32 responseHash,string tag,
    uint256 lastUpdate)
4bf3158c function getValidatorRequests(address validatorAddress) view returns (bytes32[])
0d8e6e2c function getVersion() pure returns (string)
aaf400c4 function validationRequest(address validatorAddress,uint256 agentId,
    string requestURI,bytes32 requestHash) nonpayable
3d659a96 function validationResponse(bytes32 requestHash,uint8 response,string responseURI,
    bytes32 responseHash,string tag) nonpayable
"""
# Ours adds only OZ 5.7's ShortStrings errors (EIP712 constructor; never raised after deployment).
EXTRA_ABI = {"error InvalidShortString()", "error StringTooLong(string str)"}


def _reference(name: str) -> set[tuple[str, str]]:
    sections = re.split(r"^\[(\w+)\]$", REFERENCE_ABI, flags=re.MULTILINE)
    section = sections[sections.index(name) + 1]
    lines = section.replace("\n    ", "").strip().splitlines()
    return {(line.split(" ", 1)[0], line.split(" ", 1)[1]) for line in lines}


def _abi_type(param: dict[str, Any]) -> str:
    if param["type"].startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in param["components"])
        return f"({inner}){param['type'][5:]}"
    return str(param["type"])


def _describe(entry: dict[str, Any]) -> tuple[str, str]:
    canonical = f"{entry['name']}({','.join(_abi_type(p) for p in entry['inputs'])})"
    digest = Web3.keccak(text=canonical).hex()
    params = ",".join(
        _abi_type(p)
        + (" indexed" if p.get("indexed") else "")
        + (f" {p['name']}" * bool(p["name"]))
        for p in entry["inputs"]
    )
    text = f"{entry['type']} {entry['name']}({params})"
    if entry["type"] == "function":
        text += f" {entry['stateMutability']}"
        if entry["outputs"]:
            outs = ",".join(
                _abi_type(o) + f" {o['name']}" * bool(o["name"]) for o in entry["outputs"]
            )
            text += f" returns ({outs})"
    return (digest if entry["type"] == "event" else digest[:8]), text


@pytest.mark.parametrize("name", ["IdentityRegistry", "ReputationRegistry", "ValidationRegistry"])
def test_abi_matches_reference_selectors_topics_and_signatures(name: str) -> None:
    ours = {
        _describe(e)
        for e in artifacts.load(name).abi
        if e["type"] in ("function", "event", "error")
    }
    reference = _reference(name)
    assert len(reference) >= 10
    assert sorted(reference - ours) == []
    assert {text for _, text in ours - reference} <= EXTRA_ABI


class Chain:
    """Fresh funded accounts, deployments and locally signed transactions on the shared anvil."""

    def __init__(self, w3: Web3) -> None:
        self.w3 = w3
        self.chain_id = w3.eth.chain_id

    def rpc(self, method: str, *params: Any) -> None:
        self.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]

    def account(self) -> LocalAccount:
        account: LocalAccount = Account.create()
        self.rpc("anvil_setBalance", account.address, hex(10**20))
        return account

    def accounts(self, n: int) -> list[LocalAccount]:
        return [self.account() for _ in range(n)]

    def deploy(self, name: str, sender: LocalAccount, *args: Any) -> Contract:
        artifact = artifacts.load(name)
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        receipt = self.send(factory.constructor(*args), sender)
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi)

    def send(self, fn: Any, sender: LocalAccount, gas: int | None = None) -> Any:
        """Mines ``fn`` from ``sender`` and asserts success, unless ``gas`` is given (then a
        reverting call is mined too, with status 0).

        Estimates get a 25% margin: writes of ``block.timestamp`` (lastUpdate) cost 2,900 gas
        more when the transaction lands in a later second than the estimate ran in.
        """
        if gas is None:
            estimate = fn.estimate_gas({"from": sender.address})
            gas, must_succeed = estimate + estimate // 4, True
        else:
            must_succeed = False
        tx = fn.build_transaction(
            {
                "from": sender.address,
                "nonce": self.w3.eth.get_transaction_count(sender.address, "pending"),
                "chainId": self.chain_id,
                "gas": gas,
            }
        )
        tx_hash = self.w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        assert receipt["status"] == 1 or not must_succeed, (fn, tx, receipt)
        return receipt

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def block_time(self, receipt: Any) -> int:
        return int(self.w3.eth.get_block(receipt["blockNumber"])["timestamp"])


def reverts(fn: Any, sender: LocalAccount, reason: str) -> None:
    """``fn`` from ``sender`` reverts with ``reason`` (a string or a custom error selector)."""
    with pytest.raises(ContractLogicError) as caught:
        fn.call({"from": sender.address})
    assert reason in f"{caught.value} {getattr(caught.value, 'data', '')}"


def events(contract: Contract, name: str, receipt: Any) -> list[dict[str, Any]]:
    logs = contract.events[name]().process_receipt(receipt, errors=DISCARD)
    return [dict(log["args"]) for log in logs]


@pytest.fixture(scope="module")
def chain(anvil_url: str) -> Iterator[Chain]:
    yield Chain(Web3(Web3.HTTPProvider(anvil_url)))


class Registries:
    """A fresh set of the three registries, wired together, and shorthands for their writes."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        deployer = chain.account()
        self.identity = chain.deploy("IdentityRegistry", deployer)
        self.reputation = chain.deploy("ReputationRegistry", deployer, self.identity.address)
        self.validation = chain.deploy("ValidationRegistry", deployer, self.identity.address)
        self.idf = self.identity.functions
        self.rep = self.reputation.functions
        self.val = self.validation.functions

    def register(self, owner: LocalAccount, uri: str = "ipfs://agent") -> int:
        fn = self.identity.get_function_by_signature("register(string)")(uri)
        agent_id = int(fn.call({"from": owner.address}))
        self.chain.send(fn, owner)
        return agent_id

    def feedback(
        self, client: LocalAccount, agent_id: int, value: int, decimals: int = 0, *tags: str
    ) -> Any:
        tag1, tag2 = (*tags, "", "")[:2]
        fn = self.rep.giveFeedback(agent_id, value, decimals, tag1, tag2, "", "", Z32)
        return self.chain.send(fn, client)

    def wallet_call(
        self,
        agent_id: int,
        wallet: LocalAccount,
        owner: str,
        deadline: int,
        signed_agent_id: int | None = None,
        signed_deadline: int | None = None,
    ) -> Any:
        """setAgentWallet with ``wallet``'s proof, which may name another agent or deadline."""
        signature = sign_agent_wallet(
            wallet.key,
            self.chain.chain_id,
            self.identity.address,
            agent_id if signed_agent_id is None else signed_agent_id,
            owner,
            deadline if signed_deadline is None else signed_deadline,
        )
        return self.idf.setAgentWallet(agent_id, wallet.address, deadline, signature)


@pytest.fixture
def reg(chain: Chain) -> Registries:
    return Registries(chain)


def test_register_overloads_mint_sequential_agents_with_owner_wallet_and_events(
    chain: Chain, reg: Registries
) -> None:
    owner = chain.account()
    identity, idf = reg.identity, reg.idf
    bare = chain.send(identity.get_function_by_signature("register()")(), owner)
    with_uri = chain.send(identity.get_function_by_signature("register(string)")("ipfs://a"), owner)
    entries = [("model", b"gpt"), ("price", (5).to_bytes(32, "big"))]
    full = identity.get_function_by_signature("register(string,(string,bytes)[])")
    assert full("https://b", entries).call({"from": owner.address}) == 2
    with_meta = chain.send(full("https://b", entries), owner)

    wallet = bytes.fromhex(owner.address[2:])
    for agent_id, receipt, uri in [
        (0, bare, ""),
        (1, with_uri, "ipfs://a"),
        (2, with_meta, "https://b"),
    ]:
        assert idf.ownerOf(agent_id).call() == owner.address
        assert idf.tokenURI(agent_id).call() == uri
        assert idf.getAgentWallet(agent_id).call() == owner.address
        assert idf.getMetadata(agent_id, "agentWallet").call() == wallet
        registered = {"agentId": agent_id, "agentURI": uri, "owner": owner.address}
        assert events(identity, "Registered", receipt) == [registered]
        minted = {"from": ZERO, "to": owner.address, "tokenId": agent_id}
        assert events(identity, "Transfer", receipt) == [minted]
    metadata_set = events(identity, "MetadataSet", with_meta)
    assert [(e["metadataKey"], e["metadataValue"]) for e in metadata_set] == [
        ("agentWallet", wallet),
        *entries,
    ]
    assert metadata_set[1]["indexedMetadataKey"] == Web3.keccak(text="model")
    assert idf.getMetadata(2, "price").call() == (5).to_bytes(32, "big")
    assert idf.getMetadata(1, "price").call() == b""
    assert idf.balanceOf(owner.address).call() == 3


def test_agent_wallet_key_is_reserved(chain: Chain, reg: Registries) -> None:
    owner = chain.account()
    agent_id = reg.register(owner)
    full = reg.identity.get_function_by_signature("register(string,(string,bytes)[])")
    reverts(full("u", [("a", b"1"), ("agentWallet", b"\x01" * 20)]), owner, "reserved key")
    reverts(reg.idf.setMetadata(agent_id, "agentWallet", b"\x01" * 20), owner, "reserved key")
    chain.send(reg.idf.setMetadata(agent_id, "agentwallet", b"\x01"), owner)
    assert reg.idf.getAgentWallet(agent_id).call() == owner.address


def test_uri_and_metadata_writable_by_owner_approved_and_operator_only(
    chain: Chain, reg: Registries
) -> None:
    owner, approved, operator, stranger = chain.accounts(4)
    identity, idf = reg.identity, reg.idf
    agent_id = reg.register(owner)
    assert [idf.isAuthorizedOrOwner(a.address, agent_id).call() for a in (owner, approved)] == [
        True,
        False,
    ]
    chain.send(idf.approve(approved.address, agent_id), owner)
    chain.send(idf.setApprovalForAll(operator.address, True), owner)

    for i, who in enumerate((owner, approved, operator)):
        assert idf.isAuthorizedOrOwner(who.address, agent_id).call()
        receipt = chain.send(idf.setAgentURI(agent_id, f"ipfs://v{i}"), who)
        updated = {"agentId": agent_id, "newURI": f"ipfs://v{i}", "updatedBy": who.address}
        assert events(identity, "URIUpdated", receipt) == [updated]
        receipt = chain.send(idf.setMetadata(agent_id, "k", bytes([i])), who)
        key_hash = Web3.keccak(text="k")
        assert events(identity, "MetadataSet", receipt) == [
            {
                "agentId": agent_id,
                "indexedMetadataKey": key_hash,
                "metadataKey": "k",
                "metadataValue": bytes([i]),
            }
        ]
    assert idf.tokenURI(agent_id).call() == "ipfs://v2"
    assert idf.getMetadata(agent_id, "k").call() == b"\x02"

    assert not idf.isAuthorizedOrOwner(stranger.address, agent_id).call()
    reverts(idf.setAgentURI(agent_id, "x"), stranger, "Not authorized")
    reverts(idf.setMetadata(agent_id, "k", b"x"), stranger, "Not authorized")
    reverts(idf.unsetAgentWallet(agent_id), stranger, "Not authorized")
    reverts(idf.setAgentURI(99, "x"), owner, NONEXISTENT_TOKEN)
    reverts(idf.setMetadata(99, "k", b"x"), owner, NONEXISTENT_TOKEN)
    reverts(idf.isAuthorizedOrOwner(owner.address, 99), owner, NONEXISTENT_TOKEN)
    assert idf.getAgentWallet(99).call() == ZERO


def test_identity_views_version_domain_and_interfaces(chain: Chain, reg: Registries) -> None:
    idf = reg.idf
    assert [idf.name().call(), idf.symbol().call()] == ["AgentIdentity", "AGENT"]
    assert idf.getVersion().call() == "2.0.0"
    domain = idf.eip712Domain().call()
    assert domain[1:5] == ["ERC8004IdentityRegistry", "1", chain.chain_id, reg.identity.address]
    # ERC-721, ERC-721 metadata, ERC-4906 (metadata update events); not a random id
    for interface, expected in [("80ac58cd", 1), ("5b5e139f", 1), ("49064906", 1), ("ffffffff", 0)]:
        assert idf.supportsInterface(bytes.fromhex(interface)).call() is bool(expected)


def test_set_agent_wallet_accepts_eip712_signature_of_new_wallet(
    chain: Chain, reg: Registries
) -> None:
    owner, operator = chain.accounts(2)
    new_wallet: LocalAccount = Account.create()
    identity, idf = reg.identity, reg.idf
    agent_id = reg.register(owner)
    deadline = chain.now() + 120
    domain, types, message = agent_wallet_typed_data(
        chain.chain_id, identity.address, agent_id, new_wallet.address, owner.address, deadline
    )
    signed = Account.sign_typed_data(
        new_wallet.key, domain_data=domain, message_types=types, message_data=message
    )
    ours = sign_agent_wallet(
        new_wallet.key, chain.chain_id, identity.address, agent_id, owner.address, deadline
    )
    assert ours == bytes(signed.signature)

    chain.send(idf.setApprovalForAll(operator.address, True), owner)  # the proof names the owner
    fn = idf.setAgentWallet(agent_id, new_wallet.address, deadline, bytes(signed.signature))
    receipt = chain.send(fn, operator)
    wallet_bytes = bytes.fromhex(new_wallet.address[2:])
    assert idf.getAgentWallet(agent_id).call() == new_wallet.address
    assert idf.getMetadata(agent_id, "agentWallet").call() == wallet_bytes
    assert events(identity, "MetadataSet", receipt) == [
        {
            "agentId": agent_id,
            "indexedMetadataKey": Web3.keccak(text="agentWallet"),
            "metadataKey": "agentWallet",
            "metadataValue": wallet_bytes,
        }
    ]

    receipt = chain.send(idf.unsetAgentWallet(agent_id), owner)
    assert idf.getAgentWallet(agent_id).call() == ZERO
    assert events(identity, "MetadataSet", receipt)[0]["metadataValue"] == b""


def test_set_agent_wallet_rejects_bad_proofs_and_deadlines(chain: Chain, reg: Registries) -> None:
    owner, stranger = chain.accounts(2)
    new_wallet, impostor = Account.create(), Account.create()
    idf = reg.idf
    agent_id = reg.register(owner)
    other_agent = reg.register(owner)
    now = chain.now()
    good = reg.wallet_call(agent_id, new_wallet, owner.address, now + 120)

    def signed_by(signer: LocalAccount) -> Any:
        signature = sign_agent_wallet(
            signer.key, chain.chain_id, reg.identity.address, agent_id, owner.address, now + 120
        )
        return idf.setAgentWallet(agent_id, new_wallet.address, now + 120, signature)

    reverts(signed_by(impostor), owner, "invalid wallet sig")
    wrong_agent = reg.wallet_call(
        agent_id, new_wallet, owner.address, now + 120, signed_agent_id=other_agent
    )
    reverts(wrong_agent, owner, "invalid wallet sig")
    reverts(
        reg.wallet_call(agent_id, new_wallet, stranger.address, now + 120),
        owner,
        "invalid wallet sig",
    )
    signed_later = reg.wallet_call(
        agent_id, new_wallet, owner.address, now + 120, signed_deadline=now + 200
    )
    reverts(signed_later, owner, "invalid wallet sig")
    garbage = idf.setAgentWallet(agent_id, new_wallet.address, now + 120, b"\x01" * 7)
    reverts(garbage, owner, "invalid wallet sig")
    reverts(reg.wallet_call(agent_id, new_wallet, owner.address, now - 1), owner, "expired")
    too_far = now + MAX_DEADLINE_DELAY + 60
    reverts(
        reg.wallet_call(agent_id, new_wallet, owner.address, too_far), owner, "deadline too far"
    )
    reverts(idf.setAgentWallet(agent_id, ZERO, now + 120, b""), owner, "bad wallet")
    reverts(good, stranger, "Not authorized")
    reverts(idf.setAgentWallet(99, new_wallet.address, now + 120, b""), owner, NONEXISTENT_TOKEN)

    mined = chain.send(signed_by(impostor), owner, gas=300_000)
    assert mined["status"] == 0
    assert idf.getAgentWallet(agent_id).call() == owner.address
    chain.send(good, owner)
    assert idf.getAgentWallet(agent_id).call() == new_wallet.address


def _digest_approving_wallet(digest: bytes) -> str:
    """EVM code answering isValidSignature(hash, sig) with the ERC-1271 magic value only when
    hash == digest (any signature bytes): proves which digest the registry asks a wallet about."""
    return "0x" + (
        "600435"  # CALLDATALOAD(4): the hash argument
        + "7f" + digest.hex() + "14"  # EQ digest
        + "602d57"  # JUMPI to 0x2d
        + "60206000f3"  # RETURN 32 zero bytes
        + "5b"  # 0x2d: JUMPDEST
        + "631626ba7e60e01b60005260206000f3"  # RETURN bytes32(0x1626ba7e << 224)
    )  # fmt: skip


def test_set_agent_wallet_accepts_erc1271_contract_wallet(chain: Chain, reg: Registries) -> None:
    owner = chain.account()
    agent_id = reg.register(owner)
    wallet = Account.create().address
    deadline = chain.now() + 120
    digest = agent_wallet_digest(
        chain.chain_id, reg.identity.address, agent_id, wallet, owner.address, deadline
    )
    fn = reg.idf.setAgentWallet(agent_id, wallet, deadline, b"contract-wallet-proof")

    chain.rpc("anvil_setCode", wallet, _digest_approving_wallet(bytes(32)))
    reverts(fn, owner, "invalid wallet sig")
    chain.rpc("anvil_setCode", wallet, _digest_approving_wallet(digest))
    chain.send(fn, owner)
    assert reg.idf.getAgentWallet(agent_id).call() == wallet


def test_agent_wallet_cleared_on_transfer(chain: Chain, reg: Registries) -> None:
    owner, buyer = chain.accounts(2)
    new_wallet = Account.create()
    identity, idf = reg.identity, reg.idf
    agent_id = reg.register(owner)
    set_wallet = reg.wallet_call(agent_id, new_wallet, owner.address, chain.now() + 120)
    chain.send(set_wallet, owner)
    chain.send(idf.setMetadata(agent_id, "model", b"m"), owner)

    receipt = chain.send(idf.transferFrom(owner.address, buyer.address, agent_id), owner)
    assert idf.ownerOf(agent_id).call() == buyer.address
    assert idf.getAgentWallet(agent_id).call() == ZERO
    assert idf.getMetadata(agent_id, "agentWallet").call() == b""
    assert idf.getMetadata(agent_id, "model").call() == b"m"
    cleared = [
        (e["metadataKey"], e["metadataValue"]) for e in events(identity, "MetadataSet", receipt)
    ]
    assert cleared == [("agentWallet", b"")]
    reverts(set_wallet, buyer, "invalid wallet sig")  # the proof named the previous owner


def test_feedback_is_stored_emitted_and_indexed_per_client(chain: Chain, reg: Registries) -> None:
    owner, alice, bob = chain.accounts(3)
    rep = reg.rep
    agent_id = reg.register(owner)
    assert rep.getIdentityRegistry().call() == reg.identity.address
    assert rep.getVersion().call() == "2.0.0"
    file_hash = Web3.keccak(text="file")

    give = rep.giveFeedback(agent_id, 87, 0, "starred", "", "https://a/x", "ipfs://f", file_hash)
    assert events(reg.reputation, "NewFeedback", chain.send(give, alice)) == [
        {
            "agentId": agent_id,
            "clientAddress": alice.address,
            "feedbackIndex": 1,
            "value": 87,
            "valueDecimals": 0,
            "indexedTag1": Web3.keccak(text="starred"),
            "tag1": "starred",
            "tag2": "",
            "endpoint": "https://a/x",
            "feedbackURI": "ipfs://f",
            "feedbackHash": file_hash,
        }
    ]
    reg.feedback(alice, agent_id, -1250, 2, "pnl", "week")
    reg.feedback(bob, agent_id, 1)

    assert rep.getLastIndex(agent_id, alice.address).call() == 2
    assert rep.getLastIndex(agent_id, bob.address).call() == 1
    assert rep.getLastIndex(agent_id, owner.address).call() == 0
    assert rep.getClients(agent_id).call() == [alice.address, bob.address]
    assert rep.readFeedback(agent_id, alice.address, 1).call() == [87, 0, "starred", "", False]
    assert rep.readFeedback(agent_id, alice.address, 2).call() == [-1250, 2, "pnl", "week", False]
    reverts(rep.readFeedback(agent_id, alice.address, 0), alice, "index must be > 0")
    reverts(rep.readFeedback(agent_id, bob.address, 2), alice, "index out of bounds")


def test_self_feedback_rejected_for_owner_approved_and_operators(
    chain: Chain, reg: Registries
) -> None:
    owner, approved, operator = chain.accounts(3)
    agent_id = reg.register(owner)
    chain.send(reg.idf.approve(approved.address, agent_id), owner)
    chain.send(reg.idf.setApprovalForAll(operator.address, True), owner)
    for who in (owner, approved, operator):
        give = reg.rep.giveFeedback(agent_id, 100, 0, "", "", "", "", Z32)
        reverts(give, who, "Self-feedback not allowed")
    reverts(reg.rep.giveFeedback(99, 100, 0, "", "", "", "", Z32), owner, NONEXISTENT_TOKEN)


def test_feedback_value_and_decimals_bounds(chain: Chain, reg: Registries) -> None:
    owner, client = chain.accounts(2)
    agent_id = reg.register(owner)
    reverts(reg.rep.giveFeedback(agent_id, 1, 19, "", "", "", "", Z32), client, "too many decimals")
    for value in (10**38 + 1, -(10**38) - 1):
        give = reg.rep.giveFeedback(agent_id, value, 18, "", "", "", "", Z32)
        reverts(give, client, "value too large")
    reg.feedback(client, agent_id, 10**38, 18)
    reg.feedback(client, agent_id, -(10**38), 18)
    assert reg.rep.getLastIndex(agent_id, client.address).call() == 2


def test_revoke_feedback_only_own_existing_once(chain: Chain, reg: Registries) -> None:
    owner, alice, bob = chain.accounts(3)
    rep = reg.rep
    agent_id = reg.register(owner)
    reg.feedback(alice, agent_id, 5, 0, "t")
    reverts(rep.revokeFeedback(agent_id, 1), bob, "index out of bounds")
    reverts(rep.revokeFeedback(agent_id, 0), alice, "index must be > 0")
    reverts(rep.revokeFeedback(agent_id, 2), alice, "index out of bounds")
    receipt = chain.send(rep.revokeFeedback(agent_id, 1), alice)
    revoked = {"agentId": agent_id, "clientAddress": alice.address, "feedbackIndex": 1}
    assert events(reg.reputation, "FeedbackRevoked", receipt) == [revoked]
    assert rep.readFeedback(agent_id, alice.address, 1).call() == [5, 0, "t", "", True]
    reverts(rep.revokeFeedback(agent_id, 1), alice, "Already revoked")


def test_get_summary_averages_at_mode_decimals_with_filters(chain: Chain, reg: Registries) -> None:
    owner, alice, bob, carol = chain.accounts(4)
    agent_id = reg.register(owner)
    reg.feedback(alice, agent_id, 9977, 2, "uptime", "day")  # 99.77
    reg.feedback(alice, agent_id, 95, 0, "uptime", "week")  # 95
    reg.feedback(bob, agent_id, 8850, 2, "uptime", "day")  # 88.50
    reg.feedback(bob, agent_id, -3, 0, "pnl")  # -3
    reg.feedback(carol, agent_id, 1, 0, "uptime", "day")
    chain.send(reg.rep.revokeFeedback(agent_id, 1), carol)  # not counted
    everyone = [alice.address, bob.address, carol.address]
    summary = reg.rep.getSummary

    # 70.0675 at 0 decimals: two entries at 2 and two at 0 decimals, a tie goes to the fewer
    assert summary(agent_id, everyone, "", "").call() == [4, 70, 0]
    assert summary(agent_id, everyone, "uptime", "").call() == [3, 9442, 2]  # 94.4233...
    assert summary(agent_id, everyone, "uptime", "day").call() == [2, 9413, 2]  # 94.135
    assert summary(agent_id, [bob.address], "pnl", "").call() == [1, -3, 0]
    assert summary(agent_id, [alice.address, bob.address], "", "week").call() == [1, 95, 0]
    assert summary(agent_id, [carol.address], "", "").call() == [0, 0, 0]
    assert summary(agent_id, everyone, "nothing", "").call() == [0, 0, 0]
    reverts(summary(agent_id, [], "", ""), alice, "clientAddresses required")


def test_get_summary_average_rounds_toward_zero(chain: Chain, reg: Registries) -> None:
    owner, alice, bob = chain.accounts(3)
    agent_id = reg.register(owner)
    reg.feedback(alice, agent_id, -5, 1)
    reg.feedback(bob, agent_id, -2, 1)
    reg.feedback(bob, agent_id, 1, 18)
    # (-0.5 - 0.2 + 1e-18) / 3 at 1 decimal: -0.2333.. truncates to -0.2 (-2), not -0.3
    assert reg.rep.getSummary(agent_id, [alice.address, bob.address], "", "").call() == [3, -2, 1]


def test_read_all_feedback_filters_clients_tags_and_revoked(chain: Chain, reg: Registries) -> None:
    owner, alice, bob = chain.accounts(3)
    agent_id = reg.register(owner)
    reg.feedback(alice, agent_id, 1, 0, "a", "x")
    reg.feedback(alice, agent_id, 2, 1, "b", "x")
    reg.feedback(bob, agent_id, 3, 2, "a", "y")
    chain.send(reg.rep.revokeFeedback(agent_id, 1), alice)
    read = reg.rep.readAllFeedback
    a, b = alice.address, bob.address

    assert read(agent_id, [], "", "", False).call() == [
        [a, b], [2, 1], [2, 3], [1, 2], ["b", "a"], ["x", "y"], [False, False]
    ]  # fmt: skip
    assert read(agent_id, [], "", "", True).call()[:2] == [[a, a, b], [1, 2, 1]]
    assert read(agent_id, [], "", "", True).call()[6] == [True, False, False]
    assert read(agent_id, [], "a", "", True).call()[:2] == [[a, b], [1, 1]]
    assert read(agent_id, [b, a], "", "x", True).call()[:2] == [[a, a], [1, 2]]
    assert read(agent_id, [b, a], "", "", True).call()[:2] == [[b, a, a], [1, 1, 2]]
    assert read(agent_id, [owner.address], "", "", True).call() == [[]] * 7


def test_append_response_by_anyone_and_response_counts(chain: Chain, reg: Registries) -> None:
    owner, alice, bob, auditor = chain.accounts(4)
    rep = reg.rep
    agent_id = reg.register(owner)
    for client in (alice, alice, bob):
        reg.feedback(client, agent_id, 1)
    refund = Web3.keccak(text="refund")
    receipt = chain.send(rep.appendResponse(agent_id, alice.address, 2, "ipfs://r", refund), owner)
    assert events(reg.reputation, "ResponseAppended", receipt) == [
        {
            "agentId": agent_id,
            "clientAddress": alice.address,
            "feedbackIndex": 2,
            "responder": owner.address,
            "responseURI": "ipfs://r",
            "responseHash": refund,
        }
    ]
    chain.send(rep.appendResponse(agent_id, alice.address, 2, "ipfs://r2", Z32), owner)
    chain.send(rep.appendResponse(agent_id, alice.address, 1, "ipfs://spam", Z32), auditor)
    chain.send(rep.appendResponse(agent_id, bob.address, 1, "ipfs://spam", Z32), auditor)

    count = rep.getResponseCount
    assert count(agent_id, ZERO, 0, []).call() == 4
    assert count(agent_id, ZERO, 0, [auditor.address]).call() == 2
    assert count(agent_id, alice.address, 0, []).call() == 3
    assert count(agent_id, alice.address, 2, []).call() == 2
    assert count(agent_id, alice.address, 2, [auditor.address]).call() == 0
    assert count(agent_id, bob.address, 1, [owner.address, auditor.address]).call() == 1

    reverts(rep.appendResponse(agent_id, alice.address, 1, "", Z32), owner, "Empty URI")
    reverts(rep.appendResponse(agent_id, alice.address, 0, "u", Z32), owner, "index must be > 0")
    reverts(rep.appendResponse(agent_id, bob.address, 2, "u", Z32), owner, "index out of bounds")


@pytest.mark.parametrize("name", ["ReputationRegistry", "ValidationRegistry"])
def test_registries_need_an_identity_registry(chain: Chain, name: str) -> None:
    artifact = artifacts.load(name)
    factory = chain.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    with pytest.raises(ContractLogicError, match="bad identity"):
        factory.constructor(ZERO).estimate_gas({"from": chain.account().address})


def test_validation_request_only_by_owner_or_operator(chain: Chain, reg: Registries) -> None:
    owner, operator, validator, stranger = chain.accounts(4)
    val = reg.val
    agent_id = reg.register(owner)
    assert val.getIdentityRegistry().call() == reg.identity.address
    assert val.getVersion().call() == "2.0.0"
    chain.send(reg.idf.setApprovalForAll(operator.address, True), owner)
    first, second, third = (Web3.keccak(text=f"req-{i}") for i in range(3))

    receipt = chain.send(
        val.validationRequest(validator.address, agent_id, "ipfs://1", first), owner
    )
    assert events(reg.validation, "ValidationRequest", receipt) == [
        {
            "validatorAddress": validator.address,
            "agentId": agent_id,
            "requestURI": "ipfs://1",
            "requestHash": first,
        }
    ]
    assert val.getValidationStatus(first).call() == [
        validator.address, agent_id, 0, Z32, "", chain.block_time(receipt)
    ]  # fmt: skip
    chain.send(val.validationRequest(validator.address, agent_id, "ipfs://2", second), operator)
    assert val.getAgentValidations(agent_id).call() == [first, second]
    assert val.getValidatorRequests(validator.address).call() == [first, second]
    assert val.getValidatorRequests(owner.address).call() == []

    ask = val.validationRequest
    reverts(ask(validator.address, agent_id, "u", third), stranger, "Not authorized")
    reverts(ask(validator.address, agent_id, "u", first), owner, "exists")
    reverts(ask(ZERO, agent_id, "u", third), owner, "bad validator")
    reverts(ask(validator.address, 99, "u", third), owner, NONEXISTENT_TOKEN)
    reverts(val.getValidationStatus(third), owner, "unknown")


def test_validation_response_only_by_named_validator_within_0_100(
    chain: Chain, reg: Registries
) -> None:
    owner, validator, other = chain.accounts(3)
    val = reg.val
    agent_id = reg.register(owner)
    request = Web3.keccak(text="work")
    chain.send(val.validationRequest(validator.address, agent_id, "ipfs://w", request), owner)
    evidence = Web3.keccak(text="evidence")

    reverts(val.validationResponse(request, 100, "", Z32, ""), other, "not validator")
    reverts(val.validationResponse(request, 100, "", Z32, ""), owner, "not validator")
    reverts(val.validationResponse(request, 101, "", Z32, ""), validator, "resp>100")
    reverts(val.validationResponse(Web3.keccak(text="?"), 1, "", Z32, ""), validator, "unknown")

    soft = val.validationResponse(request, 40, "ipfs://soft", evidence, "soft")
    assert events(reg.validation, "ValidationResponse", chain.send(soft, validator)) == [
        {
            "validatorAddress": validator.address,
            "agentId": agent_id,
            "requestHash": request,
            "response": 40,
            "responseURI": "ipfs://soft",
            "responseHash": evidence,
            "tag": "soft",
        }
    ]
    receipt = chain.send(val.validationResponse(request, 100, "", Z32, "hard"), validator)
    assert val.getValidationStatus(request).call() == [
        validator.address, agent_id, 100, Z32, "hard", chain.block_time(receipt)
    ]  # fmt: skip
    chain.send(val.validationResponse(request, 0, "", Z32, "hard"), validator)
    assert val.getValidationStatus(request).call()[2] == 0


def test_validation_summary_counts_answered_requests_by_validator_and_tag(
    chain: Chain, reg: Registries
) -> None:
    owner, v1, v2 = chain.accounts(3)
    val = reg.val
    agent_id = reg.register(owner)
    plan = [(v1, 100, "hard"), (v1, 55, "soft"), (v2, 80, "hard"), (v2, None, "")]
    for i, (validator, response, tag) in enumerate(plan):
        request = Web3.keccak(text=f"r{i}")
        chain.send(val.validationRequest(validator.address, agent_id, "", request), owner)
        if response is not None:
            chain.send(val.validationResponse(request, response, "", Z32, tag), validator)

    summary = val.getSummary
    assert summary(agent_id, [], "").call() == [3, 78]  # (100 + 55 + 80) // 3, unanswered skipped
    assert summary(agent_id, [v1.address], "").call() == [2, 77]
    assert summary(agent_id, [], "hard").call() == [2, 90]
    assert summary(agent_id, [v2.address, v1.address], "soft").call() == [1, 55]
    assert summary(agent_id, [owner.address], "").call() == [0, 0]
    assert summary(agent_id + 1, [], "").call() == [0, 0]
