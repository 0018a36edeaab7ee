"""Deploying, first half: everything that can be refused before a transaction is sent (RPC,
chain id, deployer key, balance), checked without Temporal, and the plan that
:func:`clients.deployment.execute` sends."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from pydantic import BaseModel, ValidationError
from web3 import Web3
from web3.types import Nonce
from web3.utils import get_create_address

from agentfleet.chain import artifacts
from agentfleet.chain.deployment.deployer import deployer_account
from agentfleet.chain.deployment.manifest import (
    CONTRACTS,
    Deployment,
    check_deployment,
    manifest_path,
    read_manifest,
    write_atomic,
)
from agentfleet.chain.networks import (
    ChainProfile,
    active_profile,
    display_url,
    expected_chain_id,
    profile,
    rpc_url,
)
from agentfleet.errors import FleetError, first_line
from agentfleet.settings import Settings

PENDING_NAME = "deployment.pending.json"
FUSD_DECIMALS = 6
DEV_FUNDED_ACCOUNTS = 10
DEV_FUSD_EACH = 1_000_000 * 10**FUSD_DECIMALS
DEV_FUSD_HUMAN = f"{DEV_FUSD_EACH // 10**FUSD_DECIMALS:,}"
GAS_MARGIN_PERCENT = 20
MINT_GAS_ALLOWANCE = 120_000
RPC_TIMEOUT_S = 10.0
GWEI = 10**9

Progress = Callable[[str], None]


@dataclass(frozen=True)
class DeployResult:
    deployment: Deployment
    reused: bool
    note: str


def connect(settings: Settings, chain: ChainProfile | None = None) -> Web3:
    """A web3 client for ``chain`` whose RPC answers with the expected chain id, or FleetError."""
    chain = chain or active_profile(settings)
    url = rpc_url(settings, chain)
    w3 = Web3(
        Web3.HTTPProvider(
            url, request_kwargs={"timeout": RPC_TIMEOUT_S}, exception_retry_configuration=None
        )
    )
    try:
        actual = int(w3.eth.chain_id)
    except Exception as exc:
        hint = "; start it with `fleet up`" if chain.is_dev and not settings.rpc_url else ""
        raise FleetError(
            f"cannot reach the {chain.name} RPC at {display_url(url)} ({type(exc).__name__}){hint}"
        ) from None
    expected = expected_chain_id(settings, chain)
    if actual != expected:
        raise FleetError(
            f"the RPC at {display_url(url)} serves chain {actual}, but network {chain.name} is "
            f"chain {expected}; check --network, --rpc-url and FLEET_RPC_URL"
        )
    return w3


@dataclass
class _Step:
    name: str
    data: str
    gas: int
    address: str


@dataclass(frozen=True)
class DeploymentPlan:
    """What :func:`clients.deployment.execute` sends: checked against the chain and the
    deployer's balance, so a plan that exists can be paid for. Holds the deployer's key only in
    memory (never in a payload: the worker loads it from the keystore)."""

    settings: Settings
    chain: ChainProfile
    chain_id: int
    deployer: LocalAccount
    steps: list[_Step]
    why: str
    attempt: str


class PendingAttempt(BaseModel):
    """``deployment.pending.json``: an unfinished deployment whose transactions a rerun reuses
    (their request ids include ``attempt``), so a crash mid-deploy never deploys twice."""

    attempt: str
    chain_id: int
    deployer: str
    genesis: str


def prepare(
    settings: Settings,
    chain: ChainProfile | None = None,
    *,
    force: bool = False,
    allow_deploy: bool = True,
) -> DeployResult | DeploymentPlan:
    """Everything that can be refused before a transaction is sent (no Temporal needed): the
    manifest is reused when its code is on chain (and, on a dev chain, built from today's
    artifacts); else a plan is returned, unless ``allow_deploy`` is False (then FleetError)."""
    chain = chain or active_profile(settings)
    settings = settings.model_copy(update={"network": chain.name})
    w3 = connect(settings, chain)
    chain_id = expected_chain_id(settings, chain)
    path = manifest_path(settings)
    existing = read_manifest(path, strict=False)
    why = "no manifest yet"
    if existing is not None and not force:
        check = check_deployment(w3, existing, chain_id)
        if check.current or (check.usable and not chain.is_dev):
            note = f"contracts reused from {path} (deployed in block {existing.block})"
            if check.rebuilt:
                rebuilt = ", ".join(check.rebuilt)
                note += f"; {rebuilt} rebuilt since (`fleet chain deploy --force` replaces them)"
            return DeployResult(existing, reused=True, note=note)
        why = check.reason()
    elif force:
        why = "--force"
    if not allow_deploy:
        raise FleetError(
            f"no usable deployment for {chain.name} in {path} ({why}); "
            f"run `fleet chain deploy --network {chain.name}` while the stack runs"
        )
    if (
        existing is not None
        and not _is_dev_network(existing)
        and (existing.network, existing.chain_id) != (chain.name, chain_id)
    ):
        raise FleetError(
            f"{path} records the {existing.network} deployment (chain {existing.chain_id}); "
            "use another FLEET_HOME for this network"
        )
    deployer = deployer_account(settings, chain)
    sender = deployer.address
    nonce = int(w3.eth.get_transaction_count(sender, "pending"))
    steps = _plan(w3, sender, nonce)
    priority, max_fee = _fees(w3, chain)
    total_gas = sum(step.gas for step in steps)
    if chain.is_dev:
        total_gas += DEV_FUNDED_ACCOUNTS * MINT_GAS_ALLOWANCE
    cost = total_gas * max_fee
    balance = int(w3.eth.get_balance(sender))
    if balance < cost:
        raise FleetError(
            f"deployer {sender} has {format_units(balance, 18)} {chain.native_symbol} on "
            f"{chain.name}, but deploying needs up to {format_units(cost, 18)} "
            f"{chain.native_symbol} ({total_gas:,} gas at {format_units(max_fee, 9)} gwei); "
            "fund it and retry"
        )
    genesis = Web3.to_hex(w3.eth.get_block(0)["hash"])
    attempt = _attempt(settings, chain_id, sender, genesis)
    return DeploymentPlan(settings, chain, chain_id, deployer, steps, why, attempt)


def _attempt(settings: Settings, chain_id: int, deployer: str, genesis: str) -> str:
    """The unfinished attempt of this deployer on this chain, or a new one (written down before
    anything is sent)."""
    path = settings.home / PENDING_NAME
    try:
        pending = PendingAttempt.model_validate_json(path.read_bytes())
    except (OSError, ValidationError):
        pending = None
    if pending is not None and (pending.chain_id, pending.deployer, pending.genesis) == (
        chain_id,
        deployer,
        genesis,
    ):
        return pending.attempt
    fresh = PendingAttempt(
        attempt=uuid.uuid4().hex[:12], chain_id=chain_id, deployer=deployer, genesis=genesis
    )
    write_atomic(path, fresh.model_dump_json(indent=2) + "\n")
    return fresh.attempt


def _is_dev_network(deployment: Deployment) -> bool:
    try:
        return profile(deployment.network).is_dev
    except FleetError:
        return False


def _plan(w3: Web3, sender: ChecksumAddress, nonce: int) -> list[_Step]:
    """Constructor data and gas of each contract; addresses follow from the deployer's nonces,
    so the registries that need the identity registry's address get it before it exists."""
    identity = get_create_address(sender, Nonce(nonce + 1))
    args: dict[str, tuple[Any, ...]] = {
        "FleetUSD": (sender,),
        "IdentityRegistry": (),
        "ReputationRegistry": (identity,),
        "ValidationRegistry": (identity,),
    }
    steps: list[_Step] = []
    for offset, name in enumerate(CONTRACTS):
        artifact = artifacts.load(name)
        factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        data = factory.constructor(*args[name]).data_in_transaction
        try:
            estimate = int(w3.eth.estimate_gas({"from": sender, "data": data}))
        except Exception as exc:
            raise FleetError(
                f"estimating the gas to deploy {name} failed: {first_line(exc)}"
            ) from None
        steps.append(
            _Step(
                name=name,
                data=data,
                gas=_padded(estimate),
                address=get_create_address(sender, Nonce(nonce + offset)),
            )
        )
    return steps


