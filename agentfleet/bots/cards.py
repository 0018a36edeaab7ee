"""What a bot publishes about itself over HTTP, from its ``bots`` row: its ERC-8004 registration
file, its A2A agent card (1.0, readable by 0.3 clients, with the x402 offers of its priced
skills), which skill call its A2A endpoint takes (a data part, or a skill named in text), and
what it says about its offers in words.

URLs are built on ``base`` (``settings.http_url``), the base the agent URI was registered with,
so the file, the card and the chain agree.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
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
from agentfleet.payments.terms import (
    A2A_X402_EXTENSION,
    A2A_X402_EXTENSIONS,
    SELLABLE,
    price_of,
)

REGISTRATION_TYPE = "https://eips.ethereum.org/EIPS/eip-8004#registration-v1"
A2A_VERSION = a2a.V1
"""The A2A version the registration file names for a built-in bot's card (which 0.3 reads too)."""
INACTIVE = frozenset({BotStatus.RETIRING, BotStatus.RETIRED})
"""States in which the registration file says ``"active": false``."""
SELLING = (BotStatus.ACTIVE, BotStatus.DEGRADED)
"""States in which a bot sells its priced skills (over A2A it answers only the free ones)."""
CAPABILITIES = {"streaming": False, "pushNotifications": False}
MODES = ["text/plain", "application/json"]

SKILL_CARDS: dict[Skill, dict[str, Any]] = {
    Skill.FORECAST: {
        "id": "forecast",
        "name": "Forecast",
        "description": "Next value of a symbol's price (EMA over the bot's series; synthetic "
        "data unless real bars were imported).",
        "tags": ["forecast", "price", "ema"],
        "examples": [
            "forecast BTC 1h",
            '{"skill": "forecast", "args": {"symbol": "BTCUSDT", "horizon": "1h"}}',
        ],
    },
    Skill.STATUS: {
        "id": "status",
        "name": "Status",
        "description": "The bot's state, parameters and disclosure.",
        "tags": ["status"],
        "examples": ["status", '{"skill": "status", "args": {}}'],
    },
    Skill.PERFORMANCE: {
        "id": "performance",
        "name": "Performance",
        "description": "Backtest of its one-step-ahead forecasts: mean abs error, hit rate.",
        "tags": ["performance", "backtest"],
        "examples": ["performance 7d", '{"skill": "performance", "args": {"window": "7d"}}'],
    },
    Skill.SHARE_PATTERN: {
        "id": "share_pattern",
        "name": "Share pattern",
        "description": "The market regime the bot sees now, with its confidence.",
        "tags": ["pattern", "regime"],
        "examples": [
            "pattern ETH",
            '{"skill": "share_pattern", "args": {"symbol": "BTCUSDT"}}',
        ],
    },
}
ASK_CARD: dict[str, Any] = {
    "id": "ask",
    "name": "Ask",
    "description": "Send a task as text: the agent runs it with its tools within its budget. "
    "The answer is a message, or a task to poll (GetTask) while it works or waits for a human.",
    "tags": ["agent", "llm", "task"],
    "examples": ["What is the BTC outlook?"],
    "inputModes": ["text/plain"],
    "outputModes": ["text/plain"],
}
"""An agent bot's own skill: a text message starts a run (the other kinds read text as a
skill request)."""
SKILL_WORDS: dict[Skill, tuple[str, ...]] = {
    Skill.FORECAST: ("forecast", "forecasts", "predict", "prediction", "outlook"),
    Skill.STATUS: ("status", "health"),
    Skill.PERFORMANCE: ("performance", "backtest", "accuracy"),
    Skill.SHARE_PATTERN: ("share_pattern", "pattern", "patterns", "regime"),
}
"""Words that name a skill in a text message (:func:`skill_request`)."""
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
    """A2A agent card of a built-in bot: A2A 1.0 (``supportedInterfaces``: JSON-RPC at its
    endpoint in 1.0 and 0.3), with the top-level fields A2A 0.3 clients read, its skills, and
    its priced skills' x402 offers under the x402 extension."""
    kind = BotKind(row.kind)
    capabilities: dict[str, Any] = dict(CAPABILITIES)
    extension = x402_extension(row, base, deployment, chain_id)
    if extension is not None:
        capabilities["extensions"] = [extension]
    skills = [SKILL_CARDS[skill] for skill in HTTP_SKILLS[kind]]
    return {
        "name": row.name,
        "description": description(row),
        **a2a.card_interfaces(bot_url(base, row.name, "a2a")),
        "version": package_version(),
        "capabilities": capabilities,
        "defaultInputModes": MODES,
        "defaultOutputModes": MODES,
        "skills": [ASK_CARD, *skills] if kind is BotKind.AGENT else skills,
    }


def paid_skills(row: BotRecord) -> dict[Skill, int]:
    """The skills a bot sells over HTTP for a price, in token units."""
    kind = BotKind(row.kind)
    prices = {s: price_of(kind, dict(row.params), s) for s in HTTP_SKILLS[kind]}
    return {s: units for s, units in prices.items() if units}


def extension_uris(row: BotRecord) -> tuple[str, ...]:
    """The extensions a request may activate at this bot's endpoint (``A2A-Extensions``): the
    x402 extension (under any URI it has had) when its card declares it."""
    return A2A_X402_EXTENSIONS if paid_skills(row) else ()


