"""A reference remote bot: a forecaster that runs outside the fleet and speaks A2A.

``python -m starters.remote_bot --port 8400 --name remote-1 [--delay-ms 0] [--a2a-version 1.0]``

It serves its agent card at ``/.well-known/agent-card.json`` (A2A 1.0 with the fields 0.3 clients
read, or with ``--a2a-version 0.3`` a card as A2A 0.3 wrote it: name, description with the
automation disclosure, JSON-RPC endpoint, skills) and answers JSON-RPC 2.0 at ``POST /a2a`` in
both versions whatever its card says (1.0 ``SendMessage``, 0.3 ``message/send``): a data part
``{"skill": ..., "args": {...}}`` is answered with an agent message whose data part is the
result; a text naming a skill ("forecast ETH 4h") with a text and a data part; any other text
with what it offers. Forecasts are an EMA over its own synthetic series (the same feed the fleet
uses, labelled synthetic). ``--delay-ms`` delays every answer (for timeout tests); the card is
always immediate.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from agentfleet.bots import a2a, cards
from agentfleet.bots.a2a import (
    INVALID_PARAMS,
    TASK_NOT_FOUND,
    Data,
    Incoming,
    MessageReply,
    RpcError,
    TaskReply,
    Text,
)
from agentfleet.bots.market import ema, feed
from agentfleet.bots.model import Forecast, ForecastRequest, Performance, Skill, disclosure_for

LOOKBACK = 200
SKILLS: list[dict[str, Any]] = [
    {
        "id": "forecast",
        "name": "Forecast",
        "description": "Next value of a symbol's price (EMA over its synthetic series).",
        "tags": ["forecast", "price", "ema"],
        "examples": ['{"skill": "forecast", "args": {"symbol": "BTCUSDT", "horizon": "1h"}}'],
    },
    {
        "id": "status",
        "name": "Status",
        "description": "Whether the bot is up, its model and disclosure.",
        "tags": ["status"],
    },
    {
        "id": "performance",
        "name": "Performance",
        "description": "Backtest of its one-step-ahead forecasts: mean abs error, hit rate.",
        "tags": ["performance", "backtest"],
    },
]


def _version() -> str:
    try:
        return version("agentfleet")
    except PackageNotFoundError:
        return "0.0.0"


WORDS = {str(s["id"]): cards.SKILL_WORDS[Skill(s["id"])] for s in SKILLS}


class Endpoint:
    """The bot's A2A handler (:class:`agentfleet.bots.a2a.Handler`): skills only, no tasks."""

    def __init__(self, name: str, reply: a2a.Answer) -> None:
        self._name = name
        self._reply = reply

    async def send(self, message: Incoming) -> MessageReply:
        if message.call is not None:
            return MessageReply([Data(await self._reply(*message.call))])
        asked = cards.skill_request(message.text, WORDS)
        if asked is None:
            offered = ", ".join(str(s["id"]) for s in SKILLS)
            return MessageReply(
                [Text(f'{self._name} offers (free): {offered}. Try "forecast BTC 1h".')]
            )
        data = await self._reply(*asked)
        return MessageReply([Text(cards.describe(asked[0], data)), Data(data)])

    async def task(self, task_id: str) -> TaskReply:
        raise RpcError(TASK_NOT_FOUND, f"no task {task_id[:80]!r}: {self._name} answers at once")


def create_app(
    name: str,
    *,
    owner: str = "remote-operator",
    alpha: float = 0.3,
    delay_ms: int = 0,
    a2a_version: str = a2a.V1,
) -> FastAPI:
    """The bot's HTTP app (card + JSON-RPC endpoint); ``a2a_version`` "0.3" publishes a card as
    A2A 0.3 wrote it (its endpoint answers both versions either way)."""
    app = FastAPI(title=f"agentfleet remote bot {name}", docs_url=None, redoc_url=None)
    disclosure = disclosure_for(owner)
    model = f"ema(alpha={alpha:g})"
    started = time.monotonic()

    @app.get("/.well-known/agent-card.json")
    async def agent_card(request: Request) -> dict[str, Any]:
        endpoint = str(request.url_for("a2a"))
        return {
            "name": name,
            "description": f"Reference remote forecaster for agentfleet. {disclosure}",
            **a2a.card_interfaces(endpoint, legacy_only=a2a_version == a2a.V03),
            "version": _version(),
            "capabilities": {"streaming": False, "pushNotifications": False},
            "defaultInputModes": cards.MODES,
            "defaultOutputModes": cards.MODES,
            "skills": SKILLS,
        }

    def answer(skill: str, args: dict[str, Any]) -> dict[str, Any]:
        if skill == "forecast":
            try:
                asked = ForecastRequest.model_validate(
                    {"symbol": args.get("symbol", "BTCUSDT"), "horizon": args.get("horizon", "1h")}
                )
            except ValidationError as exc:
                raise RpcError(INVALID_PARAMS, f"forecast: {exc.errors()[0]['msg']}") from None
            closes = feed.synthetic_closes(asked.symbol, LOOKBACK)
            return Forecast(
                bot=name,
                symbol=asked.symbol,
                horizon=asked.horizon,
                value=ema.ema(closes, alpha),
                last=closes[-1],
                model=model,
                synthetic_data=True,
                disclosure=disclosure,
            ).model_dump(mode="json")
        if skill == "status":
            return {
                "bot": name,
                "kind": "remote",
                "status": "active",
                "model": model,
                "disclosure": disclosure,
                "uptime_s": round(time.monotonic() - started, 1),
            }
        if skill == "performance":
            symbol = str(args.get("symbol", "BTCUSDT"))
            result = ema.backtest_ema(feed.synthetic_closes(symbol, LOOKBACK), alpha)
            return {
                **Performance(
                    bot=name,
                    window=f"{LOOKBACK} bars",
                    forecasts=result.forecasts,
                    mean_abs_error=result.mean_abs_error,
                    hit_rate=result.hit_rate,
                ).model_dump(mode="json"),
                "synthetic_data": True,
            }
        offered = ", ".join(str(s["id"]) for s in SKILLS)
        raise RpcError(INVALID_PARAMS, f"unknown skill {skill!r}; this agent offers {offered}")

    async def reply(skill: str, args: dict[str, Any]) -> dict[str, Any]:
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        return answer(skill, args)

    endpoint = Endpoint(name, reply)

    @app.post("/a2a", name="a2a")
    async def a2a_endpoint(request: Request) -> JSONResponse:
        return await a2a.serve(request, endpoint)

    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m starters.remote_bot", description=__doc__)
    parser.add_argument("--port", type=int, default=8400, help="TCP port (default 8400)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--name", default="remote-forecaster", help="the bot's name")
    parser.add_argument("--owner", default="remote-operator", help="who operates it")
    parser.add_argument("--alpha", type=float, default=0.3, help="EMA smoothing (0-1]")
    parser.add_argument("--delay-ms", type=int, default=0, help="delay every answer (tests)")
    parser.add_argument(
        "--a2a-version",
        choices=a2a.SPOKEN,
        default=a2a.V1,
        help="the agent card's shape (the endpoint answers both versions)",
    )
    args = parser.parse_args(argv)
    if not 0 < args.alpha <= 1:
        parser.error("--alpha must be in (0, 1]")
    app = create_app(
        args.name,
        owner=args.owner,
        alpha=args.alpha,
        delay_ms=args.delay_ms,
        a2a_version=args.a2a_version,
    )
    uvicorn.run(
        app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=1
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
