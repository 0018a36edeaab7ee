"""Agent benchmark: one agent step (a model call that asks for a tool, the tool, the final model
call) by AgentRunWorkflow, against the model calls alone, the OpenAI Agents SDK without
Temporal and two skeletons, in the same run, on the sandbox's deterministic model.

    python bench/agent_runs.py [--runs 20] [--burst 10] [--warmup 3] [--quick] [--json]

Everything runs in this process: a private dev server (set up as ``fleet up`` sets one up), a
SQLite database in a temporary folder, the fleet's workers (the agents queue's worker carries
Temporal's ``OpenAIAgentsPlugin``) and the sandbox, whose chat completions answer the task
``call patterns {"symbol": "BTCUSDT"}`` with exactly one call of the ``patterns`` tool, then
with a text answer. The agent is an idle active ``BotLifecycleWorkflow`` entity (no wallet or
chain) allowed that one tool, so every step is two model calls and one tool call. Measured in
the same run; benchmarks report, they never assert timings:

- **model calls**: the two chat completions one probe run of ours sent (the sandbox records
  every request body), sent again with the OpenAI client, one after the other: the model's own
  latency for a step, the floor of any agent framework.
- **SDK Runner**: what users would pick instead: plain ``agents.Runner.run`` (OpenAI Agents
  SDK, no Temporal) with the same instructions, model (Chat Completions at the sandbox) and a
  function tool ``patterns`` whose body is the same database read as our activity. Before these
  two rows the OpenAI client opens as many connections as the burst needs (the warm-up runs
  one at a time, and connecting inside the timed burst cut its figure by more than half).
- **skeleton (step)**: three no-op regular activities, one after another: two on the
  workflow's own queue where the model calls run (the plugin runs them on the agents queue,
  the workflow's own), one on a queue of its own where the tool runs (``fleet-io``).
- **skeleton (run's shape)**: every activity the probe run scheduled, as no-ops, in its steps
  and on its queues (context, per model call a budget hold, the call and its usage record, the
  tool, the audit record). It has no update to the bot entity (each hold is one), no signal
  (each call's cost is spent at the entity by one) and no agent SDK in its workflow tasks.
- **AgentRunWorkflow**: ``clients.agents.ask`` (the CLI's path: the agent's row, its budget
  query, the start) until the run's result reads ``completed``.

Where ours spends its time comes from the measured runs' histories: medians of each activity
type's time (scheduled to completed), of the workflow tasks' time in the worker (started to
completed: the SDK's ``Runner`` and our code run there) and of the run in the server, with the
same for the run-shaped skeleton. A real local model (llama-cpp-python with Gemma 3 270M) is
not measured: see :data:`LOCAL_MODEL_SKIPPED`.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python bench/agent_runs.py` puts bench/ on the path, not the repository root.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from agents import (
    Agent,
    ModelSettings,
    OpenAIChatCompletionsModel,
    RunConfig,
    Runner,
    ToolCallOutputItem,
    function_tool,
)
from openai import AsyncOpenAI
from rich.console import Console
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from activities.agents import AgentActivities
from agentfleet import taskqueues
from agentfleet.agents.model import AgentRunView, PatternsAsk, RunStatus
from agentfleet.bots.model import BotKind
from agentfleet.errors import FleetError
from agentfleet.settings import Settings
from bench.harness import (
    Figures,
    Options,
    Run,
    Sizes,
    fmt,
    measure,
    milliseconds,
    print_columns,
    print_table,
    ratio,
    report_console,
    scratch_fleet,
    start_idle_bot,
    times,
)
from bench.shapes import (
    SkeletonStep,
    activity_spans,
    event_time,
    history_counts,
    history_events,
    steps_skeleton,
)
from clients import agents as agent_runs
from sandbox.app import Sandbox
from sandbox.buckets import TelegramLimits
from workers.main import running_workers

TOOL = "patterns"
TASK = 'call patterns {"symbol": "BTCUSDT"}'
"""One tool call, then the answer: the sandbox's model makes exactly the calls a task lists."""
MODEL = "gpt-4o-mini"
PARAMS: dict[str, Any] = {"tools": [TOOL], "model": MODEL, "budget": {"per_day": "1000"}}
"""The agent may use only ``patterns``; its budget covers every run of the benchmark."""
MODEL_ACTIVITY = "invoke_model_activity"
CHAT = "/chat/completions"
READY_S = 30.0
LOCAL_MODEL_SKIPPED = (
    "local model (llama-cpp-python + Gemma 3 270M): not measured; its install builds llama.cpp "
    "from source (6 min 47 s on this 2-core machine) and the 270M model's answers were too weak "
    "for tool calling (docs/benchmarks.md, Agents)"
)
QUICK = {"runs": 3, "burst": 2, "warmup": 1}
SHORT = {
    "agent_context": "context",
    "hold_agent_budget": "hold",
    MODEL_ACTIVITY: "model",
    "record_usage": "usage",
    "shared_patterns": "tool",
    "record_audit_event": "audit",
}

