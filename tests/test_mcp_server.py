"""The fleet's MCP server end to end: an MCP client from the `mcp` package connects over
streamable HTTP, lists the tools, calls a free skill, and pays a priced one with x402 as its MCP
transport says, through the real gateway, payment saga, relayer and anvil. A replayed payment
pays nothing more; bad input gets one line and changes nothing."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest_asyncio
import uvicorn
from eth_account.signers.local import LocalAccount
from mcp import Client
from mcp.types import CallToolResult, TextContent
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from x402 import x402Client
from x402.mcp import x402MCPClient
from x402.mcp.utils import convert_mcp_result, extract_payment_required_from_result
from x402.mechanisms.evm.exact import ExactEvmClientScheme

from agentfleet.chain.accounts import dev_account
from agentfleet.payments.terms import SELLABLE
from agentfleet.settings import Settings
from starters.http.app import create_app as create_gateway
from starters.mcp.server import PATH, create_app
from starters.mcp.tools import SKILL_TOOLS
from starters.stack.devchain import free_port
from tests.test_payments import PRICE, Market, market, payment_header, served

__all__ = ["market"]


@dataclass
class Fleet:
    """The market's gateway on a real port, and the MCP server in front of it."""

    market: Market
    url: str

    def client(self, mode: str = "auto") -> Client:
        """An MCP client; ``mode="legacy"`` speaks the handshake-era protocol (initialize)."""
        return Client(self.url, read_timeout_seconds=90, mode=mode)

    def ledger_rows(self) -> int:
        return len(self.market.ledger())


