"""``fleet chain deploy`` / ``fleet chain status``: agentfleet's contracts on an EVM network."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from temporalio.client import Client

from agentfleet.chain import networks
from agentfleet.errors import FleetError
from agentfleet.settings import Settings
from starters.cli.client import run_with_client
from starters.cli.output import JsonOpt, console, emit_json, fail
from starters.cli.settings_arg import load_settings

app = typer.Typer(
    help="The EVM chain: deploy agentfleet's contracts, show addresses and balances.",
    no_args_is_help=True,
)

NetworkOpt = Annotated[
    str | None,
    typer.Option(
        "--network",
        help=f"Chain profile ({', '.join(networks.PROFILES)}); default FLEET_NETWORK.",
        show_default=False,
    ),
]
RpcOpt = Annotated[
    str | None,
    typer.Option(
        "--rpc-url",
        help="JSON-RPC endpoint; default FLEET_RPC_URL, else the local anvil.",
        show_default=False,
    ),
]
DEV_RELAYERS = range(1, 5)


def _relayers(settings: Settings, is_dev: bool) -> list[str]:
    """The relayer accounts in the keystore; before the first `fleet up` on a dev chain, the
    anvil accounts it will use."""
    from sqlalchemy.exc import SQLAlchemyError

    from agentfleet.chain.accounts import dev_account
    from agentfleet.chain.relayers import relayers

    url = settings.effective_database_url
    missing_file = (
        url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists()
    )
    try:
        stored = [] if missing_file else relayers(settings)
    except SQLAlchemyError:
        stored = []
    if not stored and is_dev:
        return [dev_account(i).address for i in DEV_RELAYERS]
    return stored


def _target(
    settings: Settings, network: str | None, rpc_url: str | None
) -> tuple[Settings, networks.ChainProfile]:
    chain = networks.profile(network or settings.network)
    update: dict[str, Any] = {"network": chain.name}
    if rpc_url:
        update["rpc_url"] = rpc_url
    return settings.model_copy(update=update), chain


@app.command("deploy")
def deploy(
    network: NetworkOpt = None,
    rpc_url: RpcOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Deploy again even when the manifest's code is there.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Deploy FleetUSD and the ERC-8004 registries, or reuse a deployment whose code is on chain.

    Writes deployment.json under FLEET_HOME. On a real network the deployer is
    FLEET_DEPLOYER_KEYSTORE (+ FLEET_DEPLOYER_KEYSTORE_PASSWORD) or FLEET_DEPLOYER_KEY, and its
    balance is checked before anything is sent; on local it is anvil's account 0 (or
    FLEET_DEPLOYER_KEY) and the dev accounts receive fUSD. The transactions go through the
    running stack's worker (durable, resumable): start it first with `fleet up` (with
    FLEET_NETWORK set to the network it deploys to).
    """
    from agentfleet.chain.deployment.manifest import (  # web3 loads in ~0.7 s
        CONTRACTS,
        Deployment,
        manifest_path,
    )
    from agentfleet.chain.deployment.plan import DeployResult, prepare
    from clients.deployment import execute

    settings = load_settings(as_json)

    def progress(line: str) -> None:
        if not as_json:
            console.print(f"[dim]·[/] {line}", highlight=False, soft_wrap=True)

    try:
        settings, chain = _target(settings, network, rpc_url)
        began = time.monotonic()
        prepared = prepare(settings, chain, force=force)
        if isinstance(prepared, DeployResult):
            result = prepared
        else:
            plan = prepared
            progress(
                f"deploying from {plan.deployer.address} ({plan.why}) through the stack's "
                "worker: one durable transaction per contract"
            )

            async def send(client: Client) -> Deployment:
                return await execute(client, plan, progress)

            deployed = run_with_client(settings, send)
            result = DeployResult(
                deployed,
                reused=False,
                note=f"deployed {', '.join(CONTRACTS)} on {chain.name} in "
                f"{time.monotonic() - began:.1f} s",
            )
    except FleetError as exc:
        fail(str(exc), exc.exit_code, as_json=as_json)
    if as_json:
        emit_json(
            {
                "ok": True,
                "reused": result.reused,
                "manifest": str(manifest_path(settings)),
                **result.deployment.model_dump(mode="json"),
            }
        )
        return
    console.print(result.note, highlight=False, soft_wrap=True)