OPTIONS = Options(__file__, __doc__, quick=QUICK)
OPTIONS.count("--runs", 20, "steps one at a time, per row")
OPTIONS.count("--burst", 10, "steps at once, per row (one agent: its budget holds queue)")
OPTIONS.count("--warmup", 3, "discarded steps per row", low=0)


# -- the paths ------------------------------------------------------------------------------------


class Ours:
    """Agent runs of one agent through ``clients.agents``, each awaited to its result."""

    def __init__(self, client: Client, settings: Settings, bot: str) -> None:
        self.client, self.settings, self.bot = client, settings, bot
        self.run_ids: dict[str, str] = {}

    async def step(self, key: str) -> AgentRunView:
        run_id = await agent_runs.ask(self.client, self.settings, self.bot, TASK)
        self.run_ids[key] = run_id
        handle = self.client.get_workflow_handle(run_id, result_type=AgentRunView)
        view: AgentRunView = await handle.result()
        tools = [step for step in view.steps if step.kind == "tool"]
        if view.status is not RunStatus.COMPLETED or view.model_calls != 2 or len(tools) != 1:
            raise RuntimeError(
                f"run {run_id} ended {view.status} ({view.reason}) after {view.model_calls} "
                f"model calls and {len(tools)} tool calls; a step is 2 and 1"
            )
        return view


class RawModel:
    """The recorded chat completions of one step, sent again one after the other."""

    def __init__(self, openai: AsyncOpenAI, bodies: Sequence[dict[str, Any]]) -> None:
        self.openai, self.bodies = openai, list(bodies)

    async def step(self, key: str) -> None:
        for body in self.bodies:
            await self.openai.chat.completions.create(**body)


class PlainSdk:
    """The same agent with the OpenAI Agents SDK's ``Runner`` in this process, no Temporal."""

    def __init__(
        self, openai: AsyncOpenAI, settings: Settings, instructions: str, max_tokens: int
    ) -> None:
        store = AgentActivities(settings)

        @function_tool(name_override=TOOL)
        async def patterns(symbol: str = "") -> str:
            """Market patterns (regimes) the fleet's bots shared, newest first."""
            rows = await store.shared_patterns(PatternsAsk(symbol=symbol or None))
            return json.dumps(rows, default=str)

        self.agent: Agent[Any] = Agent(
            name="bench-sdk",
            instructions=instructions,
            model=OpenAIChatCompletionsModel(model=MODEL, openai_client=openai),
            tools=[patterns],
            model_settings=ModelSettings(max_tokens=max_tokens),
        )

    async def step(self, key: str) -> None:
        result = await Runner.run(
            self.agent, TASK, max_turns=4, run_config=RunConfig(tracing_disabled=True)
        )
        outputs = [item for item in result.new_items if isinstance(item, ToolCallOutputItem)]
        if len(result.raw_responses) != 2 or len(outputs) != 1 or not result.final_output:
            raise RuntimeError(
                f"the SDK's run made {len(result.raw_responses)} model calls and "
                f"{len(outputs)} tool calls; a step is 2 and 1"
            )


# -- shapes, from the probe's history -------------------------------------------------------------


