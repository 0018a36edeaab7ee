"""The OpenAI-compatible endpoint (``FLEET_OPENAI_BASE_URL``) as activities use it.

Unset means offline: every caller has a deterministic default, so ``fleet up`` needs no network.
The key comes from settings, never from a payload.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from agentfleet.settings import Settings

if TYPE_CHECKING:
    from openai import AsyncOpenAI


def configured(settings: Settings) -> bool:
    return bool(settings.openai_base_url)


@asynccontextmanager
async def client_for(settings: Settings) -> AsyncIterator[AsyncOpenAI]:
    # Imported here: the SDK's types take ~0.6 s to import, and most fleet processes (and every
    # worker with no FLEET_OPENAI_BASE_URL) never call a model.
    from openai import AsyncOpenAI

    key = settings.openai_api_key
    client = AsyncOpenAI(
        base_url=settings.openai_base_url,
        api_key=key.get_secret_value() if key else "not-needed",
        max_retries=0,
    )
    try:
        yield client
    finally:
        await client.close()


async def chat(settings: Settings, system: str, user: str, *, json_answer: bool = False) -> str:
    """One chat completion's text (retries are the activity's, not the client's)."""
    async with client_for(settings) as client:
        kwargs: dict[str, Any] = {}
        if json_answer:
            kwargs["response_format"] = {"type": "json_object"}
        reply = await client.chat.completions.create(
            model=settings.openai_model,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
            **kwargs,
        )
    return reply.choices[0].message.content or ""


async def chat_json(settings: Settings, system: str, user: str) -> dict[str, Any]:
    """A chat completion that must answer a JSON object; ValueError when it does not."""
    content = await chat(settings, system, user, json_answer=True)
    try:
        answer = json.loads(content)
    except ValueError:
        raise ValueError(f"the model's answer is not JSON: {content[:80]!r}") from None
    if not isinstance(answer, dict):
        raise ValueError(f"the model's answer is not a JSON object: {content[:80]!r}")
    return answer


async def moderate(settings: Settings, text: str) -> tuple[bool, list[str]]:
    """The moderation endpoint's verdict: flagged, and the categories that flagged it."""
    async with client_for(settings) as client:
        answer = await client.moderations.create(input=text)
    result = answer.results[0]
    categories = [name for name, hit in result.categories.model_dump().items() if hit]
    return bool(result.flagged), sorted(categories)
