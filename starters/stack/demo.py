"""Demos ``fleet up`` runs against the fresh stack: one per capability that exists.

Each demo starts real workflows through the same client every user has, so their runs are visible
in the Web UI. A demo that fails is reported, never fatal to the stack.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

from temporalio.client import Client

from agentfleet.bots.model import BotKind, BotSpec, BotStatus
from agentfleet.errors import first_line
from agentfleet.settings import Settings
from agentfleet.temporal import connect
from clients.stack import run_stack_check
from starters.stack.components import DEMO_ALERT_CHANNEL, REMOTE_BOT_NAME, remote_bot_url

Report = Callable[[str], None]


def _quiet(_line: str) -> None:
    return None


class Demo(Protocol):
    """A demo: runs against the fresh stack, may report progress lines, returns one line."""

    def __call__(
        self, client: Client, settings: Settings, *, report: Report = ...
    ) -> Awaitable[str]: ...


DEMO_FLEET_TIMEOUT_S = 60.0
DEMO_FLEET_POLL_S = 0.5
UNDERWAY = frozenset({BotStatus.PROVISIONING, BotStatus.REGISTERING, BotStatus.RETIRING})
"""States the demo fleet waits on; any other (active, or failed with its reason, or paused by
the operator on an earlier run) is where a bot stays without help."""
DEMO_AGENT = "analyst-1"
DEMO_QUESTION = "What is the BTC outlook?"


async def stack_check(client: Client, settings: Settings, *, report: Report = _quiet) -> str:
    """Worker -> database -> chain -> audit row, as a workflow visible in the Web UI."""
    workflow_id, result = await run_stack_check(
        client, "fleet up", check_chain=settings.rpc_url is None
    )
    block = (
        f", chain {result.chain.chain_id} at block {result.chain.block_number}"
        if result.chain
        else ""
    )
    return (
        f"stack check {workflow_id}: database {result.database.backend} "
        f"(schema {result.database.revision}){block}"
    )


async def fusd_transfer(client: Client, settings: Settings, *, report: Report = _quiet) -> str:
    """1 fUSD from the first relayer to anvil account 5, through the durable transaction path
    (TransactionWorkflow + RelayerWorkflow, both visible in the Web UI)."""
    from web3 import Web3

    from agentfleet.chain import artifacts
    from agentfleet.chain.accounts import dev_account
    from agentfleet.chain.deployment.manifest import load_deployment
    from agentfleet.chain.relayers import relayers
    from agentfleet.messages import TxRequest
    from clients.transactions import send_transaction

    deployment = load_deployment(settings)
    senders = relayers(settings)
    if deployment is None or not senders:
        return "fUSD transfer: skipped (no deployment or relayer on this chain)"
    token = Web3().eth.contract(abi=artifacts.load("FleetUSD").abi)
    recipient = dev_account(5).address
    data = token.encode_abi("transfer", args=[recipient, 1_000_000])
    request_id = f"demo-transfer-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    outcome = await send_transaction(
        client,
        chain_id=settings.chain_id,
        sender=senders[0],
        request=TxRequest(request_id=request_id, to=deployment.address("FleetUSD"), data=data),
        reorg_window_s=5,
    )
    return (
        f"fUSD transfer tx-{settings.chain_id}-{request_id}: {outcome.status.value}, "
        f"1 fUSD {senders[0][:10]}… -> {recipient[:10]}… in block {outcome.block_number}"
    )


def demo_fleet_specs(settings: Settings) -> list[BotSpec]:
    """The small fleet ``fleet up`` seeds: three forecasters that differ in alpha and symbol, one
    publisher, and ``remote-1`` calling the reference remote bot the stack starts."""

    forecasters = (
        ("forecaster-1", "BTCUSDT", 0.2),
        ("forecaster-2", "BTCUSDT", 0.5),
        ("forecaster-3", "ETHUSDT", 0.3),
    )
    specs = [
        BotSpec(
            name=name,
            kind=BotKind.FORECASTER,
            description=f"Demo forecaster: EMA (alpha {alpha:g}) over {symbol}, synthetic data.",
            params={"symbol": symbol, "alpha": alpha},
        )
        for name, symbol, alpha in forecasters
    ]
    specs.append(
        BotSpec(
            name="publisher-1",
            kind=BotKind.PUBLISHER,
            description="Demo publisher: posts to the sandbox's Telegram chat, mailbox and "
            "webhook receiver through the content pipeline.",
        )
    )
    specs.append(
        BotSpec(
            name=DEMO_AGENT,
            kind=BotKind.AGENT,
            description="Demo agent: an LLM analyst that buys forecasts from other bots and "
            "submits a post about them (the sandbox's deterministic model by default).",
            params={
                "publisher": "publisher-1",
                "instructions": (
                    "You are a market analyst bot. To answer a question about a market, find "
                    "who sells forecasts, buy a forecast from two of them, and submit a short "
                    "post summarising what they expect. Say that you are an automated agent."
                ),
            },
        )
    )
    specs.append(
        BotSpec(
            name=REMOTE_BOT_NAME,
            kind=BotKind.REMOTE,
            description="Demo remote bot: the reference A2A forecaster started by `fleet up`.",
            params={"url": remote_bot_url(settings), "timeout_s": 5.0},
        )
    )
    return specs


async def demo_fleet(client: Client, settings: Settings, *, report: Report = _quiet) -> str:
    """Create the demo fleet (idempotent: bots that exist are left as they are) and wait, at most
    ``DEMO_FLEET_TIMEOUT_S``, until every bot is active; one line says how far it got."""
    from agentfleet.chain.accounts import DEV_CHAIN_IDS
    from agentfleet.errors import FleetError
    from agentfleet.netguard import UrlRule
    from clients.bots import create_bot, show_bot

    if settings.chain_id not in DEV_CHAIN_IDS:
        return (
            f"demo fleet: skipped (on chain {settings.chain_id} bots wait for funds; "
            "create them with `fleet bot create`)"
        )
    began = time.monotonic()
    specs = demo_fleet_specs(settings)
    notes: dict[str, str] = {}

    async def create(spec: BotSpec) -> str | None:
        try:
            await create_bot(client, spec, UrlRule.of(settings))
        except FleetError as exc:  # retired earlier, or the name is taken by another kind
            notes[spec.name] = str(exc)
            return None
        return spec.name

    report(f"demo fleet: creating {', '.join(s.name for s in specs)}")
    names = [n for n in await asyncio.gather(*(create(s) for s in specs)) if n is not None]
    statuses: dict[str, BotStatus] = {}
    reasons: dict[str, str] = {}
    shown = ""
    deadline = began + DEMO_FLEET_TIMEOUT_S
    while True:
        views = await asyncio.gather(
            *(show_bot(client, name) for name in names), return_exceptions=True
        )
        for name, view in zip(names, views, strict=True):
            if isinstance(view, FleetError):  # not answering this time: ask again
                statuses.setdefault(name, BotStatus.PROVISIONING)
            elif isinstance(view, BaseException):
                raise view
            else:
                statuses[name] = view.status
                if view.reason:
                    reasons[name] = view.reason
        pending = [n for n in names if statuses[n] in UNDERWAY]
        if not pending or time.monotonic() > deadline:
            break
        progress = _fleet_progress(names, statuses)
        if progress != shown:
            report(f"demo fleet: {progress}")
            shown = progress
        await asyncio.sleep(DEMO_FLEET_POLL_S)
    active = [n for n in names if statuses[n] is BotStatus.ACTIVE]
    elapsed = time.monotonic() - began
    problems = [f"{n}: {notes[n]}" for n in notes]
    problems += [
        f"{n} {statuses[n].value}" + (f" ({reasons[n]})" if n in reasons else "")
        for n in names
        if statuses[n] is not BotStatus.ACTIVE
    ]
    count = f"{len(active)}" if len(active) == len(specs) else f"{len(active)}/{len(specs)}"
    line = f"demo fleet: {count} bots active ({', '.join(active) or 'none'}) in {elapsed:.1f} s"
    return line + "".join(f"; {p}" for p in problems)


async def paid_purchase(client: Client, settings: Settings, *, report: Report = _quiet) -> str:
    """forecaster-1 buys a forecast from forecaster-2 with x402: a ``BuyerPurchaseWorkflow``
    and the seller's ``PaymentSagaWorkflow`` (settled by a relayer), both in the Web UI."""
    from agentfleet.bots.model import Skill
    from agentfleet.chain.accounts import DEV_CHAIN_IDS
    from agentfleet.payments.purchases import (
        PurchaseRequest,
        PurchaseStatus,
        PurchaseView,
        new_purchase_id,
    )
    from clients.purchases import start_purchase

    if settings.chain_id not in DEV_CHAIN_IDS:
        return "paid purchase: skipped (no demo fleet on this chain; try `fleet pay`)"
    buyer, seller = "forecaster-1", "forecaster-2"
    request = PurchaseRequest(
        purchase_id=new_purchase_id(buyer),
        buyer=buyer,
        seller=seller,
        skill=Skill.FORECAST,
        args={"symbol": "BTCUSDT", "horizon": "1h"},
    )
    report(f"paid purchase: {buyer} buys a forecast from {seller} (x402, fUSD)")
    handle = await start_purchase(client, request)
    view: PurchaseView = await asyncio.wait_for(handle.result(), timeout=DEMO_FLEET_TIMEOUT_S)
    if view.status is not PurchaseStatus.DONE:
        return f"paid purchase {request.purchase_id}: {view.status.value} ({view.reason})"
    value = (view.result or {}).get("value")
    shown = f"{value:.2f}" if isinstance(value, float) else str(value)
    return (
        f"paid purchase {request.purchase_id}: {buyer} paid {seller} "
        f"{(view.amount or 0) / 10**6:g} fUSD for a BTCUSDT forecast ({shown}); "
        f"settled in {(view.tx_hash or '')[:12]}…, reviewed on ERC-8004"
    )