def queued_steps(events: Sequence[HistoryEvent]) -> list[list[tuple[str, str]]]:
    """The regular activities as (type, task queue), grouped by the workflow task that
    scheduled them: each group ran at once, the groups one after another."""
    steps: dict[int, list[tuple[str, str]]] = {}
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            group = steps.setdefault(attributes.workflow_task_completed_event_id, [])
            group.append((attributes.activity_type.name, attributes.task_queue.name))
    return list(steps.values())


def shape_text(steps: Sequence[Sequence[tuple[str, str]]]) -> str:
    return ", ".join(" ∥ ".join(SHORT.get(name, name) for name, _ in group) for group in steps)


def skeleton_steps(
    steps: Sequence[Sequence[tuple[str, str]]], own: str, named: dict[str, str]
) -> list[SkeletonStep]:
    """``steps`` as no-op steps: activities of the workflow's queue ``own`` on the skeleton's
    own queue, those of another queue on the skeleton's queue ``named[that queue]``."""
    out = []
    for group in steps:
        queues = {queue for _, queue in group}
        if len(queues) != 1:
            raise RuntimeError(f"a step runs on several queues: {group}")
        queue = queues.pop()
        out.append(
            SkeletonStep(activities=len(group), task_queue=None if queue == own else named[queue])
        )
    return out


async def where_time_goes(client: Client, run_ids: Sequence[str]) -> dict[str, float]:
    """Medians over ``run_ids``, in ms per run: each activity type's time (scheduled to
    completed, summed over the run), the workflow tasks' time in the worker (started to
    completed, summed: the SDK's ``Runner`` and our workflow code) and the whole run in the
    server (started to closed)."""
    samples: dict[str, list[float]] = {}
    for run_id in run_ids:
        events = await history_events(client, run_id)
        for name, spans in activity_spans(events).items():
            samples.setdefault(SHORT.get(name, name), []).append(sum(s.ms for s in spans))
        started: dict[int, datetime] = {}
        tasks = 0.0
        for event in events:
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                started[event.event_id] = event_time(event)
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                began = started[event.workflow_task_completed_event_attributes.started_event_id]
                tasks += milliseconds(began, event_time(event))
        samples.setdefault("workflow tasks", []).append(tasks)
        samples.setdefault("run", []).append(
            milliseconds(event_time(events[0]), event_time(events[-1]))
        )
    return {name: statistics.median(values) for name, values in samples.items()}


# -- the benchmark --------------------------------------------------------------------------------


