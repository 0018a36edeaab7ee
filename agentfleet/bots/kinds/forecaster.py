"""The built-in forecaster: an EMA of its symbol's closes (imported bars, else the labelled
synthetic feed), its backtest, parameter suggestions, and the market regime it sees."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from agentfleet.bots.kinds.common import SkillFailed, asked_params, identity, params_of, validated
from agentfleet.bots.market.ema import backtest_ema, ema
from agentfleet.bots.market.feed import parse_interval
from agentfleet.bots.market.regimes import Regime, detect_regime
from agentfleet.bots.market.storage import Closes, load_closes
from agentfleet.bots.model import (
    BotRef,
    Forecast,
    ForecasterParams,
    ForecastRequest,
    Pattern,
    Performance,
    Skill,
    SkillCall,
    disclosure_for,
)

SERIES_TTL_S = 5.0
"""How long a loaded series is reused, so a fleet command loads each symbol once."""
TUNE_ALPHAS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
TUNE_WINDOW = 2000
"""``tune`` scores its grid on at most this many recent bars (keeps it well under 50 ms)."""
REGIME_WINDOW = 120
CACHED = 4096
"""Forecasts (and requests) kept for bots that share a series and parameters."""
SYNTHETIC_INTERVAL = timedelta(hours=1)


class Forecaster:
    """Forecaster bots' skills, reading series from one database; a series is loaded once per
    ``SERIES_TTL_S`` however many bots ask for it at the same time."""

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._series: dict[tuple[str, int], tuple[float, asyncio.Task[Closes]]] = {}
        self._requests: dict[tuple[str, str], ForecastRequest] = {}
        self._forecasts: dict[tuple[str, str, int, float, str], tuple[Closes, dict[str, Any]]] = {}

    async def answer(self, call: SkillCall) -> dict[str, Any]:
        """A forecaster's answer to ``call``; SkillFailed when it cannot give one."""
        bot, args = call.bot, call.args
        params = params_of(bot, ForecasterParams)
        model = f"ema(alpha={params.alpha:g})"
        if call.skill is Skill.FORECAST:
            request = self._request(args.get("symbol", params.symbol), args.get("horizon", "1h"))
            series = await self._closes(request.symbol, params.lookback)
            return {**self._forecast(series, request, params, bot.owner, model), "bot": bot.name}
        if call.skill is Skill.STATUS:
            series = await self._closes(params.symbol, params.lookback)
            return {
                **identity(bot),
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

    def _request(self, symbol: Any, horizon: Any) -> ForecastRequest:
        """The forecast asked for, validated once per symbol and horizon."""
        key = (str(symbol), str(horizon)) if type(symbol) is type(horizon) is str else None
        known = self._requests.get(key) if key is not None else None
        if known is not None:
            return known
        request = validated(ForecastRequest, {"symbol": symbol, "horizon": horizon}, "forecast")
        if key is not None:
            if len(self._requests) > CACHED:
                self._requests.clear()
            self._requests[key] = request
        return request

    def _forecast(
        self,
        series: Closes,
        request: ForecastRequest,
        params: ForecasterParams,
        owner: str,
        model: str,
    ) -> dict[str, Any]:
        """The forecast of ``series`` (without the bot's name), computed once per series, request,
        parameters and owner: bots that share them give the same answer."""
        key = (request.symbol, request.horizon, params.lookback, params.alpha, owner)
        known = self._forecasts.get(key)
        if known is not None and known[0] is series:
            return known[1]
        forecast = Forecast(
            bot="",
            symbol=request.symbol,
            horizon=request.horizon,
            value=ema(series.closes, params.alpha),
            last=series.closes[-1],
            model=model,
            synthetic_data=series.synthetic,
            disclosure=disclosure_for(owner),
        ).model_dump(mode="json")
        if len(self._forecasts) > CACHED:
            self._forecasts.clear()
        self._forecasts[key] = (series, forecast)
        return forecast

    async def _performance(
        self, bot: BotRef, params: ForecasterParams, args: dict[str, Any], model: str
    ) -> dict[str, Any]:
        bars = params.lookback
        window = args.get("window")
        if window is not None:
            try:
                span = parse_interval(str(window))
            except ValueError as exc:
                raise SkillFailed(f"performance: {exc}") from None
            bars = max(10, min(100_000, span // SYNTHETIC_INTERVAL + 1))
        series = await self._closes(params.symbol, bars)
        result = backtest_ema(series.closes, params.alpha)
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
        asked = asked_params(args)
        suggested = params_of(bot, ForecasterParams, {**params.model_dump(), **asked})
        series = await self._closes(params.symbol, params.lookback)
        recent = series.closes[-TUNE_WINDOW:]
        grid: dict[str, float | None] = {}
        if not asked:
            for alpha in TUNE_ALPHAS:
                grid[f"{alpha:g}"] = backtest_ema(recent, alpha).mean_abs_error
            scored = [(mae, float(a)) for a, mae in grid.items() if mae is not None]
            if scored:
                suggested = suggested.model_copy(update={"alpha": min(scored)[1]})
        if suggested.symbol != params.symbol or suggested.lookback != params.lookback:
            other = await self._closes(suggested.symbol, suggested.lookback)
            suggested_recent = other.closes[-TUNE_WINDOW:]
        else:
            suggested_recent = recent
        current_mae = backtest_ema(recent, params.alpha).mean_abs_error
        suggested_mae = backtest_ema(suggested_recent, suggested.alpha).mean_abs_error
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
        given = None if raw is None else validated(Pattern, raw, "pattern")
        if given is not None and given.regime not in set(Regime):
            known = ", ".join(Regime)
            raise SkillFailed(f"pattern: unknown regime {given.regime!r} (known: {known})")
        symbol = given.symbol if given else str(call.args.get("symbol", params.symbol))
        series = await self._closes(symbol, params.lookback)
        regime, confidence = detect_regime(series.closes, REGIME_WINDOW)
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

    async def _closes(self, symbol: str, n: int) -> Closes:
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
            task = loop.create_task(asyncio.to_thread(load_closes, self._url, symbol, n))
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
