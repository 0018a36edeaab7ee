"""The Telegram command center against the local Bot API server (the sandbox), with real bots on
the dev server and anvil, on SQLite and PostgreSQL: every command for each role, a polite refusal
for strangers, inline approval buttons that drive a real content pipeline to published, and bad
commands that change nothing.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from prometheus_client import REGISTRY
from pydantic import SecretStr
from sqlmodel import select
from temporalio.client import Client

from agentfleet import db
from agentfleet.agents.model import RunStatus
from agentfleet.bots.model import BotKind, BotSpec, BotStatus
from agentfleet.content import store as content_store
from agentfleet.content.model import (
    MAX_LENGTH,
    ChannelConfig,
    ChannelKind,
    ContentOrder,
    ContentState,
    ContentView,
    RateLimit,
    default_limit,
)
from agentfleet.errors import FleetError
from agentfleet.models import AuditEvent, BotRecord, UsageRecord
from agentfleet.netguard import UrlRule
from agentfleet.operations.operators import Permission, Role, parse_access_list
from agentfleet.settings import Settings
from clients import agents
from clients import content as content_ops
from clients.bots import configure_bot, create_bot, show_bot
from sandbox.app import Sandbox
from sandbox.buckets import TelegramLimits
from sandbox.store import TelegramMessage
from starters.stack.devchain import funded_account, prepare_fleet
from starters.telegram import CommandCenter
from starters.telegram import bot as telegram
from starters.telegram import replies as reply_format
from tests.test_bot_lifecycle import active_in_table
from workers.main import running_workers

VIEWER, OPERATOR, APPROVER, ADMIN, STRANGER = 2001, 2002, 2003, 2004, 2999
ACCESS = "2001:viewer:vera, 2002:operator:olga, 2003:approver:alice, 2004:admin:adam"
ROLES = {VIEWER: Role.VIEWER, OPERATOR: Role.OPERATOR, APPROVER: Role.APPROVER, ADMIN: Role.ADMIN}
POLICY = """
name: tg-test
version: 1
moderation: false
approval:
  approvers: [alice, adam]
  expire_after: 60s
  remind_after: 1s
  notify_channel: approvers
"""
POSTS = "-100777"
APPROVERS_CHAT = "-100888"
FAST = TelegramLimits(private_chat=RateLimit(rate_per_s=50.0, burst=10))


@dataclass
class Center:
    client: Client
    settings: Settings
    sandbox: Sandbox
    http: httpx.AsyncClient
    a: str
    b: str
    """Two active forecasters (names unique per test: the dev server outlives tests)."""

    @property
    def url(self) -> str:
        return self.settings.effective_database_url

    def named(self, text: str) -> str:
        """``text`` with ``{a}`` and ``{b}`` replaced by this test's bot names."""
        return text.replace("{a}", self.a).replace("{b}", self.b)

    def messages(self, chat: int | str) -> list[TelegramMessage]:
        return self.sandbox.store.telegram_messages(str(chat))

    async def say(self, user: int, text: str, expect: int = 1) -> list[TelegramMessage]:
        """``user`` writes ``text`` in their private chat; the command center's next replies."""
        before = len(self.messages(user))
        pushed = await self.http.post(
            "/sandbox/telegram/updates", json={"chat_id": user, "text": text}
        )
        pushed.raise_for_status()
        return await self._replies(user, before, expect)

    async def press(
        self, user: int, message_id: int, data: str, chat: int | None = None
    ) -> list[TelegramMessage]:
        """``user`` presses a button of message ``message_id`` in ``chat`` (default: their
        private chat); the command center's reply there."""
        chat = chat or user
        before = len(self.messages(chat))
        pushed = await self.http.post(
            "/sandbox/telegram/updates",
            json={
                "chat_id": chat,
                "from_id": user,
                "callback_data": data,
                "message_id": message_id,
            },
        )
        pushed.raise_for_status()
        return await self._replies(chat, before, 1)

    async def _replies(self, chat: int, before: int, expect: int) -> list[TelegramMessage]:
        for _ in range(600):
            found = self.messages(chat)[before:]
            if len(found) >= expect:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"no reply in chat {chat}; got {[m.text for m in found]}")

    async def bot_status(self, name: str) -> BotStatus:
        return (await show_bot(self.client, name)).status

    async def agent(self, **params: object) -> str:
        """A new active agent bot (the sandbox's deterministic model)."""
        name = f"tgag-{uuid.uuid4().hex[:6]}"
        await create_bot(self.client, BotSpec(name=name, kind=BotKind.AGENT, params=params))
        await wait_status(self.client, name, BotStatus.ACTIVE)
        await active_in_table(self.settings, name)
        return name

    async def more(self, chat: int, before: int, expect: int) -> list[TelegramMessage]:
        """The chat's messages after the first ``before`` once there are ``expect``."""
        return await self._replies(chat, before, expect)