async def agent_run(client: Client, settings: Settings, *, report: Report = _quiet) -> str:
    """analyst-1 (an agent bot) is asked the BTC outlook: it buys forecasts from two forecasters
    with x402, writes a summary that says it is automated and submits it as a post that waits
    for a human's approval; tokens and purchases count against its budget."""
    from agentfleet.agents.model import RunSource, fusd
    from agentfleet.chain.accounts import DEV_CHAIN_IDS
    from clients import agents

    if settings.chain_id not in DEV_CHAIN_IDS or not settings.agent_model_url:
        return "agent run: skipped (needs the demo fleet and a model; try `fleet agent ask`)"
    report(f"agent run: {DEMO_AGENT} is asked {DEMO_QUESTION!r}")
    run_id = await agents.ask(
        client,
        settings,
        DEMO_AGENT,
        DEMO_QUESTION,
        source=RunSource.CLI,
        requested_by="fleet up",
        key=f"demo-{datetime.now(UTC):%Y%m%d%H%M%S}",
    )
    view = await agents.wait(client, run_id, DEMO_FLEET_TIMEOUT_S)
    if view.status.value != "completed":
        return f"agent run {run_id}: {view.status.value} ({view.reason}); `fleet agent show`"
    post = f"; post {view.posts[0]} awaits approval" if view.posts else ""
    return (
        f"agent run {run_id}: {DEMO_AGENT} bought {len(view.purchases)} forecasts "
        f"({fusd(view.purchase_units)} fUSD) in {view.model_calls} model calls "
        f"({fusd(view.token_units)} fUSD of tokens){post} (`fleet agent show {run_id}`)"
    )


