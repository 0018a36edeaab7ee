"""What a bot publishes about itself over HTTP, from its ``bots`` row: its ERC-8004 registration
file, its A2A 0.3 agent card (with the x402 offers of its priced skills), and which skill call
its A2A endpoint takes.

URLs are built on ``base`` (``settings.http_url``), the base the agent URI was registered with,
so the file, the card and the chain agree.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from agentfleet.bots import a2a
from agentfleet.bots.a2a import (
    CARD_PATH,
    INVALID_PARAMS,
    PAYMENT_REQUIRED,
    UNSUPPORTED_OPERATION,
    RpcError,
)
from agentfleet.bots.model import (
    BotKind,
    BotRef,
    BotStatus,
    RemoteParams,
    Skill,
    SkillCall,
    disclosure_for,
)
from agentfleet.chain.deployment.manifest import Deployment
from agentfleet.models import BotRecord
from agentfleet.payments.terms import A2A_X402_EXTENSION, SELLABLE, price_of

REGISTRATION_TYPE = "https://eips.ethereum.org/EIPS/eip-8004#registration-v1"
A2A_VERSION = "0.3.0"
INACTIVE = frozenset({BotStatus.RETIRING, BotStatus.RETIRED})
"""States in which the registration file says ``"active": false``."""
SELLING = (BotStatus.ACTIVE, BotStatus.DEGRADED)
"""States in which a bot sells its priced skills (over A2A it answers only the free ones)."""
CAPABILITIES = {"streaming": False, "pushNotifications": False, "stateTransitionHistory": False}

SKILL_CARDS: dict[Skill, dict[str, Any]] = {
    Skill.FORECAST: {
        "id": "forecast",
        "name": "Forecast",
        "description": "Next value of a symbol's price (EMA over the bot's series; synthetic "
        "data unless real bars were imported).",
        "tags": ["forecast", "price", "ema"],
        "examples": ['{"skill": "forecast", "args": {"symbol": "BTCUSDT", "horizon": "1h"}}'],
    },
    Skill.STATUS: {
        "id": "status",
        "name": "Status",
        "description": "The bot's state, parameters and disclosure.",
        "tags": ["status"],
        "examples": ['{"skill": "status", "args": {}}'],
    },
    Skill.PERFORMANCE: {
        "id": "performance",
        "name": "Performance",
        "description": "Backtest of its one-step-ahead forecasts: mean abs error, hit rate.",
        "tags": ["performance", "backtest"],
        "examples": ['{"skill": "performance", "args": {"window": "7d"}}'],
    },
    Skill.SHARE_PATTERN: {
        "id": "share_pattern",
        "name": "Share pattern",
        "description": "The market regime the bot sees now, with its confidence.",
        "tags": ["pattern", "regime"],
        "examples": ['{"skill": "share_pattern", "args": {"symbol": "BTCUSDT"}}'],
    },
}
HTTP_SKILLS = SELLABLE
"""What each built-in kind answers over HTTP: the skills that only read (priced skills are
sold through ``/bots/{name}/skills/{skill}`` with x402)."""
KIND_BLURBS: dict[BotKind, str] = {
    BotKind.FORECASTER: "agentfleet forecaster bot.",
    BotKind.PUBLISHER: "agentfleet publisher bot.",
    BotKind.REMOTE: "agentfleet remote bot (runs elsewhere, speaks A2A).",
    BotKind.AGENT: "agentfleet agent bot (an LLM with tools; send it a task as text).",
}


def package_version() -> str:
    try:
        return version("agentfleet")
    except PackageNotFoundError:
        return "0.0.0"


def bot_url(base: str, name: str, path: str) -> str:
    return f"{base}/bots/{name}/{path}"


def remote_card_url(params: dict[str, Any]) -> str:
    """A remote bot's own agent card: ``params.url`` itself, or the card under that base (the
    rule :mod:`activities.skills` follows when it calls the bot)."""
    return a2a.card_url(str(RemoteParams.model_validate(params).url))


def description(row: BotRecord) -> str:
    text = row.description.strip() or KIND_BLURBS[BotKind(row.kind)]
    return f"{text} {disclosure_for(row.owner)}"


def registration_file(row: BotRecord, base: str, deployment: Deployment | None) -> dict[str, Any]:
    """ERC-8004 registration-v1 file: the bot's agent URI on the IdentityRegistry."""
    kind = BotKind(row.kind)
    service: dict[str, Any] = {"name": "A2A"}
    if kind is BotKind.REMOTE:
        service["endpoint"] = remote_card_url(row.params)
    else:
        service.update(endpoint=bot_url(base, row.name, CARD_PATH), version=A2A_VERSION)
    registrations: list[dict[str, Any]] = []
    if deployment is not None and row.agent_id is not None:
        registry = deployment.address("IdentityRegistry")
        registrations.append(
            {"agentId": row.agent_id, "agentRegistry": f"eip155:{deployment.chain_id}:{registry}"}
        )
    return {
        "type": REGISTRATION_TYPE,
        "name": row.name,
        "description": description(row),
        "services": [service],
        "x402Support": any(price_of(kind, dict(row.params), skill) for skill in HTTP_SKILLS[kind]),
        "active": BotStatus(row.status) not in INACTIVE,
        "registrations": registrations,
    }


