"""What the Telegram command center reads outside Temporal (the database, the chain) and how it
says it in a chat message. Blocking calls: the command center runs them in threads."""

from __future__ import annotations

import secrets
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agentfleet import db
from agentfleet.bots.model import BotStatus, BotView, Skill
from agentfleet.content.model import ContentState
from agentfleet.models import AuditEvent, ContentItem

if TYPE_CHECKING:
    from agentfleet.settings import Settings

PAYMENT_COLUMNS = ["when", "buyer", "seller", "skill", "fUSD", "status", "payment"]
PAYMENTS_SHOWN = 200
USAGE_COLUMNS = [
    "agent",
    "model calls",
    "tokens in/out",
    "tokens fUSD",
    "purchases fUSD",
    "budget used fUSD",
]


def fresh_command_id(skill: Skill) -> str:
    return f"tg-{skill.value}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def audit(url: str, kind: str, actor: str, subject: str, detail: dict[str, Any]) -> None:
    """One ``audit_events`` row for a command or a refusal (each its own key: they are events,
    not retries)."""
    event = AuditEvent(
        idempotency_key=f"{kind}:{subject}:{secrets.token_hex(8)}",
        actor=actor,
        kind=kind,
        subject=subject[:200],
        detail=detail,
    )
    with db.session_scope(url) as session:
        db.record_once(session, event)
        session.commit()


def bot_text(view: BotView) -> str:
    lines = [f"{view.name} ({view.kind.value}, owner {view.owner}): {view.status.value}"]
    if view.reason:
        lines.append(f"reason: {view.reason}")
    if view.params:
        lines.append("params: " + ", ".join(f"{k}={v}" for k, v in sorted(view.params.items())))
    if view.address:
        lines.append(f"wallet {view.address}, agent {view.agent_id}")
    if view.model_version:
        lines.append(f"model {view.model_version}")
    lines.append(f"{view.commands_handled} commands handled, {view.errors} errors")
    lines.append(view.disclosure)
    return "\n".join(lines)


def dashboard_text(settings: Settings) -> str:
    """Links to the Temporal Web UI (its saved views) and Grafana, and how to get a snapshot."""
    from agentfleet.operations.report import SAVED_VIEWS, web_ui_url

    namespace = settings.temporal_namespace or "default"
    lines = [f"Temporal Web UI: {settings.ui_url}/namespaces/{namespace}/workflows"]
    lines += [f"{label}: {web_ui_url(settings.ui_url, namespace, q)}" for label, q in SAVED_VIEWS]
    lines += [
        f"Grafana: {settings.grafana_url} (docker compose)",
        "Offline snapshot: fleet report --html report.html",
    ]
    return "\n".join(lines)


def health_text(url: str) -> str:
    from clients.bots import bot_rows

    rows = bot_rows(url)
    if not rows:
        return "No bots yet."
    by_status = Counter(row.status for row in rows)
    lines = [
        f"{len(rows)} bots: " + ", ".join(f"{n} {s}" for s, n in sorted(by_status.items())),
    ]
    unwell = [r for r in rows if r.status in (BotStatus.DEGRADED.value, BotStatus.FAILED.value)]
    lines += [f"{r.name} {r.status}: {r.reason or 'no reason recorded'}" for r in unwell]
    if not unwell:
        lines.append("No bot is degraded or failed.")
    return "\n".join(lines)


def patterns_text(url: str) -> str:
    from agentfleet.learning.patterns import list_patterns

    rows = list_patterns(url, limit=10)
    if not rows:
        return "No shared patterns yet (`fleet learn share --from BOT`)."
    lines = ["Shared patterns, newest first:"]
    for row in rows:
        rate = "-" if row.success_rate is None else f"{row.success_rate:.0%}"
        lines.append(
            f"{row.symbol} {row.regime} from {row.source} (confidence {row.confidence:.2f}): "
            f"{row.status}, {row.holds}/{row.asked} bots confirm, success {rate}"
        )
    return "\n".join(lines)


def awaiting_approval(url: str) -> list[ContentItem]:
    """Items awaiting approval, oldest first (the list ``fleet content list`` reads)."""
    from agentfleet.content import store as content_store

    items = content_store.list_items(url, state=ContentState.AWAITING_APPROVAL, limit=200)
    return sorted(items, key=lambda item: item.created_at)