DEMO_CHANNELS = (
    ("demo-chat", "telegram", "100001"),
    (DEMO_ALERT_CHANNEL, "telegram", "-100000001"),
    ("demo-mail", "email", "readers@example.com"),
    ("demo-hooks", "webhook", "{sandbox}/webhooks/demo-hooks"),
)


async def content_pipeline(client: Client, settings: Settings, *, report: Report = _quiet) -> str:
    """publisher-1 posts twice: to the webhook channel (the default policy auto-approves it)
    and to the Telegram chat, which waits in ``awaiting_approval`` for you to approve."""
    from agentfleet.content import store as content_store
    from agentfleet.content.model import (
        MAX_LENGTH,
        ChannelConfig,
        ChannelKind,
        ContentOrder,
        ContentState,
        default_limit,
    )
    from clients import content as content_ops

    if not settings.channel_sandbox:
        return "content pipeline: skipped (no sandbox; add a channel with `fleet channel add`)"
    url = settings.effective_database_url
    for name, kind, target in DEMO_CHANNELS:
        if content_store.get_channel(url, name) is None:
            target = target.format(sandbox=settings.sandbox_url)
            channel_kind = ChannelKind(kind)
            content_store.save_channel(
                url,
                ChannelConfig(
                    name=name,
                    kind=channel_kind,
                    target=target,
                    limit=default_limit(channel_kind, target),
                    max_length=MAX_LENGTH[channel_kind],
                ),
            )
    stamp = f"{datetime.now(UTC):%Y%m%d%H%M%S}"
    orders = [
        ContentOrder(
            content_id=f"demo-hooks-{stamp}",
            bot="publisher-1",
            channel="demo-hooks",
            brief="The demo fleet is up. Three forecasters, one publisher and a remote bot are "
            "active.",
            submitted_by="fleet-up",
        ),
        ContentOrder(
            content_id=f"demo-chat-{stamp}",
            bot="publisher-1",
            channel="demo-chat",
            brief="Weekly BTC forecast notes are ready for review. Forecasts are models, not "
            "promises.",
            submitted_by="fleet-up",
        ),
    ]
    report(
        "content pipeline: publisher-1 drafts two posts (webhook: auto-approved; Telegram: "
        "waits for you)"
    )
    now = datetime.now(UTC)
    for order in orders:
        await content_ops.submit(client, url, order, now)
    deadline = time.monotonic() + DEMO_FLEET_TIMEOUT_S
    states: dict[str, ContentState] = {}
    while time.monotonic() < deadline:
        for order in orders:
            view = await content_ops.show(client, url, order.content_id)
            states[order.content_id] = view.state
        hooks, chat = (states[o.content_id] for o in orders)
        if hooks is ContentState.PUBLISHED and chat is ContentState.AWAITING_APPROVAL:
            break
        await asyncio.sleep(DEMO_FLEET_POLL_S)
    hooks_id, chat_id = (o.content_id for o in orders)
    return (
        f"content pipeline: {hooks_id} {states.get(hooks_id, '?')} (`fleet channel inbox "
        f"demo-hooks`); {chat_id} {states.get(chat_id, '?')} (`fleet content approve {chat_id}`)"
    )