async def start_agent(client: Client, settings: Settings, bot: str) -> None:
    """Start ``bot`` as an idle active agent entity and wait for its row (which a run's
    context reads), written by the entity's first activity."""
    await start_idle_bot(client, bot, 0, datetime.now(UTC), kind=BotKind.AGENT, params=PARAMS)
    deadline = time.monotonic() + READY_S
    while True:
        try:
            await asyncio.to_thread(agent_runs.agent_row, settings, bot)
            return
        except FleetError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def agent_part(
    client: Client, settings: Settings, sandbox: Sandbox, sizes: Sizes, err: Console
) -> dict[str, Any]:
    bot = f"bench-agent-{uuid.uuid4().hex[:6]}"
    await start_agent(client, settings, bot)
    ours = Ours(client, settings, bot)
    err.print(f"one probe run of {bot}: the requests it sends and its shape")
    sandbox.store.reset_openai()
    probe = await ours.step("probe")
    bodies = [request.body for request in sandbox.store.openai_requests(CHAT)]
    if len(bodies) != 2:
        raise RuntimeError(f"the probe run sent {len(bodies)} chat completions, not 2")
    system = [m for m in bodies[0]["messages"] if m.get("role") in ("system", "developer")]
    instructions = str(system[0]["content"]) if system else ""
    max_tokens = int(bodies[0].get("max_tokens") or settings.agent_max_output_tokens)
    events = await history_events(client, probe.run_id)
    steps = queued_steps(events)
    counts = await history_counts(client, probe.run_id)
    activities = sum(len(group) for group in steps)
    models = [queue for group in steps for name, queue in group if name == MODEL_ACTIVITY]
    tools = [queue for group in steps for name, queue in group if name == "shared_patterns"]
    if len(models) != 2 or len(tools) != 1:
        raise RuntimeError(f"the probe run's shape is not a step: {shape_text(steps)}")
    err.print(f"one run: {activities} activities in {len(steps)} steps: {shape_text(steps)}")
    own = taskqueues.AGENTS
    others = sorted({queue for group in steps for _, queue in group if queue != own})
    openai = AsyncOpenAI(base_url=sandbox.openai_base_url, api_key="not-needed", max_retries=0)
    rows: list[Figures] = []
    try:
        # A pool of one connection (the warm-up runs one at a time) would open the others
        # inside the timed burst.
        await asyncio.gather(*(openai.models.list() for _ in range(sizes.burst)))
        err.print("model calls: the probe's two chat completions with the OpenAI client")
        rows.append(
            await measure(
                "model calls (OpenAI client)",
                RawModel(openai, bodies).step,
                shape="no Temporal",
                activities=0,
                sizes=sizes,
            )
        )
        err.print("SDK Runner: agents.Runner.run with the same agent, no Temporal")
        sdk = PlainSdk(openai, settings, instructions, max_tokens)
        rows.append(
            await measure(
                "OpenAI Agents SDK Runner",
                sdk.step,
                shape="no Temporal",
                activities=0,
                sizes=sizes,
            )
        )
    finally:
        await openai.close()
    async with steps_skeleton(client, "bench-agent", others) as skeleton:
        named = {queue: skeleton.queue_named(queue) for queue in others}
        step_shape = [
            SkeletonStep(task_queue=None if models[0] == own else named[models[0]]),
            SkeletonStep(task_queue=None if tools[0] == own else named[tools[0]]),
            SkeletonStep(task_queue=None if models[1] == own else named[models[1]]),
        ]
        err.print("skeleton (step): model, tool, model as no-op activities")
        step_floor = await measure(
            "skeleton (step)",
            skeleton.runner(step_shape, "step"),
            shape="regular",
            activities=3,
            sizes=sizes,
        )
        err.print(f"skeleton (run): {activities} no-op activities in the run's steps")
        run_floor = await measure(
            "skeleton (run's shape)",
            skeleton.runner(skeleton_steps(steps, own, named), "run"),
            shape="regular",
            activities=activities,
            sizes=sizes,
        )
        floor_ids = [f"{skeleton.queue}-run-r{index}" for index in range(sizes.runs)]
        floor_where = await where_time_goes(client, floor_ids)
        floor_counts = await history_counts(client, floor_ids[0])
    rows += [step_floor, run_floor]
    err.print("AgentRunWorkflow: clients.agents.ask until the run's result")
    mine = await measure(
        "AgentRunWorkflow", ours.step, shape="regular", activities=activities, sizes=sizes
    )
    rows.append(mine)
    measured = [ours.run_ids[f"r{index}"] for index in range(sizes.runs)]
    model, sdk_row = rows[0], rows[1]
    return {
        "bot": bot,
        "task": TASK,
        "per_run": {
            "activities": activities,
            "steps": len(steps),
            "shape": shape_text(steps),
            "queues": {SHORT.get(n, n): q for group in steps for n, q in group},
            "workflow_tasks": counts["workflow_tasks"],
            "history_events": counts["events"],
            "signals": counts["signals"],
            "entity_updates": 2,
            "model_calls": probe.model_calls,
            "input_tokens": probe.input_tokens,
            "output_tokens": probe.output_tokens,
        },
        "where_ms": await where_time_goes(client, measured),
        "skeleton_run": {
            "workflow_tasks": floor_counts["workflow_tasks"],
            "history_events": floor_counts["events"],
            "workflow_tasks_ms": floor_where["workflow tasks"],
            "run_ms": floor_where["run"],
        },
        "ratios": {
            name: compare(mine, floor)
            for name, floor in (
                ("model_calls", model),
                ("sdk_runner", sdk_row),
                ("skeleton_step", step_floor),
                ("skeleton_run", run_floor),
            )
        },
        "rows": rows,
        "baseline": step_floor,
    }


def compare(row: Figures, floor: Figures) -> dict[str, float | None]:
    """``row`` over ``floor``: p50 and p95 as ratios, and the milliseconds added at p50."""
    return {
        "p50": ratio(row.p50_ms, floor.p50_ms),
        "p95": ratio(row.p95_ms, floor.p95_ms),
        "added_p50_ms": row.p50_ms - floor.p50_ms,
    }


