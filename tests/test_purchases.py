"""A bot buys another bot's skill (BuyerPurchaseWorkflow) through the real gateway on a real
port: seller checked against ERC-8004, spending policy enforced, paid once, review left."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner
from web3 import Web3

from agentfleet.bots.model import BotKind, BotSpec, BotStatus
from agentfleet.chain import artifacts
from agentfleet.chain.deployment.manifest import Deployment, load_deployment
from agentfleet.payments.purchases import (
    PurchaseRequest,
    PurchaseStatus,
    PurchaseView,
    new_purchase_id,
    purchase_nonce,
)
from agentfleet.settings import Settings
from clients.bots import create_bot
from clients.purchases import start_purchase
from starters.cli.main import app
from starters.http.app import create_app
from starters.stack.devchain import free_port, funded_account, prepare_fleet
from tests.replay import record_history
from tests.test_bot_lifecycle import active_in_table, wait_for
from tests.test_payments import served
from workers.main import running_workers

PRICE = 10_000


@dataclass
class Fleet:
    settings: Settings
    client: Client
    deployment: Deployment
    w3: Web3
    buyer: str
    seller: str

    def contract(self, name: str) -> object:
        return self.w3.eth.contract(
            address=self.deployment.address(name), abi=artifacts.load(name).abi
        )


@pytest_asyncio.fixture(loop_scope="session")
async def fleet(
    dev_env: WorkflowEnvironment,
    dev_client: Client,
    migrated_database_url: str,
    anvil_url: str,
    tmp_path: Path,
) -> AsyncIterator[Fleet]:
    """Workers, the HTTP app on its configured port, and two active forecasters."""
    settings = Settings(
        home=tmp_path,
        database_url=migrated_database_url,
        rpc_url=anvil_url,
        deployer_key=SecretStr(funded_account(anvil_url).key.hex()),
        temporal_address=dev_env.client.service_client.config.target_host,
        http_port=free_port(),
    )
    tag = uuid.uuid4().hex[:6]
    buyer, seller = f"buyer-{tag}", f"seller-{tag}"
    async with running_workers(dev_client, settings):
        await prepare_fleet(dev_client, settings, anvil_url)
        async with served(create_app(settings), settings.http_port):
            for name in (buyer, seller):
                await create_bot(dev_client, BotSpec(name=name, kind=BotKind.FORECASTER))
            for name in (buyer, seller):
                await wait_for(dev_client, name, lambda v: v.status is BotStatus.ACTIVE)
                await active_in_table(settings, name)
            deployment = load_deployment(settings)
            assert deployment is not None
            w3 = Web3(Web3.HTTPProvider(anvil_url))
            yield Fleet(settings, dev_client, deployment, w3, buyer, seller)


async def buy(fleet: Fleet, buyer: str, seller: str, **args: object) -> PurchaseView:
    request = PurchaseRequest(
        purchase_id=new_purchase_id(buyer),
        buyer=buyer,
        seller=seller,
        skill="forecast",
        args=dict(args),
    )
    handle = await start_purchase(fleet.client, request)
    view: PurchaseView = await asyncio.wait_for(handle.result(), timeout=120)
    return view


async def test_a_bot_buys_a_forecast_pays_once_and_leaves_a_review(fleet: Fleet) -> None:
    token = fleet.contract("FleetUSD")
    balance = token.functions.balanceOf  # type: ignore[attr-defined]
    buyer_address, seller_address = _address(fleet, fleet.buyer), _address(fleet, fleet.seller)
    before = balance(buyer_address).call(), balance(seller_address).call()
    view = await buy(fleet, fleet.buyer, fleet.seller, symbol="ETHUSDT")

    assert view.status is PurchaseStatus.DONE, view.reason
    assert view.steps == [
        "discovered",
        "checked",
        "signed",
        "paid",
        "settled",
        "confirmed",
        "reviewed",
    ]
    assert view.result is not None and view.result["bot"] == fleet.seller
    assert view.result["symbol"] == "ETHUSDT"
    assert view.amount == PRICE and view.tx_hash and view.feedback_tx_hash
    settlement = fleet.w3.eth.get_transaction(view.tx_hash)  # sent by the seller's relayer
    assert settlement["to"] == fleet.deployment.address("FleetUSD")
    state = token.functions.authorizationState  # type: ignore[attr-defined]
    from_ = fleet.w3.to_checksum_address(
        fleet.w3.eth.get_transaction_receipt(view.tx_hash)["logs"][0]["topics"][1][-20:]
    )
    assert state(from_, bytes.fromhex(purchase_nonce(view.purchase_id)[2:])).call() is True
    reputation = fleet.contract("ReputationRegistry")
    summary = reputation.functions.getSummary(  # type: ignore[attr-defined]
        _agent_id(fleet, fleet.seller), [from_], "", ""
    ).call()
    assert summary[0] == 1 and summary[1] == 100

    again = await start_purchase(
        fleet.client,
        PurchaseRequest(
            purchase_id=view.purchase_id, buyer=fleet.buyer, seller=fleet.seller, skill="forecast"
        ),
    )
    assert (await again.result()).tx_hash == view.tx_hash, "the same purchase is one payment"
    assert view.pay_to == seller_address
    after = balance(buyer_address).call(), balance(seller_address).call()
    assert after == (before[0] - PRICE, before[1] + PRICE), "paid once, to the seller"
    url = fleet.settings.effective_database_url
    backend = "postgresql" if url.startswith("postgresql") else "sqlite"
    await record_history(again, f"buyer_purchase_{backend}")


async def test_spending_policy_and_unknown_sellers_refuse_before_paying(fleet: Fleet) -> None:
    stingy = f"stingy-{uuid.uuid4().hex[:6]}"
    await create_bot(
        fleet.client,
        BotSpec(
            name=stingy,
            kind=BotKind.FORECASTER,
            params={"spending": {"per_call": "0.001"}},
        ),
    )
    await wait_for(fleet.client, stingy, lambda v: v.status is BotStatus.ACTIVE)
    await active_in_table(fleet.settings, stingy)

    over_limit = await buy(fleet, stingy, fleet.seller)
    no_seller = await buy(fleet, fleet.buyer, "nobody-here")

    assert over_limit.status is PurchaseStatus.REFUSED
    assert "per-call limit of 1000" in (over_limit.reason or "")
    assert over_limit.steps == ["discovered"] and over_limit.tx_hash is None
    assert no_seller.status is PurchaseStatus.REFUSED
    assert "no bot named nobody-here" in (no_seller.reason or "")


def _agent_id(fleet: Fleet, name: str) -> int:
    from agentfleet import db
    from agentfleet.models import BotRecord

    with db.session_scope(fleet.settings.effective_database_url) as session:
        row = session.get(BotRecord, name)
    assert row is not None and row.agent_id is not None
    return row.agent_id


def cli_env(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = fleet.settings
    for name, value in {
        "FLEET_HOME": str(settings.home),
        "FLEET_DATABASE_URL": settings.effective_database_url,
        "FLEET_RPC_URL": settings.effective_rpc_url,
        "FLEET_TEMPORAL_ADDRESS": settings.temporal_address or "",
        "FLEET_HTTP_PORT": str(settings.http_port),
    }.items():
        monkeypatch.setenv(name, value)


async def test_fleet_pay_shows_progress_then_the_ledger_and_skills_list_it(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli_env(fleet, monkeypatch)
    runner = CliRunner()
    paid = await asyncio.to_thread(
        runner.invoke,
        app,
        ["pay", "--from", fleet.buyer, "--to", fleet.seller, "--skill", "forecast", "--json"],
    )
    assert paid.exit_code == 0, paid.stderr
    view = json.loads(paid.stdout)
    assert view["ok"] is True and view["status"] == "done"
    assert view["steps"][-1] == "reviewed"

    listed = runner.invoke(app, ["payments", "list", "--json"])
    assert listed.exit_code == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert (row["buyer"], row["seller"], row["status"]) == (fleet.buyer, fleet.seller, "settled")
    assert row["tx_hash"] == view["tx_hash"]
    shown = await asyncio.to_thread(
        runner.invoke, app, ["payments", "show", row["payment_id"], "--json"]
    )
    assert json.loads(shown.stdout)["ledger"]["payment_id"] == row["payment_id"]

    unknown = runner.invoke(
        app, ["pay", "--from", "nobody", "--to", fleet.seller, "--skill", "forecast"]
    )
    assert unknown.exit_code == 1
    assert unknown.stderr.strip() == "error: no bot named nobody; `fleet bot list` shows the fleet"

    skills = runner.invoke(app, ["skills", "list", "--bot", fleet.seller, "--json"])
    prices = {o["skill"]: o["price_fusd"] for o in json.loads(skills.stdout)}
    assert prices == {
        "forecast": "0.01",
        "status": "0",
        "performance": "0.005",
        "share_pattern": "0.005",
    }


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--params", "{not json"], "--params is not JSON"),
        (["--params", "[1]"], "--params must be a JSON object"),
        (["--skill", "dance"], "unknown skill 'dance'"),
        (["--purchase-id", "Bad Id"], "must match"),
        (["--validator", "UPPER"], "--validator: bot name 'UPPER' must be a slug"),
        ([], "cannot read the bots table: the database has no schema yet; run `fleet up`"),
    ],
)
def test_fleet_pay_refuses_bad_input_in_one_line(
    args: list[str], needle: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEET_HOME", str(tmp_path))
    base = {"--from": "a", "--to": "b", "--skill": "forecast"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = ["pay", *[part for pair in base.items() for part in pair]]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and needle in line, line


async def test_a_delivery_scored_under_the_threshold_is_refunded_by_the_seller(
    fleet: Fleet,
) -> None:
    """ERC-8004 validation: the seller requests it, a validator bot answers (offline scorer:
    90 for a plausible forecast), 90 < 95 -> the seller's wallet pays the buyer back."""
    validator = f"validator-{uuid.uuid4().hex[:6]}"
    await create_bot(fleet.client, BotSpec(name=validator, kind=BotKind.FORECASTER))
    await wait_for(fleet.client, validator, lambda v: v.status is BotStatus.ACTIVE)
    await active_in_table(fleet.settings, validator)
    token = fleet.contract("FleetUSD")
    buyer_address = _address(fleet, fleet.buyer)
    before = token.functions.balanceOf(buyer_address).call()  # type: ignore[attr-defined]

    request = PurchaseRequest(
        purchase_id=new_purchase_id(fleet.buyer),
        buyer=fleet.buyer,
        seller=fleet.seller,
        skill="forecast",
        validator=validator,
        min_score=95,
    )
    handle = await start_purchase(fleet.client, request)
    view: PurchaseView = await asyncio.wait_for(handle.result(), timeout=120)

    assert view.status is PurchaseStatus.REFUNDED, view.reason
    assert view.steps[-3:] == ["validated", "refunded", "reviewed"]
    assert view.validation is not None and view.validation.score == 90
    assert view.validation.scorer == "offline"
    assert token.functions.balanceOf(buyer_address).call() == before  # type: ignore[attr-defined]
    registry = fleet.contract("ValidationRegistry")
    status = registry.functions.getValidationStatus(  # type: ignore[attr-defined]
        bytes.fromhex(view.validation_request_hash[2:])  # type: ignore[index]
    ).call()
    assert status[0] == _address(fleet, validator) and status[2] == 90
    from agentfleet.payments import ledger

    row = ledger.get_payment(fleet.settings.effective_database_url, view.payment_id or "")
    assert row is not None and (row.status, row.refund_tx_hash) == (
        "refunded",
        view.refund_tx_hash,
    )
    url = fleet.settings.effective_database_url
    backend = "postgresql" if url.startswith("postgresql") else "sqlite"
    await record_history(handle, f"buyer_purchase_refunded_{backend}")


def _address(fleet: Fleet, name: str) -> str:
    from agentfleet import db
    from agentfleet.models import BotRecord

    with db.session_scope(fleet.settings.effective_database_url) as session:
        row = session.get(BotRecord, name)
    assert row is not None and row.address is not None
    return row.address


@pytest.mark.parametrize(
    "argv", [["payments", "list"], ["payments", "show", "payment-x"], ["skills", "list"]]
)
def test_ledger_and_skills_without_a_database_say_what_to_do(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEET_HOME", str(tmp_path))
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert "the database has no schema yet; run `fleet up`" in line, line
