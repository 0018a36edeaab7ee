"""`fleet up --detach` with its demo, as a user runs it: every component up, a working fleet of
real bots (and a real remote bot), `status`, the Telegram command center, `down`, and a restart
that keeps the history. One stack for all of it: a whole demo run costs about a minute."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import urllib.request
from pathlib import Path

import pytest

from tests.fixtures.stack import fleet, pids_of, temporal, wait_gone
from tests.test_mcp_server import mcp_status
from tests.test_stack import assert_one_line_error, http_get

pytestmark = pytest.mark.stack

DEMO_BOTS = {
    "forecaster-1",
    "forecaster-2",
    "forecaster-3",
    "publisher-1",
    "analyst-1",
    "remote-1",
}


def test_up_detach_seeds_a_demo_fleet_that_answers_then_status_down_and_restart_keep_history(
    stack_env: dict[str, str],
) -> None:
    up = fleet(stack_env, "up", "--detach", "--json")
    assert up.returncode == 0, up.stderr
    started = json.loads(up.stdout)
    assert started["healthy"] is True
    components = {c["name"]: c for c in started["components"]}
    assert set(components) == {
        "temporal",
        "anvil",
        "database",
        "sandbox",
        "http",
        "mcp",
        "worker",
        "telegram",
        "remote-bot",
    }
    assert all(c["up"] for c in components.values())
    assert started["demo"] and "stack check" in started["demo"][0], started["demo"]
    assert (
        asyncio.run(mcp_status(components["mcp"]["url"], "forecaster-1"))["bot"] == "forecaster-1"
    )
    remote = components["remote-bot"]
    assert remote["up"] is True
    assert remote["ports"] == {"http": int(stack_env["FLEET_REMOTE_BOT_PORT"])}
    fleet_line = next(line for line in started["demo"] if line.startswith("demo fleet"))
    assert fleet_line.startswith("demo fleet: 6 bots active"), started["demo"]
    paid_line = next(line for line in started["demo"] if line.startswith("paid purchase"))
    assert "forecaster-1 paid forecaster-2 0.01 fUSD" in paid_line, started["demo"]

    learning_line = next(line for line in started["demo"] if line.startswith("learning"))
    assert "2 digits rounds with 3 forecasters, champion digits-v" in learning_line, learning_line
    content_line = next(line for line in started["demo"] if line.startswith("content pipeline"))
    assert "published" in content_line and "awaiting_approval" in content_line, content_line
    inbox = fleet(stack_env, "channel", "inbox", "demo-hooks", "--json")
    assert inbox.returncode == 0, inbox.stderr
    [posted] = json.loads(inbox.stdout)
    assert "Automated agent operated by fleet." in posted["text"]
    agent_line = next(line for line in started["demo"] if line.startswith("agent run"))
    assert "analyst-1 bought 2 forecasts (0.020000 fUSD)" in agent_line, agent_line
    assert "awaits approval" in agent_line, agent_line
    [run] = json.loads(fleet(stack_env, "agent", "runs", "--json").stdout)
    assert run["status"] == "completed" and "automated" in run["answer"]
    [usage] = json.loads(fleet(stack_env, "agent", "usage", "--json").stdout)
    assert usage["bot"] == "analyst-1" and usage["purchase_units"] == 20_000
    assert usage["model_calls"] == run["model_calls"] and usage["token_units"] > 0
    waiting = fleet(stack_env, "content", "list", "--state", "awaiting_approval", "--json")
    assert waiting.returncode == 0, waiting.stderr
    items = json.loads(waiting.stdout)
    [agents_post] = [i for i in items if i["content_id"] == run["posts"][0]]
    assert agents_post["submitted_by"] == "agent:analyst-1"
    [item] = [i for i in items if i["content_id"] != run["posts"][0]]
    assert item["content_id"].startswith("demo-chat-"), item
    # The demo's Telegram post is approved in the command center, the agent's post from the CLI.
    pending = fleet(stack_env, "telegram", "say", "/pending", "--json")
    assert pending.returncode == 0, pending.stderr
    [card] = [r for r in json.loads(pending.stdout)["replies"] if item["content_id"] in r["text"]]
    approve = card["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    pressed = fleet(stack_env, "telegram", "press", approve, "--json")
    assert pressed.returncode == 0, pressed.stderr
    assert json.loads(pressed.stdout)["replies"][0]["text"].startswith("Approved demo-chat-")
    approved = fleet(stack_env, "content", "approve", agents_post["content_id"], "--json")
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout)["state"] in {"publishing", "published"}

    payments = fleet(stack_env, "payments", "list", "--json")
    assert payments.returncode == 0, payments.stderr
    paid = {(p["buyer"], p["seller"], p["status"]) for p in json.loads(payments.stdout)}
    assert ("forecaster-1", "forecaster-2", "settled") in paid
    assert sum(1 for p in paid if p[0] == "analyst-1" and p[2] == "settled") == 2

    listed = fleet(stack_env, "bot", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    bots = {b["name"]: b for b in json.loads(listed.stdout)}
    assert set(bots) == DEMO_BOTS
    assert {b["status"] for b in bots.values()} == {"active"}
    assert all(b["agent_id"] is not None and b["address"] for b in bots.values())
    card = f"http://127.0.0.1:{stack_env['FLEET_REMOTE_BOT_PORT']}/.well-known/agent-card.json"
    assert bots["remote-1"]["params"]["url"] == card

    http = f"http://127.0.0.1:{stack_env['FLEET_HTTP_PORT']}"
    with urllib.request.urlopen(f"{http}/bots/forecaster-1/registration.json") as response:  # noqa: S310
        registration = json.loads(response.read())
    assert registration["active"] is True
    assert registration["registrations"][0]["agentId"] == bots["forecaster-1"]["agent_id"]

    command = fleet(stack_env, "command", "forecast", "--all", "BTCUSDT", "1h", "--json")
    assert command.returncode == 0, command.stderr
    result = json.loads(command.stdout)
    answers = {a["name"]: a for a in result["answers"]}
    assert set(answers) == DEMO_BOTS
    for name in ("forecaster-1", "forecaster-2", "forecaster-3", "remote-1"):
        assert answers[name]["ok"] is True, answers[name]
        assert answers[name]["data"]["symbol"] == "BTCUSDT"
    assert answers["remote-1"]["data"]["remote_name"] == "remote-1"
    assert answers["publisher-1"]["ok"] is False  # publishers do not forecast, and say so
    assert answers["analyst-1"]["ok"] is False  # agents answer tasks, not the skill
    assert result["summary"]["forecast"]["count"] == 4

    assert_no_key_material(stack_env, bots)

    status = fleet(stack_env, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["healthy"] is True
    assert "<html" in http_get(f"http://127.0.0.1:{stack_env['FLEET_UI_PORT']}/").lower()
    metrics = http_get(f"http://127.0.0.1:{stack_env['FLEET_METRICS_PORT']}/metrics")
    assert "fleet_build_info" in metrics
    assert "temporal_workflow_completed_total" in metrics
    assert "temporal_num_pollers" in metrics
    said = fleet(stack_env, "telegram", "say", "/health", "--json")
    assert said.returncode == 0, said.stderr
    replies = json.loads(said.stdout)["replies"]
    assert re.match(r"\d+ bots: ", replies[0]["text"]), replies

    assert_one_line_error(fleet(stack_env, "up", "--detach"), "already running")

    down = fleet(stack_env, "down")
    assert down.returncode == 0, down.stderr
    assert wait_gone(pids_of(started)) == []
    stopped = fleet(stack_env, "status", "--json")
    assert stopped.returncode == 1
    assert json.loads(stopped.stdout)["running"] is False

    home = Path(stack_env["FLEET_HOME"])
    assert (home / "temporal.db").is_file()
    with sqlite3.connect(home / "fleet.db") as conn:
        kinds = [
            row[0]
            for row in conn.execute("select kind from audit_events where kind like 'stack.%'")
        ]
    assert kinds == ["stack.checked"]

    restarted = fleet(stack_env, "up", "--detach", "--no-demo", "--json")
    assert restarted.returncode == 0, restarted.stderr
    assert json.loads(restarted.stdout)["demo"] == []
    listed = temporal(stack_env, "workflow", "list", "--output", "json")
    assert listed.returncode == 0, listed.stderr
    workflow_ids = [w["execution"]["workflowId"] for w in json.loads(listed.stdout)]
    demo_id = started["demo"][0].split()[2].rstrip(":")
    assert demo_id in workflow_ids
    assert f"bot-{sorted(DEMO_BOTS)[0]}" in workflow_ids
    assert fleet(stack_env, "down").returncode == 0
    assert wait_gone(pids_of(json.loads(restarted.stdout))) == []


def assert_no_key_material(stack_env: dict[str, str], bots: dict[str, dict[str, object]]) -> None:
    """No bot's private key (nor the keystore secret) in any history, log line or metric."""
    from agentfleet import keystore
    from agentfleet.settings import Settings

    settings = Settings(home=stack_env["FLEET_HOME"])
    secrets = [keystore.master_secret(settings)]
    for bot in bots.values():
        account = keystore.load_account(settings, str(bot["address"]))
        secrets.append(account.key.hex().removeprefix("0x"))
    assert len(secrets) == len(bots) + 1
    texts = [
        p.read_text(errors="replace")
        for p in (Path(stack_env["FLEET_HOME"]) / "logs").glob("*.log")
    ]
    metrics_url = f"http://127.0.0.1:{stack_env['FLEET_METRICS_PORT']}/metrics"
    with urllib.request.urlopen(metrics_url) as response:  # noqa: S310
        texts.append(response.read().decode())
    for name in bots:
        shown = temporal(stack_env, "workflow", "show", "-w", f"bot-{name}", "-o", "json")
        assert shown.returncode == 0, shown.stderr
        texts.append(shown.stdout)
    listed = temporal(stack_env, "workflow", "list", "-o", "json")
    for workflow in json.loads(listed.stdout):
        workflow_id = workflow["execution"]["workflowId"]
        if workflow_id.startswith("tx-"):
            texts.append(
                temporal(stack_env, "workflow", "show", "-w", workflow_id, "-o", "json").stdout
            )
    haystack = "\n".join(texts).lower()
    for secret in secrets:
        assert secret.lower() not in haystack, "key material leaked"