@pytest_asyncio.fixture(loop_scope="session")
async def center(
    dev_client: Client, migrated_database_url: str, anvil_url: str, tmp_path: Path
) -> AsyncIterator[Center]:
    """Two active forecasters, a publisher, a Telegram channel needing approval,
    workers, the sandbox Bot API and the command center polling it."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    async with Sandbox(home=tmp_path, telegram_limits=FAST) as sandbox:
        settings = Settings(
            home=tmp_path,
            database_url=migrated_database_url,
            rpc_url=anvil_url,
            deployer_key=SecretStr(funded_account(anvil_url).key.hex()),
            content_policy=policy,
            telegram_users=ACCESS,
            **sandbox.settings_overrides(),
            openai_base_url=sandbox.openai_base_url,
        )
        for name, chat in (("posts", POSTS), ("approvers", APPROVERS_CHAT)):
            content_store.save_channel(
                migrated_database_url,
                ChannelConfig(
                    name=name,
                    kind=ChannelKind.TELEGRAM,
                    target=chat,
                    limit=default_limit(ChannelKind.TELEGRAM, chat),
                    max_length=MAX_LENGTH[ChannelKind.TELEGRAM],
                ),
            )
        with db.session_scope(migrated_database_url) as session:
            session.add(BotRecord(name="pub-1", kind="publisher", owner="fleet", status="active"))
            session.commit()
        stop = asyncio.Event()
        async with (
            running_workers(dev_client, settings),
            httpx.AsyncClient(base_url=sandbox.url) as http,
        ):
            await prepare_fleet(dev_client, settings, anvil_url)
            suffix = uuid.uuid4().hex[:6]
            names = (f"tga-{suffix}", f"tgb-{suffix}")
            for name in names:
                await create_bot(dev_client, BotSpec(name=name, kind=BotKind.FORECASTER))
            for name in names:
                await wait_status(dev_client, name, BotStatus.ACTIVE)
            polling = asyncio.create_task(
                telegram.serve(settings, dev_client, stop, chat_interval_s=0.02)
            )
            ready = tmp_path / telegram.READY_FILE
            for _ in range(200):
                if ready.exists() or polling.done():
                    break
                await asyncio.sleep(0.05)
            if polling.done():
                polling.result()
            try:
                yield Center(dev_client, settings, sandbox, http, *names)
            finally:
                stop.set()
                await asyncio.wait_for(polling, 30)


async def wait_status(client: Client, name: str, status: BotStatus) -> None:
    for _ in range(600):
        view = await show_bot(client, name)
        if view.status is status:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} stayed {view.status}: {view.reason}")


REFUSED = "Sorry, your role"

# (command, permission it needs); every one runs for every role, in this order.
MATRIX: list[tuple[str, Permission]] = [
    ("/help", Permission.READ),
    ("/status", Permission.READ),
    ("/status {a}", Permission.READ),
    ("/health", Permission.READ),
    ("/forecast all BTCUSDT 1h", Permission.READ),
    ("/forecast {a} ETHUSDT 15m", Permission.READ),
    ("/performance", Permission.READ),
    ("/performance 7d", Permission.READ),
    ("/intelligence", Permission.READ),
    ("/alerts", Permission.READ),
    ("/dashboard", Permission.READ),
    ("/payments", Permission.READ),
    ("/payments {a}", Permission.READ),
    ("/balance {a}", Permission.READ),
    ("/pending", Permission.READ),
    ("/usage", Permission.READ),
    ("/usage {a}", Permission.READ),
    ("/ask {a} what is the outlook", Permission.STEER),
    ("/tune all", Permission.STEER),
    ("/tune {a} alpha=0.5", Permission.STEER),
    ("/config {a} alpha 0.4", Permission.STEER),
    ("/pause {b}", Permission.STEER),
    ("/resume {b}", Permission.STEER),
    ("/restart {b}", Permission.STEER),
    ("/approve no-such-item", Permission.DECIDE),
    ("/reject no-such-item not good", Permission.DECIDE),
    ("/edit no-such-item new words", Permission.DECIDE),
]


async def test_every_command_answers_each_role_and_refuses_what_the_role_may_not(
    center: Center,
) -> None:
    for user, role in ROLES.items():
        for text, needs in MATRIX:
            replies = await center.say(user, center.named(text))
            answer = replies[0].text
            if needs in role.permissions:
                assert not answer.startswith(("Sorry", "Something went wrong")), (
                    role,
                    text,
                    answer,
                )
            else:
                assert answer.startswith(REFUSED), (role, text, answer)
    assert await center.bot_status(center.b) is BotStatus.ACTIVE
    assert (await show_bot(center.client, center.a)).params["alpha"] == 0.4

    help_text = (await center.say(VIEWER, "/help"))[0].text
    assert "automated bot" in help_text and "/pause" not in help_text
    forecast = (await center.say(ADMIN, "/forecast all BTCUSDT 1h"))[0].text
    assert forecast.startswith("forecast to all bots: 2 ok") and center.a in forecast
    status = (await center.say(VIEWER, f"/status {center.a}"))[0].text
    assert f"{center.a} (forecaster" in status and "Automated agent operated by fleet." in status
    balance = (await center.say(VIEWER, f"/balance {center.a}"))[0].text
    assert "fUSD" in balance and "0x" in balance
    assert (await center.say(VIEWER, "/alerts"))[0].text == "No alerts yet."
    missing = (await center.say(ADMIN, "/approve no-such-item"))[0].text
    assert missing.startswith("Nothing changed: no content no-such-item")

    center.settings.telegram_max_rows = 1  # FLEET_TELEGRAM_MAX_ROWS, read at each reply
    replies = await center.say(ADMIN, "/forecast all BTCUSDT 1h", expect=2)
    assert "the full table is attached" in replies[0].text
    document = replies[1].document
    assert document is not None and document["file_name"].endswith(".csv")
    lines = document["text"].strip().splitlines()
    assert lines[0] == "bot,status,answer" and len(lines) == 4  # tg-a, tg-b, pub-1


async def test_steering_commands_change_the_bot_and_a_viewers_change_nothing(
    center: Center,
) -> None:
    refused = await center.say(VIEWER, f"/pause {center.b}")
    assert refused[0].text.startswith(REFUSED)
    assert await center.bot_status(center.b) is BotStatus.ACTIVE

    paused = await center.say(OPERATOR, f"/pause {center.b}")
    assert paused[0].text == f"{center.b} is paused (pause by olga)."
    assert await center.bot_status(center.b) is BotStatus.PAUSED
    resumed = await center.say(ADMIN, f"/resume {center.b}")
    assert resumed[0].text == f"{center.b} is active (resume by adam)."
    with db.session_scope(center.url) as session:
        kinds = {(e.kind, e.actor) for e in session.query(AuditEvent).all()}
    assert ("telegram.pause", "olga") in kinds and ("telegram.refused", "2001") in kinds

    stranger = await center.say(STRANGER, f"/pause {center.a}")
    assert stranger[0].text.startswith("Sorry, this automated bot only answers")
    assert str(STRANGER) in stranger[0].text
    assert await center.bot_status(center.a) is BotStatus.ACTIVE
    with db.session_scope(center.url) as session:
        refusals = [e for e in session.query(AuditEvent).all() if e.actor == str(STRANGER)]
    assert [(e.kind, e.subject) for e in refusals] == [("telegram.refused", "/pause")]


async def test_money_and_url_settings_are_an_admins_and_a_url_the_fleet_may_not_call_is_refused(
    center: Center,
) -> None:
    remote = f"tgr-{uuid.uuid4().hex[:6]}"
    spec = BotSpec(name=remote, kind=BotKind.REMOTE, params={"url": "http://127.0.0.1:8310"})
    await create_bot(center.client, spec, UrlRule.of(center.settings))
    await wait_status(center.client, remote, BotStatus.ACTIVE)
    before = {name: (await show_bot(center.client, name)).params for name in (center.a, remote)}

    for text, refused in [
        ('/config {a} prices {"forecast": "0"}', "/config prices (money settings need an admin)"),
        ('/config {a} spending {"per_call": "50"}', "/config spending (money settings"),
        (f"/config {remote} url https://bot.example.org/", "/config url (url settings need"),
    ]:
        answer = (await center.say(OPERATOR, center.named(text)))[0].text
        assert answer.startswith(f"{REFUSED} (operator) does not allow {refused}"), answer
    steered = (await center.say(OPERATOR, f"/config {remote} timeout_s 9"))[0].text
    assert steered == f"{remote} configured by olga: timeout_s=9.0"
    after = {name: (await show_bot(center.client, name)).params for name in (center.a, remote)}
    assert after[center.a] == before[center.a]
    assert after[remote] == {"url": "http://127.0.0.1:8310/", "timeout_s": 9.0}
    with db.session_scope(center.url) as session:
        audited = session.exec(select(AuditEvent).where(AuditEvent.actor == str(OPERATOR))).all()
        refusals = [e.subject for e in audited if e.kind == "telegram.refused"]
    assert len(refusals) == 3 and refusals[0].startswith("/config prices")

    priced = (await center.say(ADMIN, center.named('/config {a} prices {"forecast": "0.02"}')))[0]
    assert priced.text.startswith(f"{center.a} configured by adam: prices=")
    assert (await show_bot(center.client, center.a)).params["prices"] == {"forecast": "0.02"}
    metadata = (await center.say(ADMIN, f"/config {remote} url https://169.254.169.254/"))[0]
    assert metadata.text.startswith("Nothing changed: invalid remote parameters: url: refused")
    moved = (await center.say(ADMIN, f"/config {remote} url http://127.0.0.1:8311/"))[0]
    assert moved.text == f"{remote} configured by adam: url=http://127.0.0.1:8311/"

    # The entity's own validator: the widest rule any fleet has, or the caller's.
    with pytest.raises(FleetError, match="url: refused to call https://169.254.169.254/"):
        await configure_bot(center.client, remote, {"url": "https://169.254.169.254/"})
    with pytest.raises(FleetError, match="url: refused to call http://127.0.0.1:8312/"):
        await configure_bot(
            center.client, remote, {"url": "http://127.0.0.1:8312/"}, UrlRule(local=False)
        )
    assert (await show_bot(center.client, remote)).params["url"] == "http://127.0.0.1:8311/"


BAD_COMMANDS = [
    ("/forecast all", "Say which bots, the symbol and the timeframe. Usage: /forecast"),
    ("/forecast all BTC-USD 1h", "'BTC-USD' '1h' is not a symbol"),
    ("/forecast Tg_A BTCUSDT 1h", "'Tg_A' is not a bot name."),
    ("/performance 7 days", "The window is like 7d"),
    ("/config {a} alpha 7", "Nothing changed: invalid forecaster parameters: alpha"),
    ("/config {a} colour blue", "Nothing changed: invalid forecaster parameters: colour"),
    ("/tune {a} alpha", "parameter 'alpha' is not key=value"),
    ("/pause", "Give one bot name. Usage: /pause NAME"),
    ("/pause nobody", "Nothing changed: no running bot named nobody"),
    ("/ask {a}", "Give the agent and the task. Usage: /ask AGENT TASK"),
    ("/ask {a} what now", "Nothing changed: bot {a} is a forecaster, not an agent"),
    ("/ask nobody-here what now", "Nothing changed: no bot named nobody-here"),
    ("/ask Agent_1 what now", "'Agent_1' is not a bot name."),
    ("/usage {a} {b}", "Give one agent's name, or none for every agent."),
    ("/launch rockets", "Unknown command /launch. Send /help"),
    ("hello", "Commands start with /."),
]


async def test_a_bad_command_gets_one_line_of_help_and_changes_nothing(center: Center) -> None:
    before = await show_bot(center.client, center.a)
    for text, expected in BAD_COMMANDS:
        replies = await center.say(ADMIN, center.named(text))
        assert len(replies) == 1 and "\n" not in replies[0].text, replies[0].text
        assert center.named(expected) in replies[0].text, replies[0].text
    after = await show_bot(center.client, center.a)
    assert (after.status, after.params) == (before.status, before.params)
    for bot in (center.a, "nobody-here"):
        started = await center.client.count_workflows(
            f'WorkflowType = "AgentRunWorkflow" AND WorkflowId STARTS_WITH "agent-{bot}-"'
        )
        assert started.count == 0, bot


async def test_inline_buttons_approve_an_item_and_the_pipeline_publishes_it(
    center: Center,
) -> None:
    content_id = await submit(center, "the fleet's weekly forecast summary")
    listed = await center.say(APPROVER, "/pending", expect=2)
    item = next(m for m in listed if content_id in m.text)
    buttons = item.reply_markup["inline_keyboard"][0] if item.reply_markup else []
    assert [b["text"] for b in buttons] == ["Approve", "Reject", "Edit"]

    viewer = await center.press(VIEWER, item.message_id, f"a:{content_id}")
    assert viewer[0].text.startswith(REFUSED)
    answer = await center.press(APPROVER, item.message_id, buttons[0]["callback_data"])
    assert answer[0].text.startswith(f"Approved {content_id} as alice")

    view = await wait_content(center, content_id, ContentState.PUBLISHED)
    assert view.decided_by == "alice"
    posted = center.messages(POSTS)
    assert len(posted) == 1 and "weekly forecast" in posted[0].text.lower()

    rejected = await submit(center, "a post to reject")
    edited = await submit(center, "a post to edit")
    listed = await center.say(ADMIN, "/pending", expect=3)
    to_reject = next(m for m in listed if rejected in m.text)
    reminder = await notice_about(center, rejected)
    assert reminder.reply_markup == to_reject.reply_markup  # the same three buttons
    group = int(APPROVERS_CHAT)
    answer = await center.press(ADMIN, reminder.message_id, f"r:{rejected}", chat=group)
    assert answer[0].text.startswith(f"Rejected {rejected} as adam")
    assert (await wait_content(center, rejected, ContentState.REJECTED)).decided_by == "adam"

    prompt = await center.press(ADMIN, to_reject.message_id, f"e:{edited}")
    assert prompt[0].text == f"Send the new text as: /edit {edited} <text>"
    changed = await center.say(ADMIN, f"/edit {edited} Fresh words from the desk.")
    assert changed[0].text.startswith(f"Edited {edited} as adam")
    view = await wait_content(center, edited, ContentState.AWAITING_APPROVAL)
    assert view.revision == 1 and view.text is not None and "Fresh words" in view.text


def test_access_list_parses_roles_and_names_and_rejects_bad_entries() -> None:
    operators = parse_access_list(ACCESS + ", 7:viewer")
    assert operators[APPROVER].name == "alice" and operators[7].name == "tg-7"
    assert operators[ADMIN].may(Permission.DECIDE) and not operators[OPERATOR].may(
        Permission.DECIDE
    )
    for bad, why in [
        ("abc:admin", "is not USER_ID:ROLE"),
        ("1:boss", "unknown role 'boss'"),
        ("1:admin, 1:viewer", "lists user 1 twice"),
        ("1:admin:bad name", "name 'bad name'"),
    ]:
        with pytest.raises(FleetError, match=why):
            parse_access_list(bad)


async def notice_about(center: Center, content_id: str) -> TelegramMessage:
    """The policy's reminder for ``content_id`` in the approvers' group (after 1 s)."""
    for _ in range(300):
        for message in center.messages(APPROVERS_CHAT):
            if content_id in message.text:
                return message
        await asyncio.sleep(0.05)
    raise AssertionError(f"no reminder about {content_id} in the approvers' chat")


async def submit(center: Center, brief: str) -> str:
    content_id = f"tg-{uuid.uuid4().hex[:8]}"
    order = ContentOrder(
        content_id=content_id, bot="pub-1", channel="posts", brief=brief, submitted_by="dave"
    )
    await content_ops.submit(center.client, center.url, order, datetime.now(UTC))
    await wait_content(center, content_id, ContentState.AWAITING_APPROVAL)
    for _ in range(200):  # /pending reads the table, which follows the workflow
        row = content_store.get_item(center.url, content_id)
        if row is not None and row.state == ContentState.AWAITING_APPROVAL.value:
            return content_id
        await asyncio.sleep(0.05)
    raise AssertionError(f"{content_id}'s row never said awaiting_approval")


async def wait_content(center: Center, content_id: str, state: ContentState) -> ContentView:
    view = await content_ops.show(center.client, center.url, content_id)
    for _ in range(600):
        if view.state is state:
            return view
        await asyncio.sleep(0.05)
        view = await content_ops.show(center.client, center.url, content_id)
    raise AssertionError(f"{content_id} is {view.state}, not {state}: {view.reason}")


def run_id_in(text: str) -> str:
    found = re.search(r"\b(agent-[a-z0-9-]+)", text)
    assert found, text
    return found.group(1)


def buttons_of(message: TelegramMessage) -> list[dict[str, str]]:
    markup = message.reply_markup or {}
    return list(markup.get("inline_keyboard", [[]])[0])


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_ask_answers_later_in_the_chat_and_a_tool_call_waits_for_an_approvers_button(
    center: Center,
) -> None:
    bot = await center.agent(tools=["forecast"], approvals={"tools": ["forecast"]})
    runs_before = counted("agentfleet_agent_runs_total", bot=bot, status="completed")

    started, answered = await center.say(OPERATOR, f"/ask {bot} hello there", expect=2)
    first = run_id_in(started.text)
    assert started.text.startswith(f"Run {first} started: {bot} works on it.")
    assert answered.text.startswith(f"{bot} answered (run {first}):")
    assert "I am an automated agent." in answered.text
    assert "model calls: 1, tokens: " in answered.text
    view = await agents.show(center.client, first)
    assert (view.source.value, view.requested_by) == ("telegram", "olga")

    task = f"/ask {bot} call forecast " + '{"symbol": "ETHUSDT", "bot": "' + center.a + '"}'
    started, waiting = await center.say(OPERATOR, task, expect=2)
    second = run_id_in(started.text)
    assert waiting.text.startswith(f"Run {second} of {bot} waits for approval of forecast")
    approve, deny = buttons_of(waiting)
    assert (approve["text"], deny["text"]) == ("Approve", "Deny")

    for user in (VIEWER, OPERATOR):
        refused = await center.press(user, waiting.message_id, approve["callback_data"])
        assert refused[0].text.startswith(f"{REFUSED} ("), refused[0].text
        assert "does not allow an agent tool approval" in refused[0].text
    assert (await agents.show(center.client, second)).status is RunStatus.WAITING_APPROVAL

    before = len(center.messages(APPROVER))
    pressed = await center.press(APPROVER, waiting.message_id, approve["callback_data"])
    assert pressed[0].text.startswith(f"Approved forecast of run {second} as alice")
    done = (await center.more(APPROVER, before, 2))[1]
    assert done.text.startswith(f"{bot} answered (run {second}):")
    assert f'Tool results: {{"bot": "{center.a}"' in done.text
    view = await agents.show(center.client, second)
    assert view.status is RunStatus.COMPLETED
    assert [(d.approver, d.approved) for d in view.decisions] == [("alice", True)]
    again = await center.press(APPROVER, waiting.message_id, approve["callback_data"])
    assert again[0].text.startswith(f"Nothing changed: that tool call of run {second} no longer")

    _, waiting = await center.say(ADMIN, task, expect=2)
    third = run_id_in(waiting.text)
    before = len(center.messages(ADMIN))
    denied = await center.press(ADMIN, waiting.message_id, buttons_of(waiting)[1]["callback_data"])
    assert denied[0].text.startswith(f"Denied forecast of run {third} as adam")
    done = (await center.more(ADMIN, before, 2))[1]
    assert done.text.startswith(f"{bot} answered (run {third}):")
    assert "refused by adam: denied in Telegram by adam" in done.text

    runs = [await agents.show(center.client, r) for r in (first, second, third)]
    assert all(r.status is RunStatus.COMPLETED for r in runs)
    calls = sum(r.model_calls for r in runs)
    usage = (await center.say(VIEWER, f"/usage {bot}"))[0].text
    headline, row = usage.splitlines()
    assert headline.startswith(f"Agent usage today (UTC), 1 agent(s): {calls} model calls")
    assert row.startswith(f"{bot}  {calls} calls  ") and "of 1.000000 (" in row
    everyone = (await center.say(VIEWER, "/usage"))[0].text
    assert bot in everyone
    with db.session_scope(center.url) as session:
        rows = session.exec(select(UsageRecord).where(UsageRecord.bot == bot)).all()
        asked = session.exec(select(AuditEvent).where(AuditEvent.kind == "telegram.ask")).all()
        approvals = session.exec(
            select(AuditEvent).where(AuditEvent.kind == "agent_approval")
        ).all()
    assert len(rows) == calls
    assert {e.subject for e in asked} >= {first, second, third}
    assert {(e.actor, e.workflow_id) for e in approvals} >= {("alice", second), ("adam", third)}

    # The worker's counters (activities run in this process): each call and run once.
    ended = counted("agentfleet_agent_runs_total", bot=bot, status="completed")
    assert ended - runs_before == 3
    model = runs[0].steps[0].detail.removeprefix("model ")
    tokens_in = counted("agentfleet_agent_tokens_total", bot=bot, model=model, direction="input")
    assert tokens_in == sum(r.input_tokens for r in runs)
    cost = counted("agentfleet_agent_cost_units_total", bot=bot, model=model)
    assert cost == sum(r.token_units for r in runs) == sum(row.cost_units for row in rows)


async def test_a_message_handled_again_attaches_to_its_first_run(center: Center) -> None:
    bot = await center.agent(tools=["status"])
    operators = parse_access_list(ACCESS)
    brain = CommandCenter(center.client, center.settings, operators)
    first = await brain.handle_text(OPERATOR, "olga", f"/ask {bot} hello", key="77-5-1700000000")
    again = await brain.handle_text(OPERATOR, "olga", f"/ask {bot} hello", key="77-5-1700000000")
    other = await brain.handle_text(OPERATOR, "olga", f"/ask {bot} hello", key="77-6-1700000001")
    assert run_id_in(first[0].text) == run_id_in(again[0].text) != run_id_in(other[0].text)
    assert first[0].follow is not None and first[0].follow.run_id == run_id_in(first[0].text)
    news = await brain.follow_run(first[0].follow, timeout_s=60)
    assert news.text.startswith(f"{bot} answered (run {run_id_in(first[0].text)}):")


def test_run_buttons_fit_telegrams_64_bytes_or_are_left_out() -> None:
    run_id = "agent-analyst-1-" + "0" * 24
    [[approve, deny]] = reply_format.run_buttons(run_id, "buy_skill-3")
    assert (approve.data, deny.data) == ("y3:analyst-1-" + "0" * 24, "n3:analyst-1-" + "0" * 24)
    assert reply_format.RUN_BUTTON.match(approve.data)
    assert reply_format.run_buttons("agent-" + "a" * 48 + "-" + "0" * 24, "forecast-1") == []