def _fees(w3: Web3, chain: ChainProfile) -> tuple[int, int]:
    """(priority fee, max fee) in wei within the profile's cap; FleetError when the base fee
    alone already exceeds it."""
    block = w3.eth.get_block("latest")
    base = int(block.get("baseFeePerGas", 0) or 0)
    cap = int(chain.gas.max_fee_gwei * GWEI)
    priority = int(chain.gas.priority_fee_gwei * GWEI)
    if base + priority > cap:
        raise FleetError(
            f"the {chain.name} base fee is {format_units(base, 9)} gwei, above the cap of "
            f"{chain.gas.max_fee_gwei:g} gwei (with a {chain.gas.priority_fee_gwei:g} gwei tip); "
            "try again when gas is cheaper"
        )
    return priority, min(2 * base + priority, cap)


def _padded(gas: int) -> int:
    return gas * (100 + GAS_MARGIN_PERCENT) // 100


def format_units(value: int, decimals: int = FUSD_DECIMALS) -> str:
    """An exact decimal string of an integer amount (``"1000000"`` for 10**12 at 6 decimals)."""
    whole, fraction = divmod(abs(value), 10**decimals)
    sign = "-" if value < 0 else ""
    digits = str(fraction).rjust(decimals, "0").rstrip("0") if decimals else ""
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"
