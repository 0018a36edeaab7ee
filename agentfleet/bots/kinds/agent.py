"""An agent bot (an LLM with tools, :mod:`agentfleet.agents`): it answers tasks in runs
(``fleet agent ask``), so of the standard skills it answers ``status``, ``performance`` (its
runs are in ``fleet agent runs``) and ``tune``; it forecasts nothing itself."""

from __future__ import annotations

from typing import Any

from agentfleet.agents.model import AgentParams
from agentfleet.bots.kinds.common import SkillFailed, asked_params, identity, params_of
from agentfleet.bots.model import Performance, Skill, SkillCall


async def answer(call: SkillCall) -> dict[str, Any]:
    """An agent's answer to ``call``; SkillFailed for what agents answer only in a run."""
    bot = call.bot
    params = params_of(bot, AgentParams)
    if call.skill is Skill.STATUS:
        return {**identity(bot), "model": params.model, "tools": params.tools}
    if call.skill is Skill.PERFORMANCE:
        window = str(call.args.get("window", "all"))
        return Performance(bot=bot.name, window=window, forecasts=0).model_dump(mode="json")
    if call.skill is Skill.TUNE:
        asked = asked_params(call.args)
        suggested = params_of(bot, AgentParams, {**params.model_dump(mode="json"), **asked})
        return {
            "bot": bot.name,
            "current": params.model_dump(mode="json"),
            "suggested": suggested.model_dump(mode="json"),
            "applied": False,
        }
    raise SkillFailed(
        f"agent bots answer tasks, not the {call.skill.value} skill: "
        f'fleet agent ask {bot.name} "..."'
    )