def remote_card(row: BotRecord) -> dict[str, Any]:
    """What a remote bot's card URL answers here: where its own card is (``agentCard``)."""
    card = remote_card_url(row.params)
    return {
        "name": row.name,
        "remote": True,
        "agentCard": card,
        "note": f"{row.name} runs elsewhere; its own agent card is {card}",
    }


def agent_card(
    row: BotRecord, base: str, deployment: Deployment | None, chain_id: int
) -> dict[str, Any]:
    """A2A agent card of a built-in bot, with its priced skills' x402 offers."""
    kind = BotKind(row.kind)
    return {
        "protocolVersion": A2A_VERSION,
        "name": row.name,
        "description": description(row),
        "url": bot_url(base, row.name, "a2a"),
        "preferredTransport": "JSONRPC",
        "version": package_version(),
        "capabilities": CAPABILITIES,
        "defaultInputModes": ["application/json"],
        "defaultOutputModes": ["application/json"],
        "skills": [SKILL_CARDS[skill] for skill in HTTP_SKILLS[kind]],
    } | x402_extension(row, base, deployment, chain_id)


def x402_extension(
    row: BotRecord, base: str, deployment: Deployment | None, chain_id: int
) -> dict[str, Any]:
    """The card's x402 extension: each skill's price and where to buy it (HTTP x402)."""
    kind = BotKind(row.kind)
    prices = {s: price_of(kind, dict(row.params), s) for s in HTTP_SKILLS[kind]}
    paid = {s: units for s, units in prices.items() if units}
    if not paid:
        return {}
    token = deployment.contracts.get("FleetUSD") if deployment else None
    offers = {
        skill.value: {
            "endpoint": bot_url(base, row.name, f"skills/{skill.value}"),
            "scheme": "exact",
            "network": f"eip155:{chain_id}",
            "asset": token.address if token else None,
            "amount": str(units),
            "payTo": row.address,
        }
        for skill, units in paid.items()
    }
    extension = {
        "uri": A2A_X402_EXTENSION,
        "description": "Paid skills: POST the endpoint with an x402 v2 payment in fUSD.",
        "required": False,
        "params": {"skills": offers},
    }
    return {"capabilities": {**CAPABILITIES, "extensions": [extension]}}


def a2a_call(row: BotRecord, base: str, skill_name: str, args: dict[str, Any]) -> SkillCall:
    """The call a built-in bot's A2A endpoint answers in-process; RpcError for a remote bot, an
    unknown skill, or a priced skill the bot sells now (bought with x402, not over A2A)."""
    kind = BotKind(row.kind)
    if kind is BotKind.REMOTE:
        raise RpcError(
            UNSUPPORTED_OPERATION,
            f"{row.name} runs elsewhere; call it through its own card "
            f"{remote_card_url(row.params)}",
        )
    offered = HTTP_SKILLS[kind]
    skill = next((s for s in offered if s.value == skill_name), None)
    if skill is None:
        listed = ", ".join(s.value for s in offered)
        raise RpcError(INVALID_PARAMS, f"unknown skill {skill_name!r}; this agent offers {listed}")
    price = price_of(kind, dict(row.params), skill)
    if price and BotStatus(row.status) in SELLING:
        raise RpcError(
            PAYMENT_REQUIRED,
            f"{skill.value} costs {price / 10**6:g} fUSD: POST "
            f"{bot_url(base, row.name, f'skills/{skill.value}')} with an x402 payment",
        )
    return skill_call(row, skill, args)


def skill_call(row: BotRecord, skill: Skill, args: dict[str, Any]) -> SkillCall:
    """A call of ``skill`` at the bot of ``row``, as the code the workers run takes it."""
    bot = BotRef(
        name=row.name,
        kind=BotKind(row.kind),
        status=BotStatus(row.status),
        owner=row.owner,
        params=dict(row.params),
    )
    return SkillCall(bot=bot, skill=skill, args=args)
