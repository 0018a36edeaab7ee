"""Bot skills: the standard interface (forecast, tune, status, performance, share_pattern,
receive_intelligence) answered by built-in kinds in this worker, or by remote bots over A2A.

A skill that cannot answer is a result with ``ok=False`` and the reason, never an activity
failure: a fleet command reports which bot failed and why, and one bad bot never fails the
batch. Only cancellation propagates.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import SQLAlchemyError
from temporalio import activity

from agentfleet.bots import a2a
from agentfleet.bots.market import ema, feed, regimes, storage
from agentfleet.bots.model import (
    BotKind,
    BotRef,
    BotStatus,
    Forecast,
    ForecasterParams,
    ForecastRequest,
    Pattern,
    Performance,
    PublisherParams,
    RemoteParams,
    Skill,
    SkillBatch,
    SkillBatchResult,
    SkillCall,
    SkillResult,
    disclosure_for,
    parse_params,
)
from agentfleet.chaos import chaos_point
from agentfleet.netguard import OutboundRefused, UrlRule, on_origin, outbound_client
from agentfleet.redaction import redact
from agentfleet.settings import Settings

log = logging.getLogger("agentfleet.skills")
Model = TypeVar("Model", bound=BaseModel)

ANSWERING = (BotStatus.ACTIVE, BotStatus.DEGRADED)
"""Bots in these states answer every skill; the others answer ``status`` only."""
SERIES_TTL_S = 5.0
"""How long a loaded series is reused, so a fleet command loads each symbol once."""
CARD_TTL_S = 60.0
"""How long a remote bot's agent card is reused before it is fetched again."""
TUNE_ALPHAS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
TUNE_WINDOW = 2000
"""``tune`` scores its grid on at most this many recent bars (keeps it well under 50 ms)."""
REGIME_WINDOW = 120
SYNTHETIC_INTERVAL = timedelta(hours=1)


class SkillFailed(Exception):
    """A skill that cannot answer; the message is the one line the operator sees."""