# -- report ---------------------------------------------------------------------------------------

VERSUS = {
    "model_calls": "the model calls alone (OpenAI client)",
    "sdk_runner": "the SDK's Runner, no Temporal",
    "skeleton_step": "skeleton (step): 3 no-op activities",
    "skeleton_run": "skeleton (run's shape)",
}
RATIO_COLUMNS = (
    ("AgentRunWorkflow over", "name", "{}"),
    ("p50", "p50", "{:.2f}x"),
    ("p95", "p95", "{:.2f}x"),
    ("added at p50 ms", "added_p50_ms", "{:.1f}"),
)


def print_report(report: dict[str, Any]) -> None:
    console = report_console()
    run = report["per_run"]
    print_table(
        report["rows"],
        baseline=report["baseline"],
        console=console,
        title=f"One agent step (model call -> {TOOL} -> model call) on the sandbox's model; "
        f"ours: {run['activities']} activities in {run['steps']} steps ({run['shape']}), "
        f"{run['entity_updates']} updates to the agent's entity, {run['signals']} signals, "
        f"{run['workflow_tasks']} workflow tasks",
    )
    print_columns(
        "AgentRunWorkflow against each other row",
        RATIO_COLUMNS,
        [{"name": VERSUS[key], **value} for key, value in report["ratios"].items()],
        console,
        labels=1,
    )
    where = report["where_ms"]
    parts = ", ".join(f"{name} {fmt(value, '{:.1f}')}" for name, value in where.items())
    console.print(
        f"where a measured run's time goes (medians, ms per run; activities scheduled to "
        f"completed, workflow tasks started to completed, the run started to closed in the "
        f"server): {parts}",
        highlight=False,
    )
    floor = report["skeleton_run"]
    console.print(
        f"the skeleton of the run's shape: {floor['workflow_tasks']} workflow tasks, "
        f"{fmt(floor['workflow_tasks_ms'], '{:.1f}')} ms in the worker, the run "
        f"{fmt(floor['run_ms'], '{:.1f}')} ms in the server (ours: {run['workflow_tasks']} "
        f"workflow tasks, {fmt(where['workflow tasks'], '{:.1f}')} ms, "
        f"{fmt(where['run'], '{:.1f}')} ms)",
        highlight=False,
    )
    ratios = report["ratios"]
    console.print(
        f"ours over the model calls {times(ratios['model_calls']['p50'])}, over the SDK's "
        f"Runner {times(ratios['sdk_runner']['p50'])}, over the step's skeleton "
        f"{times(ratios['skeleton_step']['p50'])} (p50)",
        highlight=False,
    )
    console.print(report["local_model"]["reason"], highlight=False)


async def amain(argv: Sequence[str] | None = None) -> int:
    """The benchmark in a running event loop; progress on stderr, the report on stdout."""
    args = OPTIONS.read(argv)
    run = Run("agents", args, runs=args.runs, burst=args.burst, warmup=args.warmup)
    report, err = run.report, run.err
    sizes = Sizes(args.runs, args.burst, args.warmup)
    async with scratch_fleet("agents", sandbox_limits=TelegramLimits()) as fleet:
        if fleet.sandbox is None:
            raise RuntimeError("the agents benchmark needs the sandbox's chat completions")
        report["server"] = fleet.server
        report["model"] = MODEL
        settings = fleet.settings(openai_base_url=fleet.sandbox.openai_base_url)
        async with running_workers(fleet.client, settings):
            report.update(await agent_part(fleet.client, settings, fleet.sandbox, sizes, err))
    report["local_model"] = {"measured": False, "reason": LOCAL_MODEL_SKIPPED}
    if run.as_json:  # else it is the report's last line
        err.print(LOCAL_MODEL_SKIPPED, markup=False)
    return run.finish(tables=lambda: print_report(report))


def main(argv: Sequence[str] | None = None) -> int:
    """``python bench/agent_runs.py``: measure and print; returns the exit status."""
    return asyncio.run(amain(argv))


if __name__ == "__main__":
    sys.exit(main())