async def learning_round(client: Client, settings: Settings, *, report: Report = _quiet) -> str:
    """The demo forecasters learn the digits task for two rounds (a ``LearningCampaignWorkflow``
    and its ``LearningRoundWorkflow`` children, in the Web UI)."""
    from agentfleet.learning import registry
    from agentfleet.learning.rounds import (
        CampaignOrder,
        CampaignView,
        RoundOrder,
    )
    from clients.learning import start_campaign

    url = settings.effective_database_url
    first = await asyncio.to_thread(registry.next_round, url, "digits")
    order = CampaignOrder(
        task="digits",
        rounds=2,
        first_round=first,
        round=RoundOrder(task="digits", round=first),
    )
    report("learning: the forecasters learn digits together (2 rounds)")
    handle = await start_campaign(client, order)
    view: CampaignView = await asyncio.wait_for(handle.result(), timeout=DEMO_FLEET_TIMEOUT_S)
    last = view.rounds[-1] if view.rounds else None
    metric = "" if last is None or last.metric is None else f", accuracy {last.metric:.3f}"
    return (
        f"learning: {len(view.rounds)} digits rounds with {last.participants if last else 0} "
        f"forecasters, champion {view.champion}{metric} (`fleet learn models --task digits`)"
    )


def _fleet_progress(names: list[str], statuses: dict[str, BotStatus]) -> str:
    """``2/5 active (3 registering)``: short enough for one progress line."""
    counts = Counter(statuses[n].value for n in names if statuses[n] is not BotStatus.ACTIVE)
    active = len(names) - sum(counts.values())
    others = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
    return f"{active}/{len(names)} active" + (f" ({others})" if others else "")


DEMOS: list[tuple[str, str, Demo]] = [
    ("check", "stack check", stack_check),
    ("transfer", "fUSD transfer", fusd_transfer),
    ("fleet", "demo fleet", demo_fleet),
    ("purchase", "paid purchase", paid_purchase),
    ("content", "content pipeline", content_pipeline),
    ("agent", "agent run", agent_run),
    ("learning", "learning", learning_round),
]
"""Each demo: its name for ``--demo`` (``Settings.demos``), its title, and what runs it."""


async def run_demos(settings: Settings, report: Report) -> list[str]:
    """Run the chosen demos (``FLEET_DEMOS``, every one by default) in order; return one line
    each for the status panel."""
    client = await connect(settings)
    lines = []
    for key, name, demo in DEMOS:
        if key not in settings.demos:
            continue
        try:
            line = await demo(client, settings, report=report)
        except Exception as exc:  # a demo never takes the stack down
            line = f"{name}: failed: {first_line(exc)}"
        report(line)
        lines.append(line)
    return lines
