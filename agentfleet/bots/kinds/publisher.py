"""The built-in publisher: it posts through its channel (the content pipeline), so of the
standard skills it answers ``status``, ``performance`` and ``tune`` and forecasts nothing."""

from __future__ import annotations

from typing import Any

from agentfleet.bots.kinds.common import SkillFailed, asked_params, identity, params_of
from agentfleet.bots.model import Performance, PublisherParams, Skill, SkillCall


async def answer(call: SkillCall) -> dict[str, Any]:
    """A publisher's answer to ``call``; SkillFailed for what publishers do not do."""
    bot = call.bot
    params = params_of(bot, PublisherParams)
    if call.skill is Skill.STATUS:
        return {**identity(bot), "channel": params.channel}
    if call.skill is Skill.PERFORMANCE:
        window = str(call.args.get("window", "all"))
        return {
            **Performance(bot=bot.name, window=window, forecasts=0).model_dump(mode="json"),
            "published": 0,
        }
    if call.skill is Skill.TUNE:
        asked = asked_params(call.args)
        suggested = params_of(bot, PublisherParams, {**params.model_dump(), **asked})
        return {
            "bot": bot.name,
            "current": params.model_dump(),
            "suggested": suggested.model_dump(),
            "applied": False,
        }
    if call.skill is Skill.FORECAST:
        raise SkillFailed("publisher bots do not forecast")
    raise SkillFailed(f"publisher bots do not answer {call.skill.value}")
