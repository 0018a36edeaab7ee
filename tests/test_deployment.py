"""Contract deployment and ``fleet chain``: real anvil, real transactions through the durable
path (an in-process worker on the session's dev server), the manifest on disk.

On the session's shared anvil every test deploys from a fresh funded key (FLEET_DEPLOYER_KEY), so
anvil's account 0, which other tests may use, keeps its nonce; the default deployer (account 0)
runs on private anvils.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from eth_account import Account
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner
from web3 import Web3

from agentfleet import db, taskqueues
from agentfleet.chain import artifacts, networks
from agentfleet.chain.accounts import dev_account
from agentfleet.chain.deployment.deployer import keep_deployer_key
from agentfleet.chain.deployment.manifest import CONTRACTS, has_code, load_deployment
from agentfleet.chain.deployment.plan import PENDING_NAME, DeploymentPlan, prepare
from agentfleet.errors import FleetError
from agentfleet.messages import TxRequest, TxStatus
from agentfleet.settings import Settings
from clients import deployment as deploying
from clients.transactions import send_transaction
from starters.cli.main import app
from starters.stack.devchain import free_port, start_anvil
from workers.main import running_workers

QUEUES = (taskqueues.WORKFLOWS, taskqueues.CHAIN)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def private_anvil() -> Iterator[str]:
    proc, url = start_anvil()
    yield url
    stop(proc)


def funded_key(url: str, wei: int = 10**21) -> str:
    account = Account.create()
    Web3(Web3.HTTPProvider(url)).provider.make_request(
        "anvil_setBalance",  # type: ignore[arg-type]
        [account.address, hex(wei)],
    )
    return Web3.to_hex(account.key)


def nonce_of(url: str, key: str) -> int:
    w3 = Web3(Web3.HTTPProvider(url))
    return int(w3.eth.get_transaction_count(Account.from_key(key).address))


def migrated(settings: Settings) -> Settings:
    """The keystore (where the deployer's key waits for the worker) lives in the database."""
    db.upgrade_database(settings.effective_database_url)
    return settings


@pytest.fixture
def settings(tmp_path: Path, anvil_url: str) -> Iterator[Settings]:
    home = tmp_path / "home"
    yield migrated(Settings(home=home, rpc_url=anvil_url, deployer_key=funded_key(anvil_url)))
    db.dispose_engine(f"sqlite:///{home / 'fleet.db'}")


@asynccontextmanager
async def worker_for(client: Client, settings: Settings) -> AsyncIterator[None]:
    """What `fleet up` runs: a worker for the workflow and chain queues, on ``settings``."""
    async with running_workers(client, settings, QUEUES):
        yield


async def ensure_deployed(client: Client, settings: Settings) -> str:
    async with worker_for(client, settings):
        return await deploying.ensure_deployed(client, settings)


@pytest.fixture
def cli_env(
    tmp_path: Path, anvil_url: str, dev_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """FLEET_* for CLI runs: a private home, the shared anvil, the session's dev server, a fresh
    funded deployer."""
    monkeypatch.chdir(tmp_path)
    for name in ("FLEET_NETWORK", "FLEET_CONFIRMATIONS", "FLEET_DEPLOYER_KEYSTORE"):
        monkeypatch.delenv(name, raising=False)
    env = {
        "FLEET_HOME": str(tmp_path / "home"),
        "FLEET_RPC_URL": anvil_url,
        "FLEET_DEPLOYER_KEY": funded_key(anvil_url),
        "FLEET_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def assert_one_line_error(result: object, *needles: str) -> str:
    exit_code = result.exit_code  # type: ignore[attr-defined]
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert exit_code == 1, (exit_code, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), lines
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_profiles_are_known_by_name_and_bad_names_list_the_valid_ones() -> None:
    assert [networks.profile(n).chain_id for n in ("local", "polygon", "amoy", "fuji")] == [
        31337,
        137,
        80002,
        43113,
    ]
    assert networks.profile("Amoy").caip2 == "eip155:80002"
    assert all(p.gas.bump_percent >= 10 for p in networks.PROFILES.values())
    assert networks.profile("local").confirmations == 0 and networks.profile("local").is_dev
    with pytest.raises(FleetError, match=r"unknown network 'nosuch'; choose one of: local, "):
        networks.profile("nosuch")
    assert networks.effective_confirmations(Settings(network="polygon")) == 64
    assert networks.effective_confirmations(Settings(network="polygon", confirmations=3)) == 3


async def test_deploy_writes_manifest_puts_code_on_chain_and_funds_dev_accounts(
    dev_client: Client, settings: Settings
) -> None:
    note = await ensure_deployed(dev_client, settings)

    assert note is not None and note.startswith("deployed FleetUSD"), note
    manifest = json.loads((settings.home / "deployment.json").read_text())
    assert manifest["chain_id"] == 31337 and manifest["network"] == "local"
    assert (
        manifest["deployer"] == Account.from_key(settings.deployer_key.get_secret_value()).address
    )  # type: ignore[union-attr]
    assert set(manifest["contracts"]) == set(CONTRACTS)
    w3 = Web3(Web3.HTTPProvider(settings.rpc_url))
    for name, entry in manifest["contracts"].items():
        runtime = Web3.to_bytes(hexstr=artifacts.load(name).deployed_bytecode)
        assert len(w3.eth.get_code(entry["address"])) == len(runtime) > 0
        assert entry["artifact_sha256"] == artifacts.load(name).sha256
        assert w3.eth.get_transaction_receipt(entry["tx_hash"])["blockNumber"] == entry["block"]
    loaded = load_deployment(settings)
    assert loaded is not None and loaded.address("IdentityRegistry") == Web3.to_checksum_address(
        manifest["contracts"]["IdentityRegistry"]["address"]
    )
    reputation = w3.eth.contract(
        address=loaded.address("ReputationRegistry"),
        abi=artifacts.load("ReputationRegistry").abi,
    )
    assert reputation.functions.getIdentityRegistry().call() == loaded.address("IdentityRegistry")
    fusd = w3.eth.contract(address=loaded.address("FleetUSD"), abi=artifacts.load("FleetUSD").abi)
    assert fusd.functions.decimals().call() == 6
    for index in range(10):
        balance = fusd.functions.balanceOf(dev_account(index).address).call()
        assert balance == 1_000_000 * 10**6


async def test_second_ensure_reuses_the_manifest_without_sending_transactions(
    dev_client: Client, settings: Settings
) -> None:
    await ensure_deployed(dev_client, settings)
    key = settings.deployer_key.get_secret_value()  # type: ignore[union-attr]
    manifest = (settings.home / "deployment.json").read_bytes()
    nonce = nonce_of(settings.effective_rpc_url, key)

    note = await ensure_deployed(dev_client, settings)

    assert note is not None and note.startswith("contracts reused from"), note
    assert nonce_of(settings.effective_rpc_url, key) == nonce
    assert (settings.home / "deployment.json").read_bytes() == manifest


async def test_chain_reset_under_the_manifest_redeploys(dev_client: Client, tmp_path: Path) -> None:
    """A new chain on the same port (anvil-state.json deleted): the manifest's addresses have no
    code, so everything is deployed again from anvil's account 0, whose relayer entity (ahead of
    the new chain) reads its nonce again."""
    settings_port = free_port()
    proc, url = start_anvil(port=settings_port)
    settings = migrated(Settings(home=tmp_path, rpc_url=url))
    try:
        first = await ensure_deployed(dev_client, settings)
        assert first is not None and first.startswith("deployed"), first
    finally:
        stop(proc)
    before = json.loads((tmp_path / "deployment.json").read_text())

    proc, url = start_anvil(port=settings_port)
    try:
        w3 = Web3(Web3.HTTPProvider(url))
        assert w3.eth.get_code(before["contracts"]["FleetUSD"]["address"]) == b""
        note = await ensure_deployed(dev_client, settings)
        assert note is not None and "no code at FleetUSD" in note, note
        assert w3.eth.get_transaction_count(dev_account(0).address) == 4 + 10
        after = load_deployment(settings)
        assert after is not None and after.deployed_at.isoformat() != before["deployed_at"]
        assert all(has_code(w3, c.address) for c in after.contracts.values())
    finally:
        stop(proc)


async def test_an_interrupted_deploy_run_again_sends_only_what_is_missing(
    dev_client: Client, settings: Settings
) -> None:
    """The first run got as far as creating FleetUSD (its TransactionWorkflow finished) and then
    died: the rerun reuses the attempt id from deployment.pending.json, so FleetUSD's request
    returns the same outcome and the deployer spends 4 + 10 nonces, not 15."""
    plan = prepare(settings)
    assert isinstance(plan, DeploymentPlan)
    assert (settings.home / PENDING_NAME).exists()
    key = settings.deployer_key.get_secret_value()  # type: ignore[union-attr]
    keep_deployer_key(settings, Account.from_key(key))
    first = plan.steps[0]
    assert first.name == "FleetUSD"
    async with worker_for(dev_client, settings):
        early = await send_transaction(
            dev_client,
            chain_id=plan.chain_id,
            sender=plan.deployer.address,
            request=TxRequest(
                request_id=f"deploy-{plan.attempt}-FleetUSD", data=first.data, gas_limit=first.gas
            ),
            reorg_window_s=0,
        )
    assert early.status is TxStatus.CONFIRMED

    await ensure_deployed(dev_client, settings)

    done = load_deployment(settings)
    assert done is not None and done.contracts["FleetUSD"].tx_hash == early.tx_hash
    assert nonce_of(settings.effective_rpc_url, key) == 4 + 10
    assert not (settings.home / PENDING_NAME).exists()


async def test_manifest_pointing_at_an_address_without_code_is_redeployed(
    dev_client: Client, settings: Settings
) -> None:
    await ensure_deployed(dev_client, settings)
    path = settings.home / "deployment.json"
    manifest = json.loads(path.read_text())
    manifest["contracts"]["ValidationRegistry"]["address"] = Account.create().address
    path.write_text(json.dumps(manifest))

    note = await ensure_deployed(dev_client, settings)

    assert note is not None and "no code at ValidationRegistry" in note, note
    redeployed = load_deployment(settings)
    assert redeployed is not None
    w3 = Web3(Web3.HTTPProvider(settings.rpc_url))
    assert all(has_code(w3, c.address) for c in redeployed.contracts.values())
    assert redeployed.address("FleetUSD") != manifest["contracts"]["FleetUSD"]["address"]


async def test_rebuilt_artifact_redeploys_on_the_dev_chain(
    dev_client: Client, settings: Settings
) -> None:
    await ensure_deployed(dev_client, settings)
    path = settings.home / "deployment.json"
    manifest = json.loads(path.read_text())
    manifest["contracts"]["IdentityRegistry"]["artifact_sha256"] = "0" * 64
    path.write_text(json.dumps(manifest))

    note = await ensure_deployed(dev_client, settings)

    assert note is not None and "IdentityRegistry rebuilt since" in note, note


async def test_chain_status_json_lists_contracts_with_code_and_balances(
    dev_client: Client, cli_env: dict[str, str]
) -> None:
    runner = CliRunner()
    stack = migrated(Settings(home=Path(cli_env["FLEET_HOME"]), rpc_url=cli_env["FLEET_RPC_URL"]))
    async with worker_for(dev_client, stack):
        deployed = await asyncio.to_thread(runner.invoke, app, ["chain", "deploy", "--json"])
    assert deployed.exit_code == 0, deployed.output
    report = json.loads(deployed.stdout)
    assert report["ok"] is True and report["reused"] is False
    again = runner.invoke(app, ["chain", "deploy", "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout)["reused"] is True

    result = runner.invoke(app, ["chain", "status", "--json"])

    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["ok"] is True
    assert (status["network"], status["chain_id"], status["caip2"]) == (
        "local",
        31337,
        "eip155:31337",
    )
    assert status["latest_block"] >= report["block"]
    contracts = status["deployment"]["contracts"]
    assert set(contracts) == set(CONTRACTS)
    for name, entry in contracts.items():
        assert entry == {
            "address": report["contracts"][name]["address"],
            "code": True,
            "artifact_current": True,
        }
    deployer = Account.from_key(cli_env["FLEET_DEPLOYER_KEY"]).address
    roles = [(a["role"], a["address"]) for a in status["accounts"]]
    assert roles == [("deployer", deployer)] + [
        ("relayer", dev_account(i).address) for i in range(1, 5)
    ]
    assert all(a["fusd"] == "1000000" for a in status["accounts"][1:])
    assert status["accounts"][0]["fusd"] == "0"
    assert float(status["accounts"][0]["native"]) > 0


def test_chain_status_without_a_deployment_exits_1(cli_env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["chain", "status", "--json"])

    assert result.exit_code == 1
    status = json.loads(result.stdout)
    assert status["ok"] is False and status["deployment"] is None


def test_deploy_to_an_unknown_network_is_one_line(cli_env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["chain", "deploy", "--network", "nosuch"])

    line = assert_one_line_error(result, "unknown network 'nosuch'")
    assert "local, polygon, amoy, fuji" in line
    assert not (Path(cli_env["FLEET_HOME"]) / "deployment.json").exists()


def test_deploy_to_an_unreachable_rpc_is_one_line(cli_env: dict[str, str]) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v2/secret-api-key"
    result = CliRunner().invoke(app, ["chain", "deploy", "--rpc-url", dead])

    line = assert_one_line_error(result, "cannot reach the local RPC at http://127.0.0.1:")
    assert "secret-api-key" not in result.output + result.stderr, line
    assert not (Path(cli_env["FLEET_HOME"]) / "deployment.json").exists()


def test_rpc_of_another_chain_is_refused(cli_env: dict[str, str], anvil_url: str) -> None:
    result = CliRunner().invoke(app, ["chain", "deploy", "--network", "amoy"])

    assert_one_line_error(result, "serves chain 31337, but network amoy is chain 80002")


def test_deployer_without_gas_deploys_nothing(
    cli_env: dict[str, str], anvil_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    broke = Web3.to_hex(Account.create().key)
    monkeypatch.setenv("FLEET_DEPLOYER_KEY", broke)
    w3 = Web3(Web3.HTTPProvider(anvil_url))
    block = w3.eth.block_number

    result = CliRunner().invoke(app, ["chain", "deploy", "--network", "local", "--json"])

    line = assert_one_line_error(result, "has 0 ETH on local, but deploying needs up to")
    assert json.loads(result.stdout) == {"ok": False, "error": line.removeprefix("error: ")}
    assert broke.removeprefix("0x") not in result.output + result.stderr
    assert nonce_of(anvil_url, broke) == 0
    assert w3.eth.block_number == block
    assert not (Path(cli_env["FLEET_HOME"]) / "deployment.json").exists()


def test_bad_deployer_key_is_one_line_and_not_echoed(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEET_DEPLOYER_KEY", "0xdeadbeef1234")

    result = CliRunner().invoke(app, ["chain", "deploy"])

    assert_one_line_error(result, "FLEET_DEPLOYER_KEY is not a valid private key")
    assert "deadbeef1234" not in result.output + result.stderr


async def test_real_network_deploys_from_a_keystore_waits_for_confirmations_and_mints_nothing(
    dev_client: Client, tmp_path: Path
) -> None:
    """An anvil posing as Amoy (chain id 80002, a block every 0.2 s): `fleet up`'s hook does not
    deploy there (it says to run `fleet chain deploy`), the deploy does, and then the hook
    reuses it."""
    proc, url = start_anvil("--chain-id", "80002", "--block-time", "0.2")
    try:
        key = funded_key(url)
        keystore = tmp_path / "deployer.json"
        keystore.write_text(json.dumps(Account.encrypt(key, "pw", kdf="pbkdf2", iterations=1000)))
        settings = migrated(
            Settings(
                home=tmp_path / "home",
                network="amoy",
                keystore_secret=SecretStr("ab" * 32),
                rpc_url=url,
                deployer_keystore=keystore,
                deployer_keystore_password=SecretStr("pw"),
            )
        )
        note = await ensure_deployed(dev_client, settings)
        assert "run `fleet chain deploy --network amoy` while the stack runs" in note, note

        wrong = settings.model_copy(update={"deployer_keystore_password": SecretStr("nope")})
        with pytest.raises(FleetError, match="cannot decrypt FLEET_DEPLOYER_KEYSTORE"):
            prepare(wrong)

        async with worker_for(dev_client, settings):
            result = await deploying.ensure(dev_client, settings)

        assert not result.reused and result.deployment.network == "amoy"
        assert result.deployment.deployer == Account.from_key(key).address
        w3 = Web3(Web3.HTTPProvider(url))
        assert w3.eth.block_number - result.deployment.block >= 5
        assert nonce_of(url, key) == 4
        assert not (settings.home / PENDING_NAME).exists()
        note = await ensure_deployed(dev_client, settings)
        assert note.startswith("contracts reused"), note
        local = Settings(home=tmp_path / "home", rpc_url=url, chain_id=80002)
        with pytest.raises(FleetError, match="records the amoy deployment"):
            prepare(local, networks.profile("local"), force=True)
    finally:
        stop(proc)
