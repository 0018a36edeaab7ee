"""Each bot kind's parameter model, and reading parameters into it with one readable line.

``configure`` validates against these and bad parameters change nothing. The models of the
built-in kinds live beside their kinds (:mod:`agentfleet.bots.model`,
:mod:`agentfleet.agents.model`);
this module only maps kinds to them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from agentfleet.agents.model import AgentParams
from agentfleet.bots.model import BotKind, ForecasterParams, PublisherParams, RemoteParams
from agentfleet.errors import FleetError
from agentfleet.netguard import UrlRule

PARAMS: dict[BotKind, type[BaseModel]] = {
    BotKind.FORECASTER: ForecasterParams,
    BotKind.PUBLISHER: PublisherParams,
    BotKind.REMOTE: RemoteParams,
    BotKind.AGENT: AgentParams,
}


def parse_params(kind: BotKind, params: dict[str, Any], urls: UrlRule | None = None) -> BaseModel:
    """The kind's parameter model; ValueError with one readable line for anything wrong. With
    ``urls``, every URL parameter must be one that rule allows (:mod:`agentfleet.netguard`)."""
    try:
        parsed = PARAMS[kind].model_validate(params)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'params'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ValueError(f"invalid {kind.value} parameters: {problems}") from None
    if urls is not None:
        for name, guard in guarded_params(kind).items():
            if guard == "url":
                try:
                    urls.check(str(getattr(parsed, name)))
                except FleetError as exc:
                    raise ValueError(f"invalid {kind.value} parameters: {name}: {exc}") from None
    return parsed


def guarded_params(kind: BotKind) -> dict[str, str]:
    """The kind's parameters that set money (``"money"``: prices, spending limits) or where the
    fleet calls out to (``"url"``), by name: only an admin changes them from Telegram."""
    found: dict[str, str] = {}
    for name, field in PARAMS[kind].model_fields.items():
        extra = field.json_schema_extra
        if isinstance(extra, dict) and isinstance(extra.get("guarded"), str):
            found[name] = str(extra["guarded"])
    return found