def x402_extension(
    row: BotRecord, base: str, deployment: Deployment | None, chain_id: int
) -> dict[str, Any] | None:
    """The card's x402 extension: each skill's price and where to buy it (HTTP x402); None for
    a bot that sells nothing."""
    paid = paid_skills(row)
    if not paid:
        return None
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
    return {
        "uri": A2A_X402_EXTENSION,
        "description": "Paid skills: POST the endpoint with an x402 v2 payment in fUSD.",
        "required": False,
        "params": {"skills": offers},
    }


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


def skill_request(
    text: str, words: Mapping[str, Collection[str]]
) -> tuple[str, dict[str, Any]] | None:
    """A skill call read from text ("forecast BTC 4h", "status please"): the skill named first
    (by its id or one of its ``words``), with a symbol (``BTCUSDT``, or a known base like
    ``BTC``, quoted in USDT) and a span (``4h``, ``7 days``) when the text has them. None when
    it names no skill of ``words``."""
    tokens = [t.lower() for t in re.findall(r"[A-Za-z0-9_]+", text)]
    named = None
    for token in tokens:
        named = next((s for s, w in words.items() if token == s or token in w), None)
        if named is not None:
            break
    if named is None:
        return None
    args: dict[str, Any] = {}
    symbol = symbol_in(text)
    span = re.search(r"\b([1-9][0-9]{0,3}) ?(m|min|mins|h|hours?|d|days?)\b", text, re.IGNORECASE)
    if named in ("forecast", "share_pattern") and symbol:
        args["symbol"] = symbol
    if span and named == "forecast":
        args["horizon"] = f"{span[1]}{span[2][0].lower()}"
    if span and named == "performance":
        args["window"] = f"{span[1]}{span[2][0].lower()}"
    return named, args


QUOTES = ("USDT", "USDC", "BUSD", "USD")
CASUAL_BASES = frozenset(
    {"BTC", "ETH", "SOL", "BNB", "XRP", "DOGE", "AVAX", "LTC", "MATIC", "TRX", "SHIB", "XLM"}
)
"""Bases read in lower case too ("forecast btc"); the others are words as well ("near",
"link", "ton") and count only in capitals."""
KNOWN_BASES = CASUAL_BASES | {"ADA", "DOT", "LINK", "POL", "TON", "ATOM", "NEAR", "ARB", "OP"}
KNOWN_BASES |= {"UNI", "BCH", "ETC", "FIL", "APT", "SUI"}


def symbol_in(text: str) -> str | None:
    """The first market symbol in ``text``: a pair such as ``BTCUSDT``, or a known base
    (``BTC``, ``eth``) quoted in USDT."""
    tokens: list[str] = re.findall(r"[A-Za-z0-9]+", text)
    for token in tokens:
        upper = token.upper()
        if upper in KNOWN_BASES and (token.isupper() or upper in CASUAL_BASES):
            return f"{upper}USDT"
        quote = next((q for q in QUOTES if upper.endswith(q)), None)
        if quote and 2 <= len(upper) - len(quote) <= 10 and upper[: -len(quote)].isalnum():
            base = upper[: -len(quote)]
            if base in KNOWN_BASES or token.isupper():
                return upper
    return None


def text_call(row: BotRecord, text: str) -> tuple[str, dict[str, Any]] | None:
    """The skill call a text message asks of a built-in bot ("forecast BTC"), among the skills it
    answers over HTTP; None when the text names none of them."""
    offered = HTTP_SKILLS[BotKind(row.kind)]
    return skill_request(text, {s.value: SKILL_WORDS[s] for s in offered})


def offers_text(row: BotRecord, base: str) -> str:
    """What a bot offers, in words: each skill with its price and where to buy it, and how to
    ask."""
    kind = BotKind(row.kind)
    paid = paid_skills(row)
    listed = []
    for skill in HTTP_SKILLS[kind]:
        units = paid.get(skill)
        where = bot_url(base, row.name, f"skills/{skill.value}")
        terms = f"{units / 10**6:g} fUSD, bought at POST {where} with x402" if units else "free"
        listed.append(f"{skill.value} ({terms})")
    example = "forecast BTC" if Skill.FORECAST in HTTP_SKILLS[kind] else "status"
    return (
        f"{row.name} offers: {'; '.join(listed)}. Name a skill in your message "
        f'(e.g. "{example}"), or send a data part {{"skill": ..., "args": {{...}}}}.'
    )


def describe(skill: str, data: dict[str, Any]) -> str:
    """A skill's answer in one line of text (its data part carries the whole answer)."""
    numbers = all(isinstance(data.get(key), int | float) for key in ("value", "last"))
    if skill == Skill.FORECAST.value and numbers and {"bot", "symbol"} <= set(data):
        synthetic = ", synthetic data" if data.get("synthetic_data") else ""
        line = (
            f"{data['bot']} forecasts {data['symbol']} {data.get('horizon', '')} ahead: "
            f"{data['value']:.6g} (last {data['last']:.6g}; {data.get('model', '?')}{synthetic})."
        )
        return f"{line} {data.get('disclosure', '')}".strip()
    return f"{skill}: {json.dumps(data, separators=(', ', ': '), default=str)}"