def payments_table(url: str, bot: str | None) -> tuple[str, list[list[str]]]:
    """A headline (counts and fUSD by status) and rows of the newest payments of ``bot`` (as
    buyer or seller) or of the fleet."""
    from agentfleet.chain.deployment.plan import format_units
    from agentfleet.payments.ledger import list_payments

    rows = list_payments(url, limit=PAYMENTS_SHOWN, bot=bot)
    who = bot or "the fleet"
    if not rows:
        return f"No payments for {who} yet.", []
    counts = Counter(row.status for row in rows)
    amounts: Counter[str] = Counter()
    for row in rows:
        amounts[row.status] += int(row.amount)
    headline = f"Payments of {who} (newest {len(rows)}): " + ", ".join(
        f"{counts[s]} {s} ({format_units(amounts[s])} fUSD)" for s in sorted(counts)
    )
    table = [
        [
            f"{row.created_at:%m-%d %H:%M}",
            row.buyer or row.payer[:10],
            row.seller or row.pay_to[:10],
            row.skill or "-",
            format_units(int(row.amount)),
            row.status,
            row.payment_id[-12:],
        ]
        for row in rows
    ]
    return headline, table


def balances(settings: Settings, address: str) -> tuple[str, str]:
    """``(native, fUSD)`` of ``address`` on the fleet's chain, as decimal strings."""
    from agentfleet.chain import artifacts
    from agentfleet.chain.deployment.manifest import load_deployment
    from agentfleet.chain.deployment.plan import connect, format_units

    w3 = connect(settings)
    checksum = w3.to_checksum_address(address)
    native = format_units(int(w3.eth.get_balance(checksum)), 18)
    manifest = load_deployment(settings)
    if manifest is None:
        return native, "- (no deployment)"
    token = w3.eth.contract(
        address=w3.to_checksum_address(manifest.address("FleetUSD")),
        abi=artifacts.load("FleetUSD").abi,
    )
    return native, format_units(int(token.functions.balanceOf(checksum).call()))


def alerts_text(url: str) -> str:
    """The newest grouped alerts (what ``fleet alerts list`` shows)."""
    from agentfleet.operations.alerts import headline, recent_alerts

    rows = recent_alerts(url, limit=10)
    if not rows:
        return "No alerts yet."
    lines = ["Alerts, newest first:"]
    for row in rows:
        sent = ", ".join(row.channels) or "recorded only"
        lines.append(
            f"{row.created_at:%m-%d %H:%M} [{row.severity.value}] {headline(row)} ({sent})"
        )
    return "\n".join(lines)


def usage_table(settings: Settings, bot: str | None) -> tuple[str, list[list[str]]]:
    """A headline (the day's totals) and a row per agent (or ``bot``) of what it spent since
    00:00 UTC: model calls, tokens, their cost, settled purchases, its budget used."""
    from agentfleet.agents.model import fusd
    from agentfleet.models import BotRecord
    from clients import agents

    days = agents.usage(settings, bot)
    if not days:
        if bot is None:
            return "No agents yet (`fleet bot create NAME --kind agent`).", []
        with db.session_scope(settings.effective_database_url) as session:
            row = session.get(BotRecord, bot)
        if row is None:
            return f"No bot named {bot}.", []
        return f"{bot} is a {row.kind}, not an agent: it makes no model calls.", []
    rows = []
    for day in days:
        spent = day.token_units + day.purchase_units
        if day.budget_units:
            budget = f"{fusd(spent)} of {fusd(day.budget_units)} ({spent / day.budget_units:.0%})"
        else:
            budget = f"{fusd(spent)} (no budget)"
        rows.append(
            [
                day.bot,
                f"{day.model_calls} calls",
                f"{day.input_tokens}/{day.output_tokens} tokens",
                f"tokens {fusd(day.token_units)}",
                f"purchases {fusd(day.purchase_units)}",
                f"budget {budget}",
            ]
        )
    calls = sum(d.model_calls for d in days)
    tokens = sum(d.input_tokens + d.output_tokens for d in days)
    cost = sum(d.token_units for d in days)
    bought = sum(d.purchase_units for d in days)
    headline = (
        f"Agent usage today (UTC), {len(days)} agent(s): {calls} model calls, {tokens} tokens "
        f"costing {fusd(cost)} fUSD, purchases {fusd(bought)} fUSD."
    )
    return headline, rows