@asynccontextmanager
async def serving(app: Any, port: int) -> AsyncIterator[None]:
    """``app`` on a loopback port with its lifespan (the MCP session manager runs in it)."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    for _ in range(250):
        if server.started:
            break
        await asyncio.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        await task


@pytest_asyncio.fixture(loop_scope="session")
async def fleet(market: Market) -> AsyncIterator[Fleet]:
    gateway_port, mcp_port = free_port(), free_port()
    settings = market.settings.model_copy(update={"http_port": gateway_port})
    async with served(market.app, gateway_port), serving(create_app(settings), mcp_port):
        yield Fleet(market, f"http://127.0.0.1:{mcp_port}{PATH}")


async def mcp_status(url: str, bot: str) -> dict[str, Any]:
    """``bot``'s status through the MCP server at ``url`` (``fleet up``'s, in tests/test_stack)."""
    async with Client(url, read_timeout_seconds=30) as client:
        result = await client.call_tool("status", {"bot": bot})
    assert not result.is_error, result.content
    status: dict[str, Any] = result.structured_content
    return status


def text_of(result: CallToolResult) -> str:
    [content] = result.content
    assert isinstance(content, TextContent)
    return content.text


async def payment_for(fleet: Fleet, buyer: LocalAccount) -> tuple[dict[str, Any], str]:
    """(a PaymentPayload for the seller's forecast, signed by ``buyer`` as the paid HTTP route's
    tests sign it; its nonce), from the requirements the MCP server answered."""
    async with fleet.client() as client:
        unpaid = await client.call_tool("forecast", {"bot": fleet.market.seller})
    [accepted] = unpaid.structured_content["accepts"]
    header, nonce = payment_header(buyer, accepted)
    payload: dict[str, Any] = json.loads(base64.b64decode(header))
    return payload, nonce


def test_every_skill_a_kind_sells_is_a_tool() -> None:
    sold = {skill.value for skills in SELLABLE.values() for skill in skills}
    assert sold == set(SKILL_TOOLS)


async def test_a_client_lists_typed_tools_and_the_bots_with_their_prices(fleet: Fleet) -> None:
    async with fleet.client() as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        bots = await client.call_tool("list_bots", {})
        assert client.protocol_version in MODERN_PROTOCOL_VERSIONS

    assert set(tools) == {
        "list_bots",
        "forecast",
        "status",
        "performance",
        "share_pattern",
        "payment_status",
    }
    forecast = tools["forecast"].input_schema
    assert forecast["required"] == ["bot"]
    assert forecast["properties"]["horizon"]["pattern"] == "^[1-9][0-9]*[mhd]$"
    assert "x402/payment" in (tools["forecast"].description or "")
    assert not bots.is_error
    [seller] = [b for b in bots.structured_content["bots"] if b["name"] == fleet.market.seller]
    assert seller["selling"] is True
    assert seller["prices_fusd"] == {
        "forecast": "0.01",
        "status": "0",
        "performance": "0.005",
        "share_pattern": "0.005",
    }


async def test_a_free_tool_answers_at_once_without_payment(fleet: Fleet) -> None:
    async with fleet.client() as client:
        result = await client.call_tool("status", {"bot": fleet.market.seller})

    assert not result.is_error, text_of(result)
    status = result.structured_content
    assert (status["bot"], status["status"]) == (fleet.market.seller, "active")
    assert json.loads(text_of(result)) == result.structured_content
    assert result.meta is None or "x402/payment-response" not in result.meta
    assert fleet.ledger_rows() == 0


async def test_a_priced_tool_without_payment_answers_the_x402_payment_required(
    fleet: Fleet,
) -> None:
    async with fleet.client() as client:
        result = await client.call_tool("forecast", {"bot": fleet.market.seller})

    assert result.is_error
    required = result.structured_content
    assert json.loads(text_of(result)) == required
    [accepted] = required["accepts"]
    assert required["x402Version"] == 2
    assert (accepted["scheme"], accepted["network"]) == ("exact", "eip155:31337")
    assert accepted["amount"] == str(PRICE)
    assert accepted["payTo"] == fleet.market.seller_address
    assert accepted["asset"] == fleet.market.token.address
    assert required["resource"]["url"].endswith(fleet.market.path)
    # The x402 SDK's own MCP helpers read it as a PaymentRequired, from either field.
    wire = SimpleNamespace(**result.model_dump(by_alias=True, mode="json"))
    parsed = extract_payment_required_from_result(convert_mcp_result(wire))
    assert parsed is not None and parsed.accepts[0].amount == str(PRICE)
    assert fleet.ledger_rows() == 0


async def test_a_paid_call_answers_with_its_settlement_and_a_replay_pays_nothing_more(
    fleet: Fleet,
) -> None:
    market, buyer = fleet.market, dev_account(8)
    before_buyer = market.balance(buyer.address)
    before_seller = market.balance(market.seller_address)
    payment, nonce = await payment_for(fleet, buyer)
    args = {"bot": market.seller, "symbol": "ETHUSDT", "horizon": "4h"}

    async with fleet.client() as client:
        paid = await client.call_tool("forecast", args, meta={"x402/payment": payment})
        replayed = await client.call_tool("forecast", args, meta={"x402/payment": payment})

    assert not paid.is_error, text_of(paid)
    forecast = paid.structured_content
    assert (forecast["bot"], forecast["symbol"], forecast["horizon"]) == (
        market.seller,
        "ETHUSDT",
        "4h",
    )
    assert paid.meta is not None
    settled = paid.meta["x402/payment-response"]
    assert settled["success"] is True and settled["payer"] == buyer.address
    assert settled["network"] == "eip155:31337"
    assert market.w3.eth.get_transaction_receipt(settled["transaction"])["status"] == 1

    assert replayed.is_error
    assert "settled once" in text_of(replayed) and "\n" not in text_of(replayed)
    assert replayed.meta is not None
    assert replayed.meta["x402/payment-response"]["transaction"] == settled["transaction"]

    assert market.balance(buyer.address) == before_buyer - PRICE
    assert market.balance(market.seller_address) == before_seller + PRICE
    assert market.used(buyer.address, nonce)
    [row] = market.ledger()
    assert (row.status, row.tx_hash, row.payer) == (
        "settled",
        settled["transaction"],
        buyer.address,
    )


async def test_a_payment_still_settling_answers_pending_and_payment_status_reads_it(
    fleet: Fleet,
) -> None:
    """A gateway that waits 1 ms for the saga answers 202: the tool says pending (never pay
    again) with the payment's id and token, and payment_status follows it to the result."""
    market, buyer = fleet.market, dev_account(5)
    before = market.balance(buyer.address)
    payment, _ = await payment_for(fleet, buyer)
    hurried = market.settings.model_copy(update={"payment_wait_s": 0.001, "http_port": free_port()})
    mcp_port = free_port()
    async with (
        served(create_gateway(hurried), hurried.http_port),
        serving(create_app(hurried), mcp_port),
        Client(f"http://127.0.0.1:{mcp_port}{PATH}", read_timeout_seconds=90) as client,
    ):
        pending = await client.call_tool(
            "forecast", {"bot": market.seller}, meta={"x402/payment": payment}
        )
        assert pending.is_error, text_of(pending)
        answer = pending.structured_content
        assert answer["status"] == "pending" and answer["token"], answer
        assert pending.meta is not None
        settling = pending.meta["x402/payment-response"]
        assert (settling["success"], settling["errorReason"]) == (False, "settlement_pending")
        assert settling["payer"] == buyer.address
        ask = {"payment_id": answer["payment_id"], "token": answer["token"]}
        for _ in range(150):
            state = await client.call_tool("payment_status", ask)
            assert not state.is_error, text_of(state)
            if state.structured_content["final"]:
                break
            await asyncio.sleep(0.2)
        withheld = await client.call_tool("payment_status", {"payment_id": answer["payment_id"]})

    assert state.structured_content["status"] == "settled"
    assert state.structured_content["result"]["bot"] == market.seller
    assert withheld.structured_content["result_withheld"] is True
    assert market.balance(buyer.address) == before - PRICE
    [row] = market.ledger()
    assert row.payment_id == answer["payment_id"] and row.status == "settled"


