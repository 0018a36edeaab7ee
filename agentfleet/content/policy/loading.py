"""Loading a content policy: YAML to a :class:`~agentfleet.content.policy.rules.Policy`, or a
:class:`PolicyError` of one line that names the file and the field; the packaged default."""

from __future__ import annotations

import difflib
import functools
import importlib.resources
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from agentfleet.content.policy.rules import Policy


class PolicyError(ValueError):
    """A policy that cannot be used: one line, ``<file>: <field path>: <what is wrong>``."""


class _PolicyLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that also rejects a key given twice (the later one would win silently)."""


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, str) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        if isinstance(key, str):
            seen.add(key)
    return loader.construct_mapping(node)


_PolicyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def parse_policy(text: str, source: str) -> Policy:
    """Validate a policy's YAML; :class:`PolicyError` names ``source`` and the field."""
    try:
        data = yaml.load(text, Loader=_PolicyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise PolicyError(f"{source}: {where}{exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: {str(exc).strip().splitlines()[0]}") from exc
    if data is None:
        raise PolicyError(f"{source}: the file is empty")
    if not isinstance(data, dict):
        raise PolicyError(
            f"{source}: expected a mapping of policy fields (name, version, ...), got {_kind(data)}"
        )
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise PolicyError(f"{source}: {_describe(errors[0])}{more}") from exc


def load_policy(path: Path) -> Policy:
    """Read and validate the policy file at ``path``; :class:`PolicyError` if it cannot be used."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise PolicyError(f"{path}: is a directory, not a policy file") from None
    except UnicodeDecodeError:
        raise PolicyError(f"{path}: is not UTF-8 text") from None
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read it ({exc.strerror})") from None
    return parse_policy(text, str(path))


DEFAULT_POLICY_PATH = "agentfleet/content/policies/default.yaml"


@functools.cache
def default_policy() -> Policy:
    """The packaged ``agentfleet/content/policies/default.yaml`` (read once)."""
    text = importlib.resources.files("agentfleet.content").joinpath("policies/default.yaml")
    return parse_policy(text.read_text(encoding="utf-8"), DEFAULT_POLICY_PATH)


def effective_policy(path: Path | None) -> Policy:
    """The policy at ``path`` (``settings.content_policy``), or the packaged default when None."""
    return default_policy() if path is None else load_policy(path)


def _kind(value: object) -> str:
    names = {dict: "a mapping", list: "a list", str: "text", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, int | float) else "a value")


def _path(loc: Iterable[int | str]) -> str:
    path = ""
    for part in loc:
        if part == "[key]":
            continue
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _model_at(loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model whose fields live at ``loc`` (for "did you mean" on unknown fields)."""
    model: type[BaseModel] | None = Policy
    for part in loc:
        if model is None:
            return None
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is not None:
            model = _inner_model(field.annotation)
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _describe(error: ErrorDetails) -> str:
    loc, kind, value = error["loc"], error["type"], error.get("input")
    context = error.get("ctx") or {}
    if kind == "extra_forbidden":
        field = str(loc[-1])
        model = _model_at(loc[:-1])
        fields = list(model.model_fields) if model else []
        close = difflib.get_close_matches(field, fields, n=1, cutoff=0.7)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        where = f"{_path(loc[:-1])}: " if len(loc) > 1 else ""
        return f"{where}unknown field {field!r}{hint}"
    if kind == "missing":
        return f"{_path(loc)}: is required"
    messages = {
        "list_type": f"expected a list, got {_kind(value)} {value!r}",
        "dict_type": f"expected a mapping, got {_kind(value)} {value!r}",
        "model_type": f"expected a mapping of fields, got {_kind(value)} {value!r}",
        "model_attributes_type": f"expected a mapping of fields, got {_kind(value)} {value!r}",
        "string_type": f"expected text, got {_kind(value)} {value!r}",
        "string_too_short": "must not be empty",
        "too_short": "must not be empty",
        "enum": f"{value!r} is not one of {context.get('expected', '')}",
        "int_type": f"expected a whole number, got {value!r}",
        "int_parsing": f"expected a whole number, got {value!r}",
        "int_from_float": f"expected a whole number, got {value!r}",
        "float_type": f"expected a number, got {value!r}",
        "float_parsing": f"expected a number, got {value!r}",
        "bool_type": f"expected true or false, got {value!r}",
        "bool_parsing": f"expected true or false, got {value!r}",
        "greater_than_equal": f"{value!r} is less than {context.get('ge')}",
        "less_than_equal": f"{value!r} is more than {context.get('le')}",
        "string_pattern_mismatch": f"{value!r} may hold only letters, digits, '.', '_' and '-'",
        "time_delta_type": f"{value!r} is not a duration like 90s, 15m, 4h or 2d",
        "time_delta_parsing": f"{value!r} is not a duration like 90s, 15m, 4h or 2d",
    }
    message = messages.get(kind, str(error["msg"]).removeprefix("Value error, "))
    return f"{_path(loc)}: {message}" if _path(loc) else message
