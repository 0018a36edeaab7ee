"""Drafting on ``fleet-llm``: an OpenAI-compatible model when ``FLEET_OPENAI_BASE_URL`` is set,
else the offline template generator (deterministic, no network)."""

from __future__ import annotations

import asyncio

from temporalio import activity

from agentfleet import llm, taskqueues
from agentfleet.content import drafting
from agentfleet.content.model import Draft, DraftRequest
from agentfleet.settings import Settings


class LlmActivities:
    task_queue = taskqueues.LLM

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @activity.defn(name="draft_content")
    async def draft_content(self, request: DraftRequest) -> Draft:
        if not llm.configured(self._settings):
            return await asyncio.to_thread(
                drafting.offline_draft,
                request.channel,
                request.bot,
                request.brief,
                request.max_length,
                self._settings.home,
            )
        text = await llm.chat(
            self._settings,
            drafting.llm_system_prompt(request.channel, request.bot, request.max_length),
            request.brief,
        )
        text = text.strip()[: request.max_length]
        headline, _ = drafting.split_brief(text)
        return Draft(
            text=text,
            subject=headline[:120] if request.channel.value == "email" else "",
            generator=f"llm:{self._settings.openai_model}",
            prompt_version=drafting.PROMPT_VERSION,
        )
