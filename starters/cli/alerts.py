"""``fleet alerts ...``: the grouped alerts the ``alerts`` entity recorded and sent.

Alerts are raised by the workflows that notice trouble (health, payments, reconciliation,
content approvals, learning) and grouped by the ``AlertsWorkflow`` entity; each message it sends
is one row of the ``alerts`` table, which this command reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer
from rich.table import Table

from agentfleet.operations.alerts import AlertKind, AlertRow, headline, recent_alerts
from starters.cli.output import print_rows, read_database
from starters.cli.settings_arg import load_settings

app = typer.Typer(help="Alerts: grouped health, payment, reconciliation, content, learning alerts.")

SEVERITY_STYLE = {"info": "cyan", "warning": "yellow", "critical": "bold red"}


@app.command("list")
def list_alerts(
    kind: Annotated[AlertKind | None, typer.Option("--kind", help="Only this kind.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Recent grouped alerts, newest first: kind, how many, about what, where they went."""
    settings = load_settings(as_json)
    url = settings.effective_database_url
    rows = read_database(
        "alerts", lambda: recent_alerts(url, kind=kind, limit=limit), as_json=as_json
    )
    print_rows(rows, as_json, _alerts_table, "no alerts recorded")


def _alerts_table(rows: Sequence[AlertRow]) -> Table:
    table = Table("at", "severity", "alert", "repeats", "sent to")
    for row in rows:
        style = SEVERITY_STYLE.get(row.severity.value, "")
        table.add_row(
            row.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            f"[{style}]{row.severity.value}[/]",
            headline(row),
            str(row.repeats or ""),
            ", ".join(row.channels) or "(recorded only)",
        )
    return table