async def test_the_x402_sdks_mcp_client_pays_a_priced_tool(fleet: Fleet) -> None:
    """x402's own MCP client (``x402.mcp.x402MCPClient``) pays by itself; it speaks to an MCP
    client through ``call_tool(params)`` and reads the wire form of results. Over a
    handshake-era session (``initialize``), as older assistants connect."""
    market, buyer = fleet.market, dev_account(1)
    before = market.balance(buyer.address)
    sdk = x402Client()
    sdk.register("eip155:*", ExactEvmClientScheme(buyer))
    sdk.set_spend_controls(
        {"allowed_assets": [{"network": "eip155:31337", "asset": market.token.address}]}
    )

    async with fleet.client(mode="legacy") as client:

        class WireClient:
            async def call_tool(self, params: dict[str, Any], **_options: Any) -> Any:
                result = await client.call_tool(
                    params["name"], params["arguments"], meta=params.get("_meta")
                )
                return SimpleNamespace(**result.model_dump(by_alias=True, mode="json"))

        assert client.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS
        paying = x402MCPClient(WireClient(), sdk, auto_payment=True)
        result = await paying.call_tool("forecast", {"bot": market.seller})

    assert not result.is_error and result.payment_made
    assert result.payment_response is not None and result.payment_response.success
    assert json.loads(result.content[0]["text"])["bot"] == market.seller
    assert market.balance(buyer.address) == before - PRICE
    [row] = market.ledger()
    assert row.tx_hash == result.payment_response.transaction


BAD_CALLS: dict[str, tuple[str, dict[str, Any], Any, str]] = {
    "unknown bot": ("forecast", {"bot": "no-such-bot"}, None, "no bot named no-such-bot"),
    "bad bot name": ("status", {"bot": "Not A Bot!"}, None, "bot: 'Not A Bot!' does not match"),
    "bad symbol": ("forecast", {"bot": "{seller}", "symbol": "btc/usd"}, None, "symbol: "),
    "bad horizon": ("forecast", {"bot": "{seller}", "horizon": "soon"}, None, "horizon: "),
    "unknown argument": ("status", {"bot": "{seller}", "x": 1}, None, "x: Extra inputs"),
    "unknown tool": ("launch", {}, None, "no tool named 'launch'"),
    "payment not an object": ("forecast", {"bot": "{seller}"}, 42, "PaymentPayload object"),
    "payment not JSON": ("forecast", {"bot": "{seller}"}, "{not json", "PaymentPayload object"),
    "bad payment id": ("payment_status", {"payment_id": "payment-1"}, None, "payment_id: "),
}


async def test_bad_input_gets_one_line_and_changes_nothing(fleet: Fleet) -> None:
    market, buyer = fleet.market, dev_account(8)
    before = market.balance(buyer.address), market.balance(market.seller_address)

    async with fleet.client() as client:
        for case, (tool, args, payment, expected) in BAD_CALLS.items():
            args = {k: (market.seller if v == "{seller}" else v) for k, v in args.items()}
            meta = None if payment is None else {"x402/payment": payment}
            result = await client.call_tool(tool, args, meta=meta)
            line = text_of(result)
            assert result.is_error, case
            assert expected in line and "\n" not in line, (case, line)

    assert (market.balance(buyer.address), market.balance(market.seller_address)) == before
    assert fleet.ledger_rows() == 0


async def test_a_gateway_that_does_not_answer_is_one_line(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, http_port=free_port())
    port = free_port()
    async with (
        serving(create_app(settings), port),
        Client(f"http://127.0.0.1:{port}{PATH}") as client,
    ):
        free = await client.call_tool("status", {"bot": "forecaster-1"})
        paid = await client.call_tool(
            "forecast", {"bot": "forecaster-1"}, meta={"x402/payment": {"x402Version": 2}}
        )

    for result in (free, paid):
        line = text_of(result)
        assert result.is_error and "did not answer" in line and "\n" not in line, line
    assert "never charged twice" in text_of(paid)


async def test_a_malformed_payment_object_is_refused_with_its_x402_reason(fleet: Fleet) -> None:
    """A JSON object that is no valid payment: the x402 MCP transport's "payment invalid", the
    PaymentRequired again with the reason in ``error``; nothing started or settled."""
    async with fleet.client() as client:
        result = await client.call_tool(
            "forecast", {"bot": fleet.market.seller}, meta={"x402/payment": {"x402Version": 2}}
        )

    assert result.is_error
    assert result.structured_content["error"] == "invalid_payload"
    assert result.structured_content["accepts"][0]["amount"] == str(PRICE)
    assert fleet.ledger_rows() == 0
