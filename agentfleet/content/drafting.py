"""Drafts: the offline template generator (the embedded default) and the LLM prompt.

Templates are Jinja2 files named ``<channel kind>@<version>.j2`` in a template store: the
packaged ``agentfleet/content/templates/`` and, taking precedence, ``FLEET_HOME/templates/``.
The highest version of a kind is used; its label (``telegram@1+3f2a9c1d``: version and the
first 8 hex digits of the file's sha256) is recorded with every draft, so an audit can say which
template wrote a text even after the file changed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, StrictUndefined

from agentfleet.content.model import ChannelKind, Draft

PACKAGED = Path(__file__).resolve().parent / "templates"
TEMPLATE_NAME = re.compile(r"^(?P<kind>[a-z]+)@(?P<version>\d+)\.j2$")
PROMPT_VERSION = "draft@1"
PROMPT = (
    "You write one short post for the {channel} channel of an automated agent named {bot}. "
    "Plain text, at most {max_length} characters, no hashtags spam, no invented facts or "
    "prices, never claim to be a human. The agent's disclosure is added after your text."
)
"""The system prompt of LLM drafts (``PROMPT_VERSION`` is recorded with each draft)."""

_env = Environment(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=False)  # noqa: S701 - plain text, not HTML


@dataclass(frozen=True)
class Template:
    kind: str
    version: int
    source: str

    @property
    def label(self) -> str:
        digest = hashlib.sha256(self.source.encode()).hexdigest()[:8]
        return f"{self.kind}@{self.version}+{digest}"


def templates(folders: list[Path]) -> dict[str, Template]:
    """The highest version of each kind across ``folders`` (later folders win ties)."""
    found: dict[str, Template] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            match = TEMPLATE_NAME.match(path.name)
            if not match:
                continue
            template = Template(
                kind=match["kind"], version=int(match["version"]), source=path.read_text("utf-8")
            )
            current = found.get(template.kind)
            if current is None or template.version >= current.version:
                found[template.kind] = template
    return found


def template_for(kind: ChannelKind, home: Path) -> Template:
    found = templates([PACKAGED, home / "templates"])
    if kind.value not in found:
        raise LookupError(f"no template for {kind.value} in {PACKAGED} or {home / 'templates'}")
    return found[kind.value]


def split_brief(brief: str) -> tuple[str, str]:
    """A headline (the first sentence) and the rest, whitespace tidied."""
    text = " ".join(brief.split())
    match = re.match(r"(.+?[.!?])(\s+|$)", text)
    if not match:
        return text, ""
    headline = match.group(1)
    return headline, text[match.end() :].strip()


def offline_draft(kind: ChannelKind, bot: str, brief: str, max_length: int, home: Path) -> Draft:
    """A deterministic draft from the brief and the kind's template (same input, same text)."""
    template = template_for(kind, home)
    headline, body = split_brief(brief)
    headline = headline[:1].upper() + headline[1:]
    text = _env.from_string(template.source).render(headline=headline, body=body, bot=bot)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    if len(text) > max_length:
        text = text[: max(0, max_length - 1)].rstrip() + "…"
    return Draft(
        text=text,
        subject=headline[:120] if kind is ChannelKind.EMAIL else "",
        generator=f"template:{template.label}",
        template_version=template.label,
    )


def llm_system_prompt(kind: ChannelKind, bot: str, max_length: int) -> str:
    return PROMPT.format(channel=kind.value, bot=bot, max_length=max_length)
