"""The Temporal side of agent runs: the client the agents worker uses, carrying Temporal's
OpenAI Agents SDK integration (``OpenAIAgentsPlugin``).

The plugin runs the SDK's ``Runner`` inside workflows and makes every model call an activity
(``invoke_model_activity``) on :data:`agentfleet.taskqueues.AGENTS`. It needs its own payload
converter (``OpenAIPayloadConverter``: pydantic JSON that leaves unset fields out, as the OpenAI
API expects them back), so the agents worker gets a client of its own: same connection, same
codec and failure converter, that payload converter. Both read the other's JSON payloads.

Model calls speak the Chat Completions API (``FLEET_OPENAI_BASE_URL``: the sandbox's
deterministic model, a local llama.cpp server, or any OpenAI-compatible endpoint).
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from agents.models.openai_provider import OpenAIProvider
from openai import AsyncOpenAI
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.converter import DefaultPayloadConverter
from temporalio.openai_agents import ModelActivityParameters, OpenAIAgentsPlugin

from agentfleet import taskqueues
from agentfleet.settings import Settings

MODEL_CALL_TIMEOUT = timedelta(seconds=120)
MODEL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=8,
)


def plugin(settings: Settings) -> OpenAIAgentsPlugin:
    """``OpenAIAgentsPlugin`` for this fleet: Chat Completions at ``FLEET_OPENAI_BASE_URL``,
    model calls on the agents queue with bounded retries."""
    key = settings.openai_api_key
    openai = AsyncOpenAI(
        base_url=settings.agent_model_url or "http://127.0.0.1:9/unset",
        api_key=key.get_secret_value() if key else "not-needed",
        max_retries=0,
    )
    return OpenAIAgentsPlugin(
        model_params=ModelActivityParameters(
            task_queue=taskqueues.AGENTS,
            start_to_close_timeout=MODEL_CALL_TIMEOUT,
            retry_policy=MODEL_RETRY,
        ),
        model_provider=OpenAIProvider(openai_client=openai, use_responses=False),
        add_temporal_spans=False,
    )


def agents_client(client: Client, settings: Settings) -> Client:
    """``client``'s connection with the plugin and its payload converter (codec kept)."""
    config = client.config()
    # The plugin swaps a default payload converter for its own; one of another class it refuses
    # (its isinstance check does not see through the SDK's transfer-type wrapper), so the
    # client's pydantic converter is handed over as a default one, codec and failures kept.
    converter = dataclasses.replace(
        config["data_converter"], payload_converter_class=DefaultPayloadConverter
    )
    return Client(
        config["service_client"],
        namespace=config["namespace"],
        data_converter=converter,
        plugins=[plugin(settings)],
        interceptors=config["interceptors"],
    )
