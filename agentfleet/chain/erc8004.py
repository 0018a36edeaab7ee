"""ERC-8004 ("Trustless Agents") helpers: the agent-wallet proof, signed off-chain with eth-account.

``IdentityRegistry.setAgentWallet(agentId, newWallet, deadline, signature)``
(contracts/src/erc8004, ABI of the reference registries v2.0.0) accepts ``signature`` only if
``newWallet`` signed the EIP-712 struct
``AgentWalletSet(uint256 agentId,address newWallet,address owner,uint256 deadline)`` in the domain
``{name: "ERC8004IdentityRegistry", version: "1", chainId, verifyingContract: registry}``.
``owner`` is the agent's owner when the call runs (a transfer invalidates a pending proof) and
``deadline`` (unix seconds) must be no earlier than the block and at most
:data:`MAX_DEADLINE_DELAY` after it. The same bytes work against the reference deployments.
"""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

__all__ = [
    "AGENT_WALLET_KEY",
    "DOMAIN_NAME",
    "DOMAIN_VERSION",
    "MAX_DEADLINE_DELAY",
    "VERSION",
    "agent_wallet_digest",
    "agent_wallet_typed_data",
    "sign_agent_wallet",
]

DOMAIN_NAME = "ERC8004IdentityRegistry"
DOMAIN_VERSION = "1"
VERSION = "2.0.0"
"""What ``getVersion()`` returns on all three registries."""
AGENT_WALLET_KEY = "agentWallet"
"""Reserved metadata key: only ``setAgentWallet``, ``unsetAgentWallet`` and transfers change it."""
MAX_DEADLINE_DELAY = 300
"""Seconds: a deadline further than this beyond the block timestamp is rejected."""

PrivateKey = str | bytes

_AGENT_WALLET_SET_FIELDS = [
    {"name": "agentId", "type": "uint256"},
    {"name": "newWallet", "type": "address"},
    {"name": "owner", "type": "address"},
    {"name": "deadline", "type": "uint256"},
]


def agent_wallet_typed_data(
    chain_id: int,
    registry: str,
    agent_id: int,
    new_wallet: str,
    owner: str,
    deadline: int,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(domain, types, message)`` for ``Account.sign_typed_data(key, *triple)``.

    ``types`` holds only the primary type ``AgentWalletSet`` (eth-account derives
    ``EIP712Domain`` from ``domain``).
    """
    domain = {
        "name": DOMAIN_NAME,
        "version": DOMAIN_VERSION,
        "chainId": chain_id,
        "verifyingContract": to_checksum_address(registry),
    }
    types = {"AgentWalletSet": list(_AGENT_WALLET_SET_FIELDS)}
    message = {
        "agentId": agent_id,
        "newWallet": to_checksum_address(new_wallet),
        "owner": to_checksum_address(owner),
        "deadline": deadline,
    }
    return domain, types, message


def agent_wallet_digest(
    chain_id: int,
    registry: str,
    agent_id: int,
    new_wallet: str,
    owner: str,
    deadline: int,
) -> bytes:
    """The 32-byte EIP-712 digest the registry checks: what an ERC-1271 wallet is asked about."""
    domain, types, message = agent_wallet_typed_data(
        chain_id, registry, agent_id, new_wallet, owner, deadline
    )
    signable = encode_typed_data(domain_data=domain, message_types=types, message_data=message)
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


def sign_agent_wallet(
    private_key: PrivateKey,
    chain_id: int,
    registry: str,
    agent_id: int,
    owner: str,
    deadline: int,
) -> bytes:
    """The 65-byte ``r ‖ s ‖ v`` proof that the key's address accepts to be the agent's wallet.

    ``newWallet`` is the address of ``private_key``; pass the result as ``signature``.
    """
    new_wallet = Account.from_key(private_key).address
    domain, types, message = agent_wallet_typed_data(
        chain_id, registry, agent_id, new_wallet, owner, deadline
    )
    signed = Account.sign_typed_data(
        private_key, domain_data=domain, message_types=types, message_data=message
    )
    return bytes(signed.signature)
