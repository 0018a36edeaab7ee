"""What every bot kind shares: :class:`SkillFailed`, and reading a bot's parameters and a call's
arguments into their models with one-line errors."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from agentfleet.bots.model import BotRef, disclosure_for
from agentfleet.bots.params import parse_params

Model = TypeVar("Model", bound=BaseModel)


class SkillFailed(Exception):
    """A skill that cannot answer; the message is the one line the operator sees."""


def asked_params(args: dict[str, Any]) -> dict[str, Any]:
    """The parameters ``tune`` is asked about: ``args["params"]``, or the args themselves."""
    asked = args.get("params", args)
    if not isinstance(asked, dict):
        raise SkillFailed("tune: params must be an object of parameter values")
    return asked


def identity(bot: BotRef) -> dict[str, Any]:
    """Who the bot is: the part of a ``status`` answer every kind gives."""
    return {
        "bot": bot.name,
        "kind": bot.kind.value,
        "status": bot.status.value,
        "owner": bot.owner,
        "disclosure": disclosure_for(bot.owner),
        "params": bot.params,
    }


def params_of(bot: BotRef, model: type[Model], values: dict[str, Any] | None = None) -> Model:
    """``bot``'s parameters (or ``values`` for its kind) as ``model``; SkillFailed when invalid."""
    try:
        parsed = parse_params(bot.kind, bot.params if values is None else values)
    except ValueError as exc:
        raise SkillFailed(str(exc)) from None
    assert isinstance(parsed, model)  # noqa: S101 (PARAMS maps each kind to its model)
    return parsed


def validated(model: type[Model], value: Any, what: str) -> Model:
    """``value`` as ``model``; SkillFailed naming ``what`` and the first bad field."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "value"
        raise SkillFailed(f"{what}: {where}: {first['msg']}") from None
