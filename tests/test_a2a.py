"""A2A 1.0 and 0.3 at every bot's endpoint: the official ``a2a-sdk`` client (unchanged) reads a
forecaster's card and talks to it in text; 0.3-shaped requests are still answered; the
``A2A-Version`` and ``A2A-Extensions`` headers; what a stranger's malformed request gets; the
remote-bot adapter calls bots that speak either version."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from a2a.client import A2AClientError, ClientConfig, ClientFactory, create_client
from a2a.client.card_resolver import A2ACardResolver, parse_agent_card
from a2a.compat.v0_3 import types as v03
from a2a.helpers.proto_helpers import get_message_text, new_text_message
from a2a.types.a2a_pb2 import GetTaskRequest, Role, SendMessageRequest, StreamResponse
from a2a.utils.errors import TaskNotFoundError
from google.protobuf.json_format import MessageToDict

from activities.skills import SkillActivities
from agentfleet import db
from agentfleet.bots.cards import SKILL_WORDS, skill_request, symbol_in
from agentfleet.bots.model import BotKind, BotRef, BotStatus, Skill, SkillCall
from agentfleet.models import BotRecord
from agentfleet.payments.terms import A2A_X402_EXTENSION, A2A_X402_EXTENSIONS
from agentfleet.settings import Settings
from starters import remote_bot
from starters.http.app import create_app
from starters.stack.devchain import free_port

BASE = "http://fleet.test"
SELLER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


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


@pytest.fixture
def settings(migrated_database_url: str, tmp_path: Path) -> Settings:
    """A priced forecaster (forecast 0.01 fUSD), one that forecasts for free, a publisher that
    sells nothing, and an agent bot; Temporal points at a port where nothing listens."""
    with db.session_scope(migrated_database_url) as session:
        session.add_all(
            [
                _bot(
                    "forecaster-1",
                    BotKind.FORECASTER,
                    BotStatus.ACTIVE,
                    params={"symbol": "BTCUSDT"},
                    address=SELLER,
                ),
                _bot(
                    "free-1",
                    BotKind.FORECASTER,
                    BotStatus.ACTIVE,
                    params={"symbol": "ETHUSDT", "alpha": 0.2, "prices": {"forecast": "0"}},
                    address=SELLER,
                ),
                _bot(
                    "publisher-1",
                    BotKind.PUBLISHER,
                    BotStatus.ACTIVE,
                    params={"prices": {"performance": "0"}},
                ),
                _bot("analyst-1", BotKind.AGENT, BotStatus.ACTIVE, params={}),
            ]
        )
    return Settings(
        home=tmp_path / "home",
        database_url=migrated_database_url,
        temporal_address=f"127.0.0.1:{free_port()}",
    )


@pytest_asyncio.fixture
async def http(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield client


def _text_request(method: str, text: str, **message: Any) -> dict[str, Any]:
    if method == "message/send":
        parts: list[dict[str, Any]] = [{"kind": "text", "text": text}]
        fields = {"kind": "message", "role": "user", "messageId": "m-1", "parts": parts}
    else:
        fields = {"role": "ROLE_USER", "messageId": "m-1", "parts": [{"text": text}]}
    params = {"message": {**fields, **message}}
    return {"jsonrpc": "2.0", "id": "req-1", "method": method, "params": params}


async def _rpc(
    http: httpx.AsyncClient, name: str, body: Any, **headers: str
) -> tuple[httpx.Response, dict[str, Any]]:
    response = await http.post(f"/bots/{name}/a2a", json=body, headers=headers)
    assert response.status_code == 200, response.text
    reply: dict[str, Any] = response.json()
    assert reply["jsonrpc"] == "2.0"
    return response, reply


async def _official_send(client: Any, text: str) -> StreamResponse:
    message = new_text_message(text, role=Role.ROLE_USER)
    [event] = [e async for e in client.send_message(SendMessageRequest(message=message))]
    assert isinstance(event, StreamResponse)
    return event


async def test_the_official_client_reads_a_forecasters_card_and_asks_in_text(
    http: httpx.AsyncClient,
) -> None:
    sent: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request)

    http.event_hooks["request"].append(record)
    config = ClientConfig(httpx_client=http, streaming=False)
    card = await A2ACardResolver(http, f"{BASE}/bots/forecaster-1").get_agent_card()
    client = ClientFactory(config).create(card)
    assert card.name == "forecaster-1"
    assert [(i.protocol_binding, i.protocol_version) for i in card.supported_interfaces] == [
        ("JSONRPC", "1.0"),
        ("JSONRPC", "0.3"),
    ]
    assert [s.id for s in card.skills] == ["forecast", "status", "performance", "share_pattern"]
    [x402] = card.capabilities.extensions
    assert x402.uri == A2A_X402_EXTENSION
    assert MessageToDict(x402.params)["skills"]["forecast"]["amount"] == "10000"

    status = await _official_send(client, "status please")
    assert status.HasField("message")
    assert status.message.role == Role.ROLE_AGENT
    assert get_message_text(status.message).startswith("status: ")
    data = MessageToDict(status.message.parts[1].data)
    assert (data["bot"], data["status"]) == ("forecaster-1", "active")

    with pytest.raises(A2AClientError) as priced:
        await _official_send(client, "forecast BTC")
    assert "-32402" in str(priced.value)
    assert "forecast costs 0.01 fUSD: POST http" in str(priced.value)
    assert "/bots/forecaster-1/skills/forecast with an x402 payment" in str(priced.value)

    rpc = [json.loads(r.content) for r in sent if r.method == "POST"]
    assert [body["method"] for body in rpc] == ["SendMessage", "SendMessage"]
    assert all(r.headers["A2A-Version"] == "1.0" for r in sent if r.method == "POST")
    await client.close()


async def test_the_official_client_gets_a_free_forecast_and_offers_for_unclear_text(
    http: httpx.AsyncClient,
) -> None:
    config = ClientConfig(httpx_client=http, streaming=False)
    client = await create_client(f"{BASE}/bots/free-1", client_config=config)
    forecast = await _official_send(client, "Please forecast sol for the next 4 hours")
    text = get_message_text(forecast.message)
    assert text.startswith("free-1 forecasts SOLUSDT 4h ahead: ")
    assert "synthetic data" in text and "Automated agent operated by desk-1." in text
    data = MessageToDict(forecast.message.parts[1].data)
    assert (data["symbol"], data["horizon"], data["model"]) == ("SOLUSDT", "4h", "ema(alpha=0.2)")

    offers = get_message_text((await _official_send(client, "hello, who are you?")).message)
    assert offers.startswith("free-1 offers: forecast (free); status (free); ")
    assert "performance (0.005 fUSD, bought at POST http" in offers
    assert '(e.g. "forecast BTC")' in offers

    with pytest.raises(TaskNotFoundError, match="free-1 answers at once"):
        await client.get_task(GetTaskRequest(id="agent-free-1-abc123"))
    await client.close()


async def test_the_official_client_speaks_0_3_to_a_card_that_lists_0_3_only(
    http: httpx.AsyncClient,
) -> None:
    """Its compatibility layer (``message/send``, ``A2A-Version: 0.3``) against our endpoint,
    and against the reference remote bot publishing a card as A2A 0.3 wrote it."""
    sent: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request)

    http.event_hooks["request"].append(record)
    card = (await http.get("/bots/free-1/.well-known/agent-card.json")).json()
    legacy = {k: v for k, v in card.items() if k != "supportedInterfaces"}
    config = ClientConfig(httpx_client=http, streaming=False)
    client = ClientFactory(config).create(parse_agent_card(legacy))
    answer = await _official_send(client, "status")
    assert MessageToDict(answer.message.parts[1].data)["bot"] == "free-1"
    [posted] = [r for r in sent if r.method == "POST"]
    assert json.loads(posted.content)["method"] == "message/send"
    assert posted.headers["A2A-Version"] == "0.3"

    reference = remote_bot.create_app("ref-1", a2a_version="0.3")
    transport = httpx.ASGITransport(app=reference)
    async with httpx.AsyncClient(transport=transport, base_url="http://remote.test") as other:
        raw = (await other.get("/.well-known/agent-card.json")).json()
        assert "supportedInterfaces" not in raw and raw["protocolVersion"] == "0.3.0"
        config = ClientConfig(httpx_client=other, streaming=False)
        remote = await create_client("http://remote.test", client_config=config)
        reply = await _official_send(remote, "forecast ETH 4h")
        assert get_message_text(reply.message).startswith("ref-1 forecasts ETHUSDT 4h ahead")
        await remote.close()
    await client.close()


async def test_0_3_shaped_requests_are_answered_in_0_3(http: httpx.AsyncClient) -> None:
    response, reply = await _rpc(
        http, "free-1", _text_request("message/send", "status", contextId="ctx-9")
    )
    assert response.headers["A2A-Version"] == "0.3"
    result = reply["result"]
    assert (result["kind"], result["role"], result["contextId"]) == ("message", "agent", "ctx-9")
    assert [p["kind"] for p in result["parts"]] == ["text", "data"]
    assert result["parts"][1]["data"]["bot"] == "free-1"
    assert isinstance(v03.SendMessageResponse.model_validate(reply).root.result, v03.Message)
    card = (await http.get("/bots/free-1/.well-known/agent-card.json")).json()
    legacy = v03.AgentCard.model_validate(card)
    assert (legacy.url, legacy.protocol_version) == (card["url"], "0.3.0")

    data_part = {"kind": "data", "data": {"skill": "forecast", "args": {"symbol": "BTCUSDT"}}}
    body = _text_request("message/send", "")
    body["params"]["message"]["parts"] = [data_part]
    _, reply = await _rpc(http, "free-1", body)
    [part] = reply["result"]["parts"]
    assert part == {"kind": "data", "data": part["data"]} and part["data"]["symbol"] == "BTCUSDT"

    _, missing = await _rpc(
        http,
        "free-1",
        {"jsonrpc": "2.0", "id": 2, "method": "tasks/get", "params": {"id": "nope"}},
    )
    assert missing["id"] == 2 and missing["error"]["code"] == -32001


async def test_1_0_requests_are_answered_in_1_0_with_parts_by_member(
    http: httpx.AsyncClient,
) -> None:
    response, reply = await _rpc(
        http, "free-1", _text_request("SendMessage", "predict btc, 1h"), **{"A2A-Version": "1.0"}
    )
    assert response.headers["A2A-Version"] == "1.0"
    message = reply["result"]["message"]
    assert message["role"] == "ROLE_AGENT" and "kind" not in message
    text, data = message["parts"]
    assert text["mediaType"] == "text/plain" and text["text"].startswith("free-1 forecasts")
    assert data["mediaType"] == "application/json"
    assert (data["data"]["symbol"], data["data"]["horizon"]) == ("BTCUSDT", "1h")


async def test_a2a_version_header_is_honoured_and_an_unknown_version_refused(
    http: httpx.AsyncClient,
) -> None:
    patch, ok = await _rpc(
        http, "free-1", _text_request("SendMessage", "status"), **{"A2A-Version": "1.0.1"}
    )
    assert "result" in ok and patch.headers["A2A-Version"] == "1.0"
    _, legacy = await _rpc(
        http, "free-1", _text_request("message/send", "status"), **{"A2A-Version": "0.3"}
    )
    assert legacy["result"]["kind"] == "message"

    for asked in ("2.0", "0.2", "latest"):
        response, refused = await _rpc(
            http, "free-1", _text_request("SendMessage", "status"), **{"A2A-Version": asked}
        )
        assert refused["id"] == "req-1"
        assert refused["error"]["code"] == -32009, refused
        assert f"A2A version {asked!r} is not supported" in refused["error"]["message"]
        assert "speaks A2A 1.0 and 0.3" in refused["error"]["message"]
        assert response.headers["A2A-Version"] == "1.0"

    _, headless = await _rpc(http, "free-1", _text_request("SendMessage", "status"))
    assert headless["error"]["code"] == -32009
    assert "SendMessage is an A2A 1.0 method" in headless["error"]["message"]
    assert "send A2A-Version: 1.0" in headless["error"]["message"]
    _, crossed = await _rpc(
        http, "free-1", _text_request("message/send", "status"), **{"A2A-Version": "1.0"}
    )
    assert crossed["error"]["code"] == -32009
    assert "message/send is an A2A 0.3 method" in crossed["error"]["message"]


async def test_requested_extensions_the_bot_declares_are_activated_and_echoed(
    http: httpx.AsyncClient,
) -> None:
    unknown = "https://example.com/ext/konami/v1"
    asked = {"A2A-Version": "1.0", "A2A-Extensions": f"{unknown}, {A2A_X402_EXTENSION}"}
    response, _ = await _rpc(http, "forecaster-1", _text_request("SendMessage", "status"), **asked)
    assert response.headers["A2A-Extensions"] == A2A_X402_EXTENSION
    legacy = {"X-A2A-Extensions": A2A_X402_EXTENSIONS[1]}
    response, _ = await _rpc(http, "forecaster-1", _text_request("message/send", "hi"), **legacy)
    assert response.headers["X-A2A-Extensions"] == A2A_X402_EXTENSIONS[1]
    assert "A2A-Extensions" not in response.headers
    sells_nothing, _ = await _rpc(
        http, "publisher-1", _text_request("SendMessage", "status"), **asked
    )
    assert "A2A-Extensions" not in sells_nothing.headers
    card = (await http.get("/bots/publisher-1/.well-known/agent-card.json")).json()
    assert "extensions" not in card["capabilities"]


async def test_a_strangers_malformed_requests_get_clear_errors_and_start_nothing(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    """Every malformed request to an agent bot is refused before a run could start; a
    well-formed one would try to reach Temporal (here: nothing listens there)."""
    v1 = {"A2A-Version": "1.0"}

    async def refused(body: bytes | Any, **headers: str) -> dict[str, Any]:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"content-type": "application/json", **headers}
        response = await http.post("/bots/analyst-1/a2a", content=content, headers=headers)
        assert response.status_code == 200, response.text
        error: dict[str, Any] = response.json()["error"]
        assert error["code"] != -32603, error
        return error

    assert (await refused(b"{not json"))["code"] == -32700
    assert (await refused(b"\xff\xfe"))["code"] == -32700
    assert (await refused(b"[" * 30_000 + b"]" * 30_000))["code"] in (-32600, -32700)
    assert (await refused([_text_request("SendMessage", "hi")], **v1))["code"] == -32600
    assert (await refused({"jsonrpc": "1.0", "method": "SendMessage"}, **v1))["code"] == -32600
    bad_id = {**_text_request("SendMessage", "hi"), "id": {"x": 1}}
    assert (await refused(bad_id, **v1))["code"] == -32600
    no_method = {"jsonrpc": "2.0", "id": 7}
    assert (await refused(no_method))["code"] == -32601
    unknown = await refused({"jsonrpc": "2.0", "id": 1, "method": "rm -rf"}, **v1)
    assert unknown["code"] == -32601
    assert unknown["message"] == "method not found: 'rm -rf' (A2A 1.0: SendMessage, GetTask)"
    stream = await refused({**_text_request("SendStreamingMessage", "hi")}, **v1)
    assert stream["code"] == -32004 and "streaming is not offered" in stream["message"]
    push = {"jsonrpc": "2.0", "id": 1, "method": "CreateTaskPushNotificationConfig"}
    assert (await refused(push, **v1))["code"] == -32003
    cases: list[tuple[Any, str]] = [
        ("a string", "params must be an object"),
        ({}, "params.message must be a message object"),
        ({"message": {"role": "ROLE_USER", "parts": []}}, "the message needs parts"),
        ({"message": {"parts": ["text"]}}, "each part must be an object"),
        ({"message": {"parts": [{"url": "http://x"}]}}, "needs a text part or a data part"),
        ({"message": {"parts": [{"data": [1, 2]}]}}, "needs a data part {skill, args}"),
        ({"message": {"parts": [{"data": {"skill": "status", "args": 3}}]}}, "args must be"),
        ({"message": {"parts": [{"text": "x" * 4001}]}}, "the text is 4001 characters"),
        ({"message": {"messageId": "m-2", "parts": [{"text": "   "}]}}, "text is empty"),
        ({"message": {"parts": [{"text": "What is the BTC outlook?"}]}}, "needs a messageId"),
    ]
    for params, says in cases:
        body = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": params}
        error = await refused(body, **v1)
        assert error["code"] == -32602 and says in error["message"], (params, error)
    assert (await refused({"jsonrpc": "2.0", "id": 1, "method": "GetTask"}, **v1))["code"] == -32602
    not_a_run = {"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "../etc"}}
    assert (await refused(not_a_run, **v1))["code"] == -32001

    huge = await http.post(
        "/bots/analyst-1/a2a",
        content=b'{"text": "' + b"x" * (settings.http_max_body_bytes + 1) + b'"}',
        headers={"content-type": "application/json", **v1},
    )
    assert huge.status_code == 413, huge.text

    _, would_start = await _rpc(
        http, "analyst-1", _text_request("SendMessage", "What is the BTC outlook?"), **v1
    )
    assert would_start["error"]["code"] == -32603
    assert would_start["error"]["message"].startswith("agent runs are unavailable: cannot reach")


async def test_an_agent_bots_card_offers_a_text_ask_and_its_data_skills_still_answer(
    http: httpx.AsyncClient,
) -> None:
    card = (await http.get("/bots/analyst-1/.well-known/agent-card.json")).json()
    assert [s["id"] for s in card["skills"]] == ["ask", "status", "performance"]
    assert card["skills"][0]["inputModes"] == ["text/plain"]
    body = _text_request("message/send", "")
    body["params"]["message"]["parts"] = [{"kind": "data", "data": {"skill": "status"}}]
    _, reply = await _rpc(http, "analyst-1", body)
    assert reply["result"]["parts"][0]["data"]["kind"] == "agent"


def test_skills_and_symbols_are_read_from_text() -> None:
    words = {s.value: w for s, w in SKILL_WORDS.items()}
    assert skill_request("forecast BTC", words) == ("forecast", {"symbol": "BTCUSDT"})
    assert skill_request("What's the ETH/USDT outlook over 1 day?", words) == (
        "forecast",
        {"symbol": "ETHUSDT", "horizon": "1d"},
    )
    assert skill_request("status please", words) == ("status", {})
    assert skill_request("how was your accuracy the last 7 days", words) == (
        "performance",
        {"window": "7d"},
    )
    assert skill_request("share_pattern for PEPEUSDT", words) == (
        "share_pattern",
        {"symbol": "PEPEUSDT"},
    )
    assert skill_request("forecast the near term", words) == ("forecast", {})
    assert skill_request("hello there", words) is None
    assert skill_request("forecast BTC", {"status": ("status",)}) is None
    assert symbol_in("link me to NEAR") == "NEARUSDT"
    assert symbol_in("usdt") is None and symbol_in("solusdt") == "SOLUSDT"


@pytest.mark.parametrize("card_version", ["1.0", "0.3"])
async def test_the_remote_adapter_calls_a_bot_whichever_a2a_version_its_card_speaks(
    card_version: str, tmp_path: Path
) -> None:
    sent: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request)

    reference = remote_bot.create_app("ref-1", a2a_version=card_version)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=reference), event_hooks={"request": [record]}
    )
    adapter = SkillActivities(Settings(database_url="sqlite://", home=tmp_path), http=client)
    bot = BotRef(
        name="r1",
        kind=BotKind.REMOTE,
        status=BotStatus.ACTIVE,
        params={"url": "http://127.0.0.1:8999", "timeout_s": 5},
    )
    try:
        call = SkillCall(bot=bot, skill=Skill.FORECAST, args={"symbol": "ETHUSDT"})
        result = await adapter.run_skill(call)
    finally:
        await adapter.close()
    assert result.ok, result.error
    assert (result.data["bot"], result.data["remote_name"]) == ("r1", "ref-1")
    [posted] = [r for r in sent if r.method == "POST"]
    method = {"1.0": "SendMessage", "0.3": "message/send"}[card_version]
    assert json.loads(posted.content)["method"] == method
    assert posted.headers["A2A-Version"] == card_version
