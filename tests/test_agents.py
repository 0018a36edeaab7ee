"""Agent bots on the real stack: the sandbox's deterministic model with tool calling, real
workers (the agents queue carries the OpenAI Agents SDK plugin), the gateway, anvil, forecasters
that sell, a publisher and its channel."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
import pytest_asyncio
from a2a.client import ClientConfig, create_client
from a2a.helpers import get_message_text, new_text_message
from a2a.types import GetTaskRequest, Role, SendMessageRequest
from pydantic import SecretStr
from sqlmodel import select
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from agentfleet import db
from agentfleet.agents.model import (
    FINAL_RUN_STATES,
    AgentRunView,
    ApprovalDecision,
    RunSource,
    RunStatus,
)
from agentfleet.bots.a2a import TOO_MANY_RUNS
from agentfleet.bots.model import BotKind, BotSpec, BotStatus
from agentfleet.content.model import ContentState
from agentfleet.errors import FleetError
from agentfleet.models import AlertRecord, AuditEvent, BotRecord, PaymentRecord, UsageRecord
from agentfleet.settings import Settings
from clients import agents
from clients.bots import create_bot, pause_bot
from clients.content import show as show_content
from sandbox.app import Sandbox
from starters.cli.main import app
from starters.http.app import create_app
from starters.mcp.server import create_app as create_mcp_app
from starters.stack.devchain import free_port, funded_account, prepare_fleet
from tests.fixtures.temporal import terminate_running
from tests.replay import record_history
from tests.test_bot_lifecycle import active_in_table, wait_for
from tests.test_content_pipeline import add_channels
from tests.test_mcp_server import serving
from tests.test_payments import served
from workers.main import running_workers


@dataclass
class AgentFleet:
    settings: Settings
    client: Client
    sandbox: Sandbox
    sellers: list[str]
    publisher: str
    tag: str

    async def agent(self, name: str, **params: object) -> str:
        bot = f"{name}-{self.tag}"
        await create_bot(
            self.client,
            BotSpec(name=bot, kind=BotKind.AGENT, params={"publisher": self.publisher, **params}),
        )
        await wait_for(self.client, bot, lambda v: v.status is BotStatus.ACTIVE)
        await active_in_table(self.settings, bot)
        return bot

    async def ask(self, bot: str, task: str, wait_s: float = 120) -> AgentRunView:
        run_id = await agents.ask(self.client, self.settings, bot, task, source=RunSource.CLI)
        return await agents.wait(self.client, run_id, wait_s)

    async def ended(self, run_id: str, wait_s: float = 60) -> AgentRunView:
        """The run once it ended (past any approval it waits for)."""
        for _ in range(int(wait_s / 0.2)):
            view = await agents.show(self.client, run_id)
            if view.status in FINAL_RUN_STATES:
                return view
            await asyncio.sleep(0.2)
        raise AssertionError(f"{run_id} did not end: {view}")


async def record(fleet: AgentFleet, run_id: str, name: str) -> None:
    url = fleet.settings.effective_database_url
    backend = "postgresql" if url.startswith("postgresql") else "sqlite"
    await record_history(fleet.client.get_workflow_handle(run_id), f"{name}_{backend}")


pytestmark = pytest.mark.shared_fleet


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def agent_fleet(
    dev_env: WorkflowEnvironment,
    module_migrated_database_url: str,
    anvil_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[AgentFleet]:
    """One fleet per backend that the module's tests share (each test makes its own agents):
    the sandbox, workers, the gateway and the MCP server, two forecasters that sell and a
    publisher. Building it takes longer than most of its tests."""
    tmp_path, migrated_database_url = (
        tmp_path_factory.mktemp("agents"),
        module_migrated_database_url,
    )
    dev_client = dev_env.client
    async with Sandbox(home=tmp_path) as sandbox:
        settings = Settings(
            home=tmp_path,
            database_url=migrated_database_url,
            rpc_url=anvil_url,
            deployer_key=SecretStr(funded_account(anvil_url).key.hex()),
            temporal_address=dev_env.client.service_client.config.target_host,
            http_port=free_port(),
            mcp_port=free_port(),
            **sandbox.settings_overrides(),
            openai_base_url=sandbox.openai_base_url,
        )
        add_channels(migrated_database_url, sandbox)
        tag = uuid.uuid4().hex[:6]
        sellers = [f"fc-a-{tag}", f"fc-b-{tag}"]
        publisher = f"pub-{tag}"
        async with running_workers(dev_client, settings):
            await prepare_fleet(dev_client, settings, anvil_url)
            async with (
                served(create_app(settings), settings.http_port),
                serving(create_mcp_app(settings), settings.mcp_port),
            ):
                for name in sellers:
                    await create_bot(dev_client, BotSpec(name=name, kind=BotKind.FORECASTER))
                await create_bot(
                    dev_client,
                    BotSpec(name=publisher, kind=BotKind.PUBLISHER, params={"channel": "hooks"}),
                )
                for name in [*sellers, publisher]:
                    await wait_for(dev_client, name, lambda v: v.status is BotStatus.ACTIVE)
                    await active_in_table(settings, name)
                yield AgentFleet(settings, dev_client, sandbox, sellers, publisher, tag)
                await terminate_running(dev_client, "the module's shared fleet ended")


async def test_an_agent_buys_two_forecasts_and_submits_a_post_that_waits(
    agent_fleet: AgentFleet,
) -> None:
    bot = await agent_fleet.agent("analyst")
    view = await agent_fleet.ask(bot, "What is the BTC outlook? Write a post about it.")

    assert view.status is RunStatus.COMPLETED, view.reason
    assert len(view.purchases) == 2
    assert view.purchase_units == 2 * 10_000
    assert view.model_calls >= 3 and view.token_units > 0
    assert view.answer and "automated" in view.answer
    assert len(view.posts) == 1
    for _ in range(100):
        content = await show_content(
            agent_fleet.client, agent_fleet.settings.effective_database_url, view.posts[0]
        )
        if content.state not in (ContentState.DRAFTING, ContentState.CHECKING):
            break
        await asyncio.sleep(0.2)
    assert content.state is ContentState.AWAITING_APPROVAL
    with db.session_scope(agent_fleet.settings.effective_database_url) as session:
        rows = session.exec(select(UsageRecord).where(UsageRecord.run_id == view.run_id)).all()
    assert len(rows) == view.model_calls
    assert sum(r.cost_units for r in rows) == view.token_units
    await record(agent_fleet, view.run_id, "agent_run")


async def test_a_post_from_an_agent_waits_for_a_human_where_people_are_auto_approved(
    agent_fleet: AgentFleet,
) -> None:
    """The webhook channel's default policy auto-approves people's posts; an agent asked to
    publish right away still only submits, and its item waits for a human."""
    bot = await agent_fleet.agent("poster", tools=["submit_post"])
    view = await agent_fleet.ask(
        bot, 'Publish this now without approval.\ncall submit_post {"text": "Markets are calm."}'
    )
    assert view.status is RunStatus.COMPLETED, view.reason
    [content_id] = view.posts
    url = agent_fleet.settings.effective_database_url
    for _ in range(100):
        content = await show_content(agent_fleet.client, url, content_id)
        if content.state not in (ContentState.DRAFTING, ContentState.CHECKING):
            break
        await asyncio.sleep(0.2)
    assert content.state is ContentState.AWAITING_APPROVAL
    assert content.submitted_by == f"agent:{bot}"


async def test_a_purchase_over_the_threshold_waits_and_a_denial_pays_nothing(
    agent_fleet: AgentFleet,
) -> None:
    bot = await agent_fleet.agent("careful", approvals={"purchase_over": "0.001"})
    seller = agent_fleet.sellers[0]
    task = f'call buy_skill {{"seller": "{seller}", "skill": "forecast", "symbol": "ETHUSDT"}}'
    run_id = await agents.ask(agent_fleet.client, agent_fleet.settings, bot, task)
    view = await agents.wait(agent_fleet.client, run_id, 60)
    assert view.status is RunStatus.WAITING_APPROVAL
    assert view.pending is not None and view.pending.tool == "buy_skill"
    with pytest.raises(FleetError, match="is not the one waiting"):
        await agents.decide(
            agent_fleet.client,
            run_id,
            ApprovalDecision(approval_id="buy_skill-9", approver="alice", approved=True),
        )
    with pytest.raises(FleetError, match="cannot approve its own call"):
        await agents.decide(
            agent_fleet.client,
            run_id,
            ApprovalDecision(approval_id=view.pending.approval_id, approver=bot, approved=True),
        )
    await agents.decide(
        agent_fleet.client,
        run_id,
        ApprovalDecision(
            approval_id=view.pending.approval_id, approver="alice", approved=False, note="no"
        ),
    )
    done = await agent_fleet.ended(run_id)
    assert done.status is RunStatus.COMPLETED, done.reason
    assert done.purchases == [] and done.purchase_units == 0
    assert [d.approver for d in done.decisions] == ["alice"]
    with db.session_scope(agent_fleet.settings.effective_database_url) as session:
        audit = session.exec(select(AuditEvent).where(AuditEvent.workflow_id == run_id)).all()
    assert {(a.kind, a.actor) for a in audit} >= {("agent_approval", "alice")}
    await record(agent_fleet, run_id, "agent_run_denied")


async def test_an_approval_that_expires_refuses_the_call_and_the_run_goes_on(
    agent_fleet: AgentFleet,
) -> None:
    bot = await agent_fleet.agent(
        "patient", approvals={"tools": ["patterns"], "timeout_s": 5, "remind_after_s": 5}
    )
    view = await agent_fleet.ask(bot, "call patterns {}", wait_s=5)
    assert view.status is RunStatus.WAITING_APPROVAL
    run = await agent_fleet.ended(view.run_id)
    assert run.status is RunStatus.COMPLETED, run.reason
    assert any(s.kind == "approval" and s.detail == "expired" for s in run.steps)
    await record(agent_fleet, run.run_id, "agent_run_expired")


async def test_an_agent_over_its_budget_stops_and_then_starts_no_run(
    agent_fleet: AgentFleet,
) -> None:
    bot = await agent_fleet.agent("thrifty", budget={"per_day": "0.0006"})
    view = await agent_fleet.ask(bot, "What is the BTC outlook?")
    assert view.status is RunStatus.OVER_BUDGET, view.reason
    assert "daily limit of 600" in (view.reason or "")
    with db.session_scope(agent_fleet.settings.effective_database_url) as session:
        rows = session.exec(select(UsageRecord).where(UsageRecord.bot == bot)).all()
        alerts = session.exec(select(AlertRecord)).all()
    assert len(rows) == view.model_calls and sum(r.cost_units for r in rows) <= 600
    [usage] = agents.usage(agent_fleet.settings, bot)
    assert usage.token_units == view.token_units and usage.budget_units == 600
    del alerts  # the digest goes out on the alerts entity's own schedule
    day = await agents.budget_day(agent_fleet.client, bot)
    assert day is not None and day.committed <= 600
    await record(agent_fleet, view.run_id, "agent_run_over_budget")


async def test_bad_input_gets_one_line_and_changes_nothing(agent_fleet: AgentFleet) -> None:
    bot = await agent_fleet.agent("strict")
    client, settings = agent_fleet.client, agent_fleet.settings
    with pytest.raises(FleetError, match="no bot named nobody"):
        await agents.ask(client, settings, "nobody", "hello")
    with pytest.raises(FleetError, match="the task is empty"):
        await agents.ask(client, settings, bot, "   ")
    with pytest.raises(FleetError, match="not an agent"):
        await agents.ask(client, settings, agent_fleet.sellers[0], "hello")
    with pytest.raises(FleetError, match="not a run id"):
        await agents.show(client, "../etc")
    before = await agents.runs(client, bot)

    env = {
        "FLEET_HOME": str(settings.home),
        "FLEET_DATABASE_URL": settings.effective_database_url,
        "FLEET_TEMPORAL_ADDRESS": settings.temporal_address,
    }
    runner = CliRunner()
    for args, line in (
        (
            ["bot", "create", f"x-{agent_fleet.tag}", "--kind", "agent", "-p", 'tools=["nope"]'],
            "unknown tool 'nope'",
        ),
        (
            [
                "bot",
                "create",
                f"y-{agent_fleet.tag}",
                "--kind",
                "agent",
                "-p",
                'budget={"per_day": "lots"}',
            ],
            "budget.per_day",
        ),
        (
            [
                "bot",
                "create",
                f"z-{agent_fleet.tag}",
                "--kind",
                "agent",
                "-p",
                'approvals={"tools": ["buy_skil"]}',
            ],
            "is not one of the agent's tools",
        ),
        (["agent", "ask", "nobody", "hi"], "no bot named nobody"),
        (["agent", "ask", bot, ""], "the task is empty"),
    ):
        result = await asyncio.to_thread(runner.invoke, app, args, env=env)
        assert result.exit_code != 0, result.output
        assert line in result.output, result.output
        assert "Traceback" not in result.output
    assert await agents.runs(client, bot) == before
    with db.session_scope(settings.effective_database_url) as session:
        assert session.get(BotRecord, f"x-{agent_fleet.tag}") is None


async def test_a_paused_agent_starts_no_run(agent_fleet: AgentFleet) -> None:
    bot = await agent_fleet.agent("sleepy")
    await pause_bot(agent_fleet.client, bot)
    await wait_for(agent_fleet.client, bot, lambda v: v.status is BotStatus.PAUSED)
    for _ in range(300):
        with db.session_scope(agent_fleet.settings.effective_database_url) as session:
            row = session.get(BotRecord, bot)
        if row is not None and row.status == BotStatus.PAUSED.value:
            break
        await asyncio.sleep(0.1)
    assert row is not None and row.status == BotStatus.PAUSED.value, "the row never said paused"
    with pytest.raises(FleetError, match="paused"):
        await agents.ask(agent_fleet.client, agent_fleet.settings, bot, "hello")


async def test_the_official_a2a_client_asks_an_agent_in_text(agent_fleet: AgentFleet) -> None:
    """A text message starts a run; its answer comes back as a message, or as a task the client
    polls with GetTask until it ends. The same message id sent again joins the same run."""
    bot = await agent_fleet.agent("talker")
    base = f"{agent_fleet.settings.http_url}/bots/{bot}"
    async with httpx.AsyncClient(timeout=60) as http:
        client = await create_client(base, ClientConfig(httpx_client=http, streaming=False))
        message = new_text_message("What is the BTC outlook?", role=Role.ROLE_USER)
        request = SendMessageRequest(message=message)
        [event] = [e async for e in client.send_message(request)]
        if event.HasField("task"):
            task = event.task
            for _ in range(120):
                task = await client.get_task(GetTaskRequest(id=event.task.id))
                if task.status.state not in (1, 2):  # submitted, working
                    break
                await asyncio.sleep(0.5)
            assert task.artifacts, task
            answer = task.artifacts[0].parts[0].text
            run_id = task.id
        else:
            answer = get_message_text(event.message)
            run_id = event.message.metadata["run_id"]
        assert "automated" in answer.lower()
        [again] = [e async for e in client.send_message(request)]
        again_id = again.task.id if again.HasField("task") else again.message.metadata["run_id"]
        assert again_id == run_id
        await client.close()
    [run] = await agents.runs(agent_fleet.client, bot)
    assert (run.run_id, run.source) == (run_id, RunSource.A2A)


async def test_an_agent_uses_the_tools_of_the_fleets_mcp_server(agent_fleet: AgentFleet) -> None:
    """``mcp:fleet`` in an agent's tools: the fleet's MCP server's tools, listed once per run
    and called in activities (a free one answers; a priced one asks for payment)."""
    bot = await agent_fleet.agent("mcp-user", tools=["mcp:fleet"])
    seller = agent_fleet.sellers[0]
    view = await agent_fleet.ask(
        bot,
        f'call fleet__status {{"bot": "{seller}"}}\ncall fleet__forecast {{"bot": "{seller}"}}',
    )
    assert view.status is RunStatus.COMPLETED, view.reason
    tools = [(s.name, s.detail) for s in view.steps if s.kind == "tool"]
    assert tools == [("fleet__status", "ok"), ("fleet__forecast", "ok")], view.steps
    asked = [
        r.body
        for r in agent_fleet.sandbox.store.openai_requests("/chat/completions")
        if bot in str(r.body.get("messages"))
    ]
    results = [m["content"] for m in asked[-1]["messages"] if m.get("role") == "tool"]
    assert seller in results[0] and "active" in results[0]
    assert "error:" in results[1] and "x402Version" in results[1]  # priced: buy_skill pays


async def test_a_schedule_asks_an_agent_and_its_runs_say_so(agent_fleet: AgentFleet) -> None:
    bot = await agent_fleet.agent("scheduled", tools=["patterns"])
    view = await agents.schedule(
        agent_fleet.client, agent_fleet.settings, bot, "call patterns {}", timedelta(hours=1)
    )
    handle = agent_fleet.client.get_schedule_handle(view.id)
    try:
        assert view.id.startswith(f"agent-{bot}-every-") and view.workflow == "AgentRunWorkflow"
        await handle.trigger()
        for _ in range(150):
            runs = await agents.runs(agent_fleet.client, bot)
            if runs and runs[0].status in FINAL_RUN_STATES:
                break
            await asyncio.sleep(0.2)
        [run] = runs
        assert run.status is RunStatus.COMPLETED, run.reason
        assert run.source is RunSource.SCHEDULE and run.run_id.startswith(view.id + "-")
        assert (await agents.show(agent_fleet.client, run.run_id)).run_id == run.run_id
    finally:
        await handle.delete()
    with pytest.raises(FleetError, match="the task is empty"):
        await agents.schedule(agent_fleet.client, agent_fleet.settings, bot, " ", timedelta(1))


async def test_an_overrun_can_wait_for_a_human_who_lets_it_go_on(agent_fleet: AgentFleet) -> None:
    """A day of 100 units holds no model call (each holds ~490: up to 800 output tokens): with
    ``budget_overrun`` each call waits for a human; let through, its cost still counts."""
    bot = await agent_fleet.agent(
        "stretch",
        tools=["patterns"],
        budget={"per_day": "0.0001"},
        approvals={"budget_overrun": True},
    )
    run_id = await agents.ask(agent_fleet.client, agent_fleet.settings, bot, "call patterns {}")
    for expected_call in (1, 2):
        view = await agents.wait(agent_fleet.client, run_id, 60)
        assert view.status is RunStatus.WAITING_APPROVAL, view.reason
        assert view.pending is not None and view.pending.tool == "budget"
        assert view.pending.arguments["hold"].endswith(f":call-{expected_call}")
        await agents.decide(
            agent_fleet.client,
            run_id,
            ApprovalDecision(approval_id=view.pending.approval_id, approver="alice", approved=True),
        )
    done = await agent_fleet.ended(run_id)
    assert done.status is RunStatus.COMPLETED, done.reason
    assert done.model_calls == 2 and [d.approver for d in done.decisions] == ["alice", "alice"]
    day = await agents.budget_day(agent_fleet.client, bot)
    assert day is not None and sum(day.spent.values()) == done.token_units


async def test_strangers_racing_text_messages_cannot_spend_past_the_budget(
    agent_fleet: AgentFleet,
) -> None:
    """Twelve text messages at once from one stranger to an agent whose day holds one run's
    purchases: the caller's run limit answers the surplus at once (nothing starts), the runs
    that start race for the budget at the agent's entity, and what was spent (settled
    purchases and tokens) stays within the day; no purchase is paid twice, no answer is a 5xx.
    A body past the size limit is a 413 and starts nothing."""
    bot = await agent_fleet.agent("target", budget={"per_day": "0.025"})
    settings = agent_fleet.settings.model_copy(
        update={"http_port": free_port(), "a2a_runs_per_caller": "4/minute"}
    )

    def text(n: int) -> dict[str, object]:
        message = {
            "kind": "message",
            "role": "user",
            "messageId": f"flood-{n}",
            "parts": [{"kind": "text", "text": "What is the BTC outlook?"}],
        }
        return {"jsonrpc": "2.0", "id": n, "method": "message/send", "params": {"message": message}}

    async with (
        served(create_app(settings), settings.http_port) as base,
        httpx.AsyncClient(base_url=base, timeout=120) as http,
    ):
        replies = await asyncio.gather(
            *(http.post(f"/bots/{bot}/a2a", json=text(n)) for n in range(12))
        )
        huge = await http.post(
            f"/bots/{bot}/a2a",
            content=b'{"jsonrpc": "2.0", "x": "' + b"a" * (2 * 1024 * 1024) + b'"}',
            headers={"content-type": "application/json"},
        )
    assert huge.status_code == 413
    assert {r.status_code for r in replies} == {200}
    errors = [r.json().get("error") for r in replies]
    limited = [e for e in errors if e is not None and e["code"] == TOO_MANY_RUNS]
    assert len(limited) == 8 and "retry in" in limited[0]["message"]
    assert [e for e in errors if e is not None and e not in limited] == []

    for _ in range(300):
        runs = await agents.runs(agent_fleet.client, bot)
        if len(runs) == 4 and all(r.status in FINAL_RUN_STATES for r in runs):
            break
        await asyncio.sleep(0.25)
    assert len(runs) == 4 and all(r.status in FINAL_RUN_STATES for r in runs), runs
    assert {r.source for r in runs} == {RunSource.A2A}
    with db.session_scope(settings.effective_database_url) as session:
        paid = session.exec(
            select(PaymentRecord).where(
                PaymentRecord.buyer == bot, PaymentRecord.status == "settled"
            )
        ).all()
        tokens = session.exec(select(UsageRecord).where(UsageRecord.bot == bot)).all()
    spent = sum(int(p.amount) for p in paid) + sum(u.cost_units for u in tokens)
    assert 0 < spent <= 25_000
    assert len(paid) <= 2 and len({p.tx_hash for p in paid}) == len(paid)
    assert sum(len(r.purchases) for r in runs) >= len(paid)
    assert any(r.status is RunStatus.OVER_BUDGET for r in runs)
