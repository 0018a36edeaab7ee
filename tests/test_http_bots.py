"""The HTTP app's bot routes: ERC-8004 registration files, A2A agent cards and the A2A endpoint,
read from real ``bots`` rows (SQLite and PostgreSQL) and a deployment manifest under the home."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from activities.identity import registration_url
from activities.skills import SkillActivities
from agentfleet import db
from agentfleet.bots.cards import REGISTRATION_TYPE
from agentfleet.bots.model import BotKind, BotRef, BotStatus, Skill, SkillCall
from agentfleet.chain.deployment.manifest import MANIFEST_NAME, DeployedContract, Deployment
from agentfleet.models import BotRecord
from agentfleet.settings import Settings
from starters import remote_bot
from starters.http.app import create_app

REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
REMOTE_CARD = "http://127.0.0.1:8999/.well-known/agent-card.json"
HTTP_PORT = 18300


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No FLEET_* variables or .env from the developer's shell leak into the settings."""
    for name in list(os.environ):
        if name.startswith("FLEET_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield


def _bot(name: str, kind: BotKind, status: BotStatus, **fields: Any) -> BotRecord:
    return BotRecord(name=name, kind=kind.value, owner="desk-1", status=status.value, **fields)


def _write_manifest(home: Path) -> None:
    contract = DeployedContract(
        address=REGISTRY, artifact_sha256="00" * 32, tx_hash="0x01", block=1
    )
    deployment = Deployment(
        chain_id=31337,
        network="local",
        deployer="0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        block=1,
        contracts={"IdentityRegistry": contract},
        deployed_at=datetime.now(UTC),
    )
    home.mkdir(parents=True, exist_ok=True)
    (home / MANIFEST_NAME).write_text(deployment.model_dump_json())


@pytest.fixture
def settings(migrated_database_url: str, tmp_path: Path) -> Settings:
    home = tmp_path / "home"
    _write_manifest(home)
    with db.session_scope(migrated_database_url) as session:
        session.add_all(
            [
                _bot(
                    "forecaster-1",
                    BotKind.FORECASTER,
                    BotStatus.ACTIVE,
                    description="Demo forecaster.",
                    params={"symbol": "BTCUSDT", "alpha": 0.2, "prices": {"forecast": "0"}},
                    address="0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
                    agent_id=3,
                ),
                _bot(
                    "forecaster-2",
                    BotKind.FORECASTER,
                    BotStatus.PAUSED,
                    params={"symbol": "ETHUSDT"},
                    agent_id=4,
                ),
                _bot("publisher-1", BotKind.PUBLISHER, BotStatus.REGISTERING),
                _bot(
                    "remote-1",
                    BotKind.REMOTE,
                    BotStatus.ACTIVE,
                    params={"url": REMOTE_CARD, "timeout_s": 5.0},
                    agent_id=5,
                ),
                _bot(
                    "old-1",
                    BotKind.FORECASTER,
                    BotStatus.RETIRED,
                    agent_id=1,
                    reason="retired by operator",
                    retired_at=datetime.now(UTC),
                ),
            ]
        )
    return Settings(home=home, database_url=migrated_database_url, http_port=HTTP_PORT)


@pytest_asyncio.fixture
async def http(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://fleet.test") as client:
        yield client


async def _send(http: httpx.AsyncClient, name: str, skill: str, **args: Any) -> dict[str, Any]:
    body = {
        "jsonrpc": "2.0",
        "id": "req-1",
        "method": "message/send",
        "params": {
            "message": {
                "kind": "message",
                "messageId": "m-1",
                "role": "user",
                "contextId": "ctx-1",
                "parts": [{"kind": "data", "data": {"skill": skill, "args": args}}],
            }
        },
    }
    response = await http.post(f"/bots/{name}/a2a", json=body)
    assert response.status_code == 200, response.text
    reply: dict[str, Any] = response.json()
    assert reply["jsonrpc"] == "2.0"
    assert reply["id"] == "req-1"
    return reply


async def test_registration_file_has_the_erc8004_registration_v1_shape(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    path = registration_url(settings, "forecaster-1").removeprefix(settings.http_url)
    response = await http.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    card = f"{settings.http_url}/bots/forecaster-1/.well-known/agent-card.json"
    assert response.json() == {
        "type": REGISTRATION_TYPE,
        "name": "forecaster-1",
        "description": "Demo forecaster. Automated agent operated by desk-1.",
        "services": [{"name": "A2A", "endpoint": card, "version": "1.0"}],
        "x402Support": True,
        "active": True,
        "registrations": [{"agentId": 3, "agentRegistry": f"eip155:31337:{REGISTRY}"}],
    }
    assert REGISTRATION_TYPE == "https://eips.ethereum.org/EIPS/eip-8004#registration-v1"


async def test_registration_file_says_inactive_once_retired_and_keeps_its_registration(
    http: httpx.AsyncClient,
) -> None:
    retired = (await http.get("/bots/old-1/registration.json")).json()
    assert retired["active"] is False
    assert retired["registrations"] == [{"agentId": 1, "agentRegistry": f"eip155:31337:{REGISTRY}"}]
    assert "agentfleet forecaster bot." in retired["description"]
    paused = (await http.get("/bots/forecaster-2/registration.json")).json()
    assert paused["active"] is True


async def test_registration_file_lists_no_registration_before_the_agent_id_or_a_deployment(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    registering = (await http.get("/bots/publisher-1/registration.json")).json()
    assert registering["registrations"] == []
    (settings.home / MANIFEST_NAME).unlink()
    without_manifest = (await http.get("/bots/forecaster-1/registration.json")).json()
    assert without_manifest["registrations"] == []


async def test_remote_bot_registration_points_at_its_own_agent_card(
    http: httpx.AsyncClient,
) -> None:
    registration = (await http.get("/bots/remote-1/registration.json")).json()
    assert registration["services"] == [{"name": "A2A", "endpoint": REMOTE_CARD}]
    assert registration["registrations"][0]["agentId"] == 5


@pytest.mark.parametrize("name", ["nobody", "Not_A_Slug"])
async def test_unknown_bot_is_a_json_404_on_every_route(http: httpx.AsyncClient, name: str) -> None:
    for response in (
        await http.get(f"/bots/{name}/registration.json"),
        await http.get(f"/bots/{name}/.well-known/agent-card.json"),
        await http.post(f"/bots/{name}/a2a", json={"jsonrpc": "2.0", "id": 1}),
    ):
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/json")
        assert name in response.json()["detail"]


async def test_built_in_bot_card_has_the_reference_remote_bots_fields_and_its_kinds_skills(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    reference_app = remote_bot.create_app("reference")
    transport = httpx.ASGITransport(app=reference_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://remote.test") as other:
        reference = (await other.get("/.well-known/agent-card.json")).json()

    card = (await http.get("/bots/forecaster-1/.well-known/agent-card.json")).json()
    assert set(card) == set(reference)
    assert card["name"] == "forecaster-1"
    endpoint = f"{settings.http_url}/bots/forecaster-1/a2a"
    assert card["supportedInterfaces"] == [
        {"url": endpoint, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
        {"url": endpoint, "protocolBinding": "JSONRPC", "protocolVersion": "0.3"},
    ]
    assert [
        (i["protocolBinding"], i["protocolVersion"]) for i in reference["supportedInterfaces"]
    ] == [
        ("JSONRPC", "1.0"),
        ("JSONRPC", "0.3"),
    ]
    # A2A 0.3 clients read the top-level endpoint fields.
    assert card["protocolVersion"] == reference["protocolVersion"] == "0.3.0"
    assert card["url"] == endpoint
    assert card["preferredTransport"] == "JSONRPC"
    assert "Automated agent operated by desk-1." in card["description"]
    assert [s["id"] for s in card["skills"]] == [
        "forecast",
        "status",
        "performance",
        "share_pattern",
    ]
    [x402] = card["capabilities"]["extensions"]
    offers = x402["params"]["skills"]
    assert set(offers) == {"performance", "share_pattern"}, "forecast is free for this bot"
    assert offers["performance"]["amount"] == "5000"
    assert offers["performance"]["payTo"] == "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    assert offers["performance"]["endpoint"].endswith("/bots/forecaster-1/skills/performance")
    publisher = (await http.get("/bots/publisher-1/.well-known/agent-card.json")).json()
    assert [s["id"] for s in publisher["skills"]] == ["status", "performance"]


async def test_a2a_sends_buyers_of_a_priced_skill_to_its_x402_endpoint(
    http: httpx.AsyncClient,
) -> None:
    refused = await _send(http, "forecaster-1", "performance")
    assert refused["error"]["code"] == -32402
    assert "performance costs 0.005 fUSD: POST http" in refused["error"]["message"]
    assert (
        "/bots/forecaster-1/skills/performance with an x402 payment"
        in (refused["error"]["message"])
    )


async def test_remote_bot_card_redirects_to_its_own_card(http: httpx.AsyncClient) -> None:
    response = await http.get("/bots/remote-1/.well-known/agent-card.json")
    assert response.status_code == 307
    assert response.headers["location"] == REMOTE_CARD
    assert response.json()["agentCard"] == REMOTE_CARD


async def test_a2a_forecast_of_an_active_forecaster_answers_with_a_data_part(
    http: httpx.AsyncClient,
) -> None:
    reply = await _send(http, "forecaster-1", "forecast", symbol="SOLUSDT", horizon="4h")
    result = reply["result"]
    assert result["kind"] == "message"
    assert result["role"] == "agent"
    assert result["contextId"] == "ctx-1"
    [part] = result["parts"]
    forecast = part["data"]
    assert forecast["bot"] == "forecaster-1"
    assert (forecast["symbol"], forecast["horizon"]) == ("SOLUSDT", "4h")
    assert forecast["model"] == "ema(alpha=0.2)"
    assert forecast["synthetic_data"] is True
    assert forecast["disclosure"] == "Automated agent operated by desk-1."


async def test_a2a_paused_bot_answers_status_only(http: httpx.AsyncClient) -> None:
    refused = await _send(http, "forecaster-2", "forecast", symbol="BTCUSDT")
    assert refused["error"]["code"] == -32000
    assert "paused" in refused["error"]["message"]
    status = await _send(http, "forecaster-2", "status")
    assert status["result"]["parts"][0]["data"]["status"] == "paused"


async def test_a2a_refuses_skills_that_change_a_bot_and_remote_bots(
    http: httpx.AsyncClient,
) -> None:
    tune = await _send(http, "forecaster-1", "tune", alpha=0.9)
    assert tune["error"]["code"] == -32602
    assert "forecast, status, performance, share_pattern" in tune["error"]["message"]
    remote = await _send(http, "remote-1", "forecast", symbol="BTCUSDT")
    assert remote["error"]["code"] == -32004
    assert REMOTE_CARD in remote["error"]["message"]
    wrong = await http.post("/bots/forecaster-1/a2a", json={"jsonrpc": "2.0", "id": 7})
    assert wrong.json()["error"]["code"] == -32601
    garbage = await http.post("/bots/forecaster-1/a2a", content=b"{not json")
    assert garbage.json()["error"]["code"] == -32700


async def test_fleets_remote_adapter_can_call_a_built_in_bot_through_its_card(
    settings: Settings,
) -> None:
    """Our cards speak the A2A the remote adapter speaks: a remote bot pointed at a built-in
    bot's card forecasts through it."""
    transport = httpx.ASGITransport(app=create_app(settings))
    client = httpx.AsyncClient(transport=transport)
    adapter = SkillActivities(settings, http=client)
    try:
        # The card is read where it says it lives: its endpoint must be on its own origin.
        card = f"{settings.http_url}/bots/forecaster-1/.well-known/agent-card.json"
        bot = BotRef(
            name="mirror-1",
            kind=BotKind.REMOTE,
            status=BotStatus.ACTIVE,
            params={"url": card, "timeout_s": 5},
        )
        result = await adapter.run_skill(
            SkillCall(bot=bot, skill=Skill.FORECAST, args={"symbol": "BTCUSDT"})
        )
    finally:
        await adapter.close()
    assert result.ok, result.error
    assert result.data["bot"] == "mirror-1"
    assert result.data["remote_name"] == "forecaster-1"
