"""``fleet policy ...``: validate a content policy file and show the policy in effect.

``check FILE`` is what to run before pointing ``FLEET_CONTENT_POLICY`` at a new file: a policy
that does not validate is one line naming the file and the field, and exit code 2. ``show``
prints the policy the content pipeline uses: that file, or the packaged default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from agentfleet.content.policy.loading import PolicyError, effective_policy, load_policy
from agentfleet.content.policy.rules import Policy
from starters.cli.output import JsonOpt, console, emit_json, fail
from starters.cli.settings_arg import load_settings

app = typer.Typer(
    help="Content policies: validate a policy file, show the one in effect.",
    no_args_is_help=True,
)

INVALID = 2
"""Exit code of a policy that cannot be used."""


def _view(policy: Policy, source: str) -> dict[str, Any]:
    return {
        "ok": True,
        "source": source,
        "name": policy.name,
        "version": policy.version,
        "label": policy.label,
        "digest": policy.digest,
        "summary": policy.summary(),
        "policy": policy.model_dump(mode="json"),
    }


def _print_header(policy: Policy, source: str) -> None:
    console.print(f"[bold]{policy.name}[/] version {policy.version}  ({source})", highlight=False)
    console.print(f"label: {policy.label}", highlight=False)
    console.print(policy.summary(), highlight=False, soft_wrap=True)


@app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="The policy YAML file to validate.")],
    as_json: JsonOpt = False,
) -> None:
    """Validate a policy file: its name, version, label and what its rules do, or one error."""
    try:
        policy = load_policy(file)
    except PolicyError as exc:
        fail(str(exc), INVALID, as_json=as_json)
    if as_json:
        emit_json(_view(policy, str(file)))
        return
    _print_header(policy, str(file))


@app.command("show")
def show(as_json: JsonOpt = False) -> None:
    """The policy in effect: FLEET_CONTENT_POLICY, or the packaged default."""
    path = load_settings(as_json).content_policy
    source = str(path) if path is not None else "packaged default"
    try:
        policy = effective_policy(path)
    except PolicyError as exc:
        fail(f"FLEET_CONTENT_POLICY: {exc}", INVALID, as_json=as_json)
    if as_json:
        emit_json(_view(policy, source))
        return
    _print_header(policy, source)
    console.print()
    rules = yaml.safe_dump(policy.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    console.print(rules.rstrip(), highlight=False, markup=False, soft_wrap=True)