class SkillActivities:
    """Skill activities bound to one database (series) and one HTTP client (remote bots): by
    default the outbound guard's, so a remote bot is called only where the fleet's
    :class:`UrlRule` allows (``http`` replaces it in tests)."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient | None = None) -> None:
        self._url = settings.effective_database_url
        self._urls = UrlRule.of(settings)
        self._http = http or outbound_client(
            self._urls,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
            headers={"user-agent": "agentfleet-skills"},
        )
        self._cards: dict[str, tuple[float, dict[str, Any]]] = {}
        self._series: dict[tuple[str, int], tuple[float, asyncio.Task[storage.Closes]]] = {}

    async def close(self) -> None:
        await self._http.aclose()

    @activity.defn(name="run_skill")
    async def run_skill(self, call: SkillCall) -> SkillResult:
        """One skill of one bot; bounded by the activity's timeout (remote: the bot's)."""
        result = await self._run(call, None)
        chaos_point("after_skill", call.bot.name)
        return result

    @activity.defn(name="run_skill_batch")
    async def run_skill_batch(self, batch: SkillBatch) -> SkillBatchResult:
        """Every call concurrently, each within ``per_call_timeout_s``; results in call order.

        Heartbeats (calls done so far) while it runs, so big batches can have a heartbeat
        timeout.
        """
        done = 0

        async def one(call: SkillCall) -> SkillResult:
            nonlocal done
            result = await self._run(call, batch.per_call_timeout_s)
            done += 1
            return result

        info = activity.info()
        every = 1.0
        if info.heartbeat_timeout:
            every = min(every, info.heartbeat_timeout.total_seconds() / 3)

        async def beat() -> None:
            while True:
                await asyncio.sleep(every)
                activity.heartbeat(done, len(batch.calls))

        beating = asyncio.create_task(beat())
        try:
            results = await asyncio.gather(*(one(call) for call in batch.calls))
        finally:
            beating.cancel()
        return SkillBatchResult(results=list(results))

    async def _run(self, call: SkillCall, limit_s: float | None) -> SkillResult:
        started = time.perf_counter()
        ok, data, error = False, {}, None
        try:
            async with asyncio.timeout(limit_s):
                data = await self._dispatch(call)
            ok = True
        except SkillFailed as exc:
            # The error reaches the buyer (a 502's body), the history and the command center.
            error = redact(str(exc))
        except TimeoutError:
            error = "timed out" if limit_s is None else f"no answer within {limit_s:g} s"
        except Exception as exc:  # a defect in a skill must not fail the other bots
            log.exception("skill %s of bot %s failed", call.skill.value, call.bot.name)
            error = redact(f"internal error: {type(exc).__name__}: {exc}")
        return SkillResult(
            bot=call.bot.name,
            skill=call.skill,
            ok=ok,
            data=data,
            error=error,
            elapsed_ms=round((time.perf_counter() - started) * 1000, 3),
        )

    async def _dispatch(self, call: SkillCall) -> dict[str, Any]:
        bot = call.bot
        if call.skill is not Skill.STATUS and bot.status not in ANSWERING:
            raise SkillFailed(f"bot {bot.name} is {bot.status.value}")
        handlers: dict[BotKind, Callable[[SkillCall], Awaitable[dict[str, Any]]]] = {
            BotKind.FORECASTER: self._forecaster,
            BotKind.PUBLISHER: self._publisher,
            BotKind.REMOTE: self._remote,
        }
        return await handlers[bot.kind](call)

    async def _forecaster(self, call: SkillCall) -> dict[str, Any]:
        bot, args = call.bot, call.args
        params = _params(bot, ForecasterParams)
        model = f"ema(alpha={params.alpha:g})"
        if call.skill is Skill.FORECAST:
            request = _validated(
                ForecastRequest,
                {"symbol": args.get("symbol", params.symbol), "horizon": args.get("horizon", "1h")},
                "forecast",
            )
            series = await self._closes(request.symbol, params.lookback)
            return Forecast(
                bot=bot.name,
                symbol=request.symbol,
                horizon=request.horizon,
                value=ema.ema(series.closes, params.alpha),
                last=series.closes[-1],
                model=model,
                synthetic_data=series.synthetic,
                disclosure=disclosure_for(bot.owner),
            ).model_dump(mode="json")
        if call.skill is Skill.STATUS:
            series = await self._closes(params.symbol, params.lookback)
            return {
                **_identity(bot),
                "model": model,
                "series": {
                    "symbol": series.symbol,
                    "bars": len(series.closes),
                    "synthetic": series.synthetic,
                    "last": series.closes[-1],
                    "last_ts": series.last_ts.isoformat() if series.last_ts else None,
                },
            }
        if call.skill is Skill.PERFORMANCE:
            return await self._performance(bot, params, args, model)
        if call.skill is Skill.TUNE:
            return await self._tune(bot, params, args)
        return await self._pattern(call, params)

    async def _performance(
        self, bot: BotRef, params: ForecasterParams, args: dict[str, Any], model: str
    ) -> dict[str, Any]:
        bars = params.lookback
        window = args.get("window")
        if window is not None:
            try:
                span = feed.parse_interval(str(window))
            except ValueError as exc:
                raise SkillFailed(f"performance: {exc}") from None
            bars = max(10, min(100_000, span // SYNTHETIC_INTERVAL + 1))
        series = await self._closes(params.symbol, bars)
        result = ema.backtest_ema(series.closes, params.alpha)
        return {
            **Performance(
                bot=bot.name,
                window=str(window) if window else f"{len(series.closes)} bars",
                forecasts=result.forecasts,
                mean_abs_error=result.mean_abs_error,
                hit_rate=result.hit_rate,
            ).model_dump(mode="json"),
            "model": model,
            "symbol": series.symbol,
            "synthetic_data": series.synthetic,
        }

    async def _tune(
        self, bot: BotRef, params: ForecasterParams, args: dict[str, Any]
    ) -> dict[str, Any]:
        """Suggest parameters (the best alpha of a grid, or the ones asked about), scored by
        backtest error; nothing is applied (that is the lifecycle's ``configure``)."""
        asked = _asked(args)
        suggested = _params(bot, ForecasterParams, {**params.model_dump(), **asked})
        series = await self._closes(params.symbol, params.lookback)
        recent = series.closes[-TUNE_WINDOW:]
        grid: dict[str, float | None] = {}
        if not asked:
            for alpha in TUNE_ALPHAS:
                grid[f"{alpha:g}"] = ema.backtest_ema(recent, alpha).mean_abs_error
            scored = [(mae, float(a)) for a, mae in grid.items() if mae is not None]
            if scored:
                suggested = suggested.model_copy(update={"alpha": min(scored)[1]})
        if suggested.symbol != params.symbol or suggested.lookback != params.lookback:
            other = await self._closes(suggested.symbol, suggested.lookback)
            suggested_recent = other.closes[-TUNE_WINDOW:]
        else:
            suggested_recent = recent
        current_mae = ema.backtest_ema(recent, params.alpha).mean_abs_error
        suggested_mae = ema.backtest_ema(suggested_recent, suggested.alpha).mean_abs_error
        current, proposed = params.model_dump(), suggested.model_dump()
        return {
            "bot": bot.name,
            "current": current,
            "suggested": proposed,
            "changes": {k: v for k, v in proposed.items() if current[k] != v},
            "current_mae": current_mae,
            "suggested_mae": suggested_mae,
            "grid": grid,
            "window": len(recent),
            "synthetic_data": series.synthetic,
            "applied": False,
        }

    async def _pattern(self, call: SkillCall, params: ForecasterParams) -> dict[str, Any]:
        """``share_pattern``: the regime the bot sees now. ``receive_intelligence`` (or
        ``share_pattern`` given a pattern): whether that pattern holds on the bot's data."""
        raw = call.args.get("item", call.args.get("pattern"))
        if raw is None and call.skill is Skill.RECEIVE_INTELLIGENCE:
            raise SkillFailed(
                "receive_intelligence needs an item: a pattern {symbol, regime, confidence}"
            )
        given = None if raw is None else _validated(Pattern, raw, "pattern")
        if given is not None and given.regime not in set(regimes.Regime):
            known = ", ".join(regimes.Regime)
            raise SkillFailed(f"pattern: unknown regime {given.regime!r} (known: {known})")
        symbol = given.symbol if given else str(call.args.get("symbol", params.symbol))
        series = await self._closes(symbol, params.lookback)
        regime, confidence = regimes.detect_regime(series.closes, REGIME_WINDOW)
        observed = Pattern(
            symbol=symbol,
            regime=regime.value,
            confidence=round(confidence, 3),
            source=call.bot.name,
        )
        return {
            "pattern": observed.model_dump(mode="json"),
            "received": None if given is None else given.model_dump(mode="json"),
            "holds": given is None or given.regime == regime.value,
            "confidence": observed.confidence,
            "synthetic_data": series.synthetic,
        }

    async def _publisher(self, call: SkillCall) -> dict[str, Any]:
        bot = call.bot
        params = _params(bot, PublisherParams)
        if call.skill is Skill.STATUS:
            return {**_identity(bot), "channel": params.channel}
        if call.skill is Skill.PERFORMANCE:
            window = str(call.args.get("window", "all"))
            return {
                **Performance(bot=bot.name, window=window, forecasts=0).model_dump(mode="json"),
                "published": 0,
            }
        if call.skill is Skill.TUNE:
            suggested = _params(bot, PublisherParams, {**params.model_dump(), **_asked(call.args)})
            return {
                "bot": bot.name,
                "current": params.model_dump(),
                "suggested": suggested.model_dump(),
                "applied": False,
            }
        if call.skill is Skill.FORECAST:
            raise SkillFailed("publisher bots do not forecast")
        raise SkillFailed(f"publisher bots do not answer {call.skill.value}")

    async def _remote(self, call: SkillCall) -> dict[str, Any]:
        """Call a bot running elsewhere: its A2A agent card says where and which skills; the
        skill goes as a JSON-RPC ``message/send`` whose one data part is ``{skill, args}``.
        Only URLs the fleet's rule allows are called, and only endpoints on the card's own
        origin (anything else is refused and never called)."""
        bot = call.bot
        params = _params(bot, RemoteParams)
        url = str(params.url)
        try:
            self._urls.check(url)
            async with asyncio.timeout(params.timeout_s):
                card = await self._card(url, params.timeout_s)
                offered = [s.get("id") for s in card["skills"] if isinstance(s, dict)]
                if call.skill.value not in offered:
                    listed = ", ".join(str(s) for s in offered) or "none"
                    raise SkillFailed(
                        f"remote bot {bot.name} does not offer {call.skill.value} "
                        f"(its card lists: {listed})"
                    )
                data = await self._send(card["_endpoint"], call, params.timeout_s)
        except OutboundRefused as exc:
            raise SkillFailed(f"remote bot {bot.name}: {exc}") from None
        except TimeoutError:
            raise SkillFailed(
                f"remote bot {bot.name} did not answer within {params.timeout_s:g} s"
            ) from None
        except httpx.TimeoutException:
            raise SkillFailed(
                f"remote bot {bot.name} did not answer within {params.timeout_s:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise SkillFailed(f"cannot reach remote bot {bot.name} at {url}: {exc}") from None
        if call.skill is Skill.FORECAST:
            forecast = _validated(Forecast, data, "remote forecast reply")
            remote_name = forecast.bot
            data = {**forecast.model_copy(update={"bot": bot.name}).model_dump(mode="json")}
            data["remote_name"] = remote_name
        return data

    async def _card(self, url: str, limit_s: float) -> dict[str, Any]:
        card_url = a2a.card_url(url)
        cached = self._cards.get(card_url)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        response = await self._http.get(card_url, timeout=limit_s)
        if response.status_code != 200:
            raise SkillFailed(f"agent card {card_url}: HTTP {response.status_code}")
        try:
            card = response.json()
        except ValueError:
            raise SkillFailed(f"agent card {card_url} is not JSON") from None
        endpoint = a2a.rpc_endpoint(card) if isinstance(card, dict) else None
        if endpoint is None or not isinstance(card.get("skills"), list):
            raise SkillFailed(f"agent card {card_url} has no url or skills list")
        declares = f"an endpoint the agent card {card_url} declares"
        for declared in a2a.declared_urls(card):
            on_origin(declared, card_url, declares)
        checked: dict[str, Any] = {**card, "_endpoint": on_origin(endpoint, card_url, declares)}
        self._cards[card_url] = (time.monotonic() + CARD_TTL_S, checked)
        return checked

    async def _send(self, endpoint: str, call: SkillCall, limit_s: float) -> dict[str, Any]:
        request_id = uuid.uuid4().hex
        body = {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "message/send",
            "params": {
                "message": {
                    "kind": "message",
                    "messageId": uuid.uuid4().hex,
                    "role": "user",
                    "parts": [
                        {"kind": "data", "data": {"skill": call.skill.value, "args": call.args}}
                    ],
                },
                "configuration": {"blocking": True, "acceptedOutputModes": ["application/json"]},
            },
        }
        response = await self._http.post(endpoint, json=body, timeout=limit_s)
        if response.status_code >= 400:
            raise SkillFailed(f"remote bot {call.bot.name} answered HTTP {response.status_code}")
        try:
            reply = response.json()
        except ValueError:
            raise SkillFailed(f"remote bot {call.bot.name} answered something not JSON") from None
        return _reply_data(call.bot.name, reply)

    async def _closes(self, symbol: str, n: int) -> storage.Closes:
        """The last ``n`` closes of ``symbol``, loaded once per ``SERIES_TTL_S`` however many
        bots ask at the same time."""
        key = (symbol, n)
        now = time.monotonic()
        entry = self._series.get(key)
        loop = asyncio.get_running_loop()
        if (
            entry is None
            or entry[0] < now
            or entry[1].get_loop() is not loop
            or (entry[1].done() and (entry[1].cancelled() or entry[1].exception() is not None))
        ):
            if len(self._series) > 256:
                self._series = {k: v for k, v in self._series.items() if v[0] >= now}
            task = loop.create_task(asyncio.to_thread(storage.load_closes, self._url, symbol, n))
            entry = self._series[key] = (now + SERIES_TTL_S, task)
        try:
            series = await asyncio.shield(entry[1])
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            raise SkillFailed(
                f"cannot read the prices of {symbol}: {reason[0] if reason else type(exc).__name__}"
            ) from None
        if not series.closes:
            raise SkillFailed(f"no price data for {symbol}")
        return series


def _asked(args: dict[str, Any]) -> dict[str, Any]:
    """The parameters ``tune`` is asked about: ``args["params"]``, or the args themselves."""
    asked = args.get("params", args)
    if not isinstance(asked, dict):
        raise SkillFailed("tune: params must be an object of parameter values")
    return asked


def _identity(bot: BotRef) -> dict[str, Any]:
    return {
        "bot": bot.name,
        "kind": bot.kind.value,
        "status": bot.status.value,
        "owner": bot.owner,
        "disclosure": disclosure_for(bot.owner),
        "params": bot.params,
    }


def _params(bot: BotRef, model: type[Model], values: dict[str, Any] | None = None) -> Model:
    try:
        parsed = parse_params(bot.kind, bot.params if values is None else values)
    except ValueError as exc:
        raise SkillFailed(str(exc)) from None
    assert isinstance(parsed, model)  # noqa: S101 (PARAMS maps each kind to its model)
    return parsed


def _validated(model: type[Model], value: Any, what: str) -> Model:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "value"
        raise SkillFailed(f"{what}: {where}: {first['msg']}") from None


def _reply_data(name: str, reply: Any) -> dict[str, Any]:
    """The data part of a JSON-RPC ``message/send`` reply (a Message, or a completed Task's
    artifacts); a JSON-RPC error or anything else becomes one line."""
    if not isinstance(reply, dict) or reply.get("jsonrpc") != "2.0":
        raise SkillFailed(f"remote bot {name} sent a malformed reply (not JSON-RPC 2.0)")
    error = reply.get("error")
    if isinstance(error, dict):
        raise SkillFailed(
            f"remote bot {name} refused: {error.get('message', 'error')} "
            f"(JSON-RPC {error.get('code')})"
        )
    result = reply.get("result")
    if not isinstance(result, dict):
        raise SkillFailed(f"remote bot {name} sent a malformed reply (no result)")
    parts: list[Any] = []
    if result.get("kind") == "message":
        parts = list(result.get("parts") or [])
    elif result.get("kind") == "task":
        state = (result.get("status") or {}).get("state")
        if state != "completed":
            raise SkillFailed(f"remote bot {name} left the task {state or 'unfinished'}")
        for artifact in result.get("artifacts") or []:
            if isinstance(artifact, dict):
                parts += list(artifact.get("parts") or [])
    for part in parts:
        if (
            isinstance(part, dict)
            and part.get("kind") == "data"
            and isinstance(part.get("data"), dict)
        ):
            return dict(part["data"])
    raise SkillFailed(f"remote bot {name} sent a malformed reply (no data part)")
