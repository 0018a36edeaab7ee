"""Deploying agentfleet's contracts through the durable path: :func:`execute` sends a plan made
by :func:`agentfleet.chain.deployment.plan.prepare` as TransactionWorkflows from the deployer's
relayer entity and writes the manifest; :func:`ensure` is prepare-then-execute;
:func:`ensure_deployed` is ``fleet up``'s hook."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client
from web3 import Web3
from web3.types import Nonce
from web3.utils import get_create_address

from agentfleet.chain import artifacts
from agentfleet.chain.accounts import dev_account
from agentfleet.chain.deployment.deployer import keep_deployer_key
from agentfleet.chain.deployment.manifest import (
    CONTRACTS,
    DeployedContract,
    Deployment,
    has_code,
    manifest_path,
    write_atomic,
)
from agentfleet.chain.deployment.plan import (
    DEV_FUNDED_ACCOUNTS,
    DEV_FUSD_EACH,
    DEV_FUSD_HUMAN,
    PENDING_NAME,
    DeploymentPlan,
    DeployResult,
    Progress,
    connect,
    prepare,
)
from agentfleet.chain.networks import ChainProfile, active_profile, effective_confirmations
from agentfleet.errors import FleetError
from agentfleet.messages import TxOutcome, TxRequest, TxStatus
from agentfleet.settings import Settings
from clients.transactions import resync_relayer, send_transaction


async def execute(
    client: Client, plan: DeploymentPlan, progress: Progress | None = None
) -> Deployment:
    """Send the plan through the durable path (a TransactionWorkflow per contract and mint, all
    from the deployer's relayer entity), wait for the profile's confirmations, check the code is
    there, write the manifest. The stack's worker must serve the plan's chain."""
    report = progress or (lambda _line: None)
    settings, chain, chain_id = plan.settings, plan.chain, plan.chain_id
    sender = str(plan.deployer.address)
    await asyncio.to_thread(keep_deployer_key, settings, plan.deployer)
    # The sync web3 client stays off the event loop: workers may share it (tests, benchmarks).
    w3 = await asyncio.to_thread(connect, settings, chain)
    if chain.is_dev:
        chain_nonce = int(
            await asyncio.to_thread(w3.eth.get_transaction_count, plan.deployer.address, "pending")
        )
        if await resync_relayer(client, chain_id, sender, chain_nonce):
            report(f"relayer of {sender} disagreed with the chain (reset?); nonce re-read")
    confirmations = effective_confirmations(settings, chain)
    steps = {step.name: step for step in plan.steps}
    encoder = Web3()

    async def send(what: str, to: str | None, data: str, gas: int | None) -> TxOutcome:
        outcome = await send_transaction(
            client,
            chain_id=chain_id,
            sender=sender,
            request=TxRequest(
                request_id=f"deploy-{plan.attempt}-{what}", to=to, data=data, gas_limit=gas
            ),
            confirmations=confirmations,
            policy=chain.gas,
            reorg_window_s=0,
        )
        if outcome.status is not TxStatus.CONFIRMED or outcome.nonce is None:
            reason = outcome.error or f"its outcome is {outcome.status.value}"
            raise FleetError(f"{what}: {reason.splitlines()[0]}; run the deploy again")
        return outcome

    async def create(name: str, *args: Any) -> DeployedContract:
        step = steps[name]
        artifact = artifacts.load(name)
        factory = encoder.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        data = factory.constructor(*args).data_in_transaction if args else step.data
        outcome = await send(name, None, data, step.gas)
        address = get_create_address(plan.deployer.address, Nonce(outcome.nonce or 0))
        report(f"{name} deployed at {address} (block {outcome.block_number})")
        return DeployedContract(
            address=address,
            artifact_sha256=artifact.sha256,
            tx_hash=outcome.tx_hash or "",
            block=outcome.block_number or 0,
        )

    token, identity = await asyncio.gather(create("FleetUSD", sender), create("IdentityRegistry"))
    reputation, validation = await asyncio.gather(
        create("ReputationRegistry", identity.address),
        create("ValidationRegistry", identity.address),
    )
    contracts = {
        "FleetUSD": token,
        "IdentityRegistry": identity,
        "ReputationRegistry": reputation,
        "ValidationRegistry": validation,
    }
    if chain.is_dev:
        fusd = encoder.eth.contract(abi=artifacts.load("FleetUSD").abi)
        await asyncio.gather(
            *(
                send(
                    f"mint-{index}",
                    token.address,
                    fusd.encode_abi("mint", args=[dev_account(index).address, DEV_FUSD_EACH]),
                    None,
                )
                for index in range(DEV_FUNDED_ACCOUNTS)
            )
        )
        report(f"minted {DEV_FUSD_HUMAN} fUSD to each of dev accounts 0..{DEV_FUNDED_ACCOUNTS - 1}")
    for name, entry in contracts.items():
        if not await asyncio.to_thread(has_code, w3, entry.address):
            raise FleetError(
                f"{name} has no code at {entry.address} after {confirmations} confirmations "
                "(a reorg?); run the deploy again"
            )
    deployment = Deployment(
        chain_id=chain_id,
        network=chain.name,
        deployer=sender,
        block=max(c.block for c in contracts.values()),
        contracts=contracts,
        deployed_at=datetime.now(UTC),
    )
    path = manifest_path(settings)
    write_atomic(path, deployment.model_dump_json(indent=2) + "\n")
    (settings.home / PENDING_NAME).unlink(missing_ok=True)
    report(f"wrote {path}")
    return deployment


async def ensure(
    client: Client,
    settings: Settings,
    chain: ChainProfile | None = None,
    *,
    force: bool = False,
    allow_deploy: bool = True,
    progress: Progress | None = None,
) -> DeployResult:
    """:func:`prepare`, then :func:`execute` when there is something to deploy."""
    began = time.monotonic()
    prepared = prepare(settings, chain, force=force, allow_deploy=allow_deploy)
    if isinstance(prepared, DeployResult):
        return prepared
    deployment = await execute(client, prepared, progress)
    note = f"deployed {', '.join(CONTRACTS)} in {time.monotonic() - began:.1f} s ({prepared.why})"
    if prepared.chain.is_dev:
        note += f"; {DEV_FUNDED_ACCOUNTS} dev accounts hold {DEV_FUSD_HUMAN} fUSD"
    return DeployResult(deployment, reused=False, note=note)


async def ensure_deployed(client: Client, settings: Settings) -> str:
    """``fleet up``'s hook (after the worker is up): reuse or deploy on the local chain; on a real
    network only say whether ``fleet chain deploy`` is still to be run."""
    chain = active_profile(settings)
    try:
        return (await ensure(client, settings, chain, allow_deploy=chain.is_dev)).note
    except FleetError as exc:
        if chain.is_dev:
            raise
        return exc.message