@app.command("status")
def status(network: NetworkOpt = None, rpc_url: RpcOpt = None, as_json: JsonOpt = False) -> None:
    """Network, contracts (is their code there?) and deployer / relayer balances.

    Exit 1 when there is no deployment or a contract has no code.
    """
    settings = load_settings(as_json)
    try:
        settings, chain = _target(settings, network, rpc_url)
        data = _status(settings, chain)
    except FleetError as exc:
        fail(str(exc), exc.exit_code, as_json=as_json)
    if as_json:
        emit_json(data)
    else:
        _print_status(data)
    if not data["ok"]:
        raise typer.Exit(1)


def _status(settings: Settings, chain: networks.ChainProfile) -> dict[str, Any]:
    from agentfleet.chain import artifacts
    from agentfleet.chain.deployment.deployer import deployer_address
    from agentfleet.chain.deployment.manifest import (
        CONTRACTS,
        check_deployment,
        load_deployment,
        manifest_path,
    )
    from agentfleet.chain.deployment.plan import connect, format_units

    w3 = connect(settings, chain)
    chain_id = networks.expected_chain_id(settings, chain)
    path = manifest_path(settings)
    manifest = load_deployment(settings)
    contracts: dict[str, dict[str, Any]] = {}
    fusd = None
    if manifest is not None:
        check = check_deployment(w3, manifest, chain_id)
        for name in CONTRACTS:
            entry = manifest.contracts.get(name)
            contracts[name] = {
                "address": entry.address if entry else None,
                "code": name not in check.without_code,
                "artifact_current": name not in check.without_code + check.rebuilt,
            }
        if contracts["FleetUSD"]["code"]:
            fusd = w3.eth.contract(
                address=w3.to_checksum_address(manifest.address("FleetUSD")),
                abi=artifacts.load("FleetUSD").abi,
            )
    accounts: list[tuple[str, str]] = []
    deployer = deployer_address(settings, chain)
    if deployer is not None:
        accounts.append(("deployer", deployer))
    accounts += [("relayer", address) for address in _relayers(settings, chain.is_dev)]
    balances = []
    for role, address in accounts:
        checksum = w3.to_checksum_address(address)
        units = None if fusd is None else int(fusd.functions.balanceOf(checksum).call())
        balances.append(
            {
                "role": role,
                "address": checksum,
                "native": format_units(int(w3.eth.get_balance(checksum)), 18),
                "fusd": None if units is None else format_units(units),
            }
        )
    return {
        "ok": manifest is not None and all(c["code"] for c in contracts.values()),
        "network": chain.name,
        "chain_id": chain_id,
        "caip2": f"eip155:{chain_id}",
        "rpc_url": networks.display_url(networks.rpc_url(settings, chain)),
        "latest_block": int(w3.eth.block_number),
        "confirmations": networks.effective_confirmations(settings, chain),
        "native_symbol": chain.native_symbol,
        "manifest": str(path),
        "deployment": None
        if manifest is None
        else {
            "deployer": manifest.deployer,
            "block": manifest.block,
            "deployed_at": manifest.deployed_at.isoformat(),
            "contracts": contracts,
        },
        "accounts": balances,
    }


def _print_status(data: dict[str, Any]) -> None:
    console.print(
        f"[bold]{data['network']}[/] chain {data['chain_id']} at {data['rpc_url']}, "
        f"block {data['latest_block']}, {data['confirmations']} confirmations",
        highlight=False,
        soft_wrap=True,
    )
    if data["deployment"] is None:
        console.print(
            f"no deployment in {data['manifest']}; run `fleet chain deploy --network "
            f"{data['network']}`",
            highlight=False,
            soft_wrap=True,
        )
    else:
        table = Table(box=None, header_style="bold")
        table.add_column("contract")
        table.add_column("address", no_wrap=True, min_width=42)
        table.add_column("code")
        for name, entry in data["deployment"]["contracts"].items():
            code = "yes" if entry["code"] else "[red]no[/]"
            if entry["code"] and not entry["artifact_current"]:
                code += " (rebuilt since)"
            table.add_row(name, entry["address"] or "", code)
        console.print(table)
    table = Table(box=None, header_style="bold")
    table.add_column("account")
    table.add_column("address", no_wrap=True, min_width=42)
    table.add_column(data["native_symbol"], justify="right")
    table.add_column("fUSD", justify="right")
    for account in data["accounts"]:
        native = f"{Decimal(account['native']):.4f}".rstrip("0").rstrip(".")
        table.add_row(account["role"], account["address"], native, account["fusd"] or "-")
    console.print(table)
