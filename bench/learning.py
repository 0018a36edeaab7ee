"""Learning benchmark: a federated round's latency vs the same-shape skeleton, and how close the
fleet's model gets to the one trained on all the data at once, with 5, 20 and 50 participants.

    python bench/learning.py [--participants 5,20,50] [--rounds 10] [--runs 20] [--warmup 2]
                             [--seed 0] [--train-from candidate|champion]
                             [--no-drift-correction] [--quick] [--json]

Everything runs in this process: a private dev server (set up as ``fleet up`` sets one up), the
fleet's workers, and per fleet size a SQLite database and artifact store in a temporary folder
with that many active forecaster rows (inserted directly: a round reads rows, it needs no bot
entity), all stopped and removed at the end. Task ``digits`` with its defaults (Dirichlet alpha
1.0, at least 10 local epochs and 160 local steps, drift correction, rounds that continue from
the latest candidate). Measured in the same run; benchmarks report, they never assert timings:

- **campaign**: a ``LearningCampaignWorkflow`` of ``--rounds`` rounds (children
  ``learning-digits-1`` ...) from a fresh registry, as ``fleet learn run --task digits`` runs it.
  Per round the candidate's and the champion's holdout accuracy; "rounds to target": the first
  round whose champion reaches the pooled model's accuracy minus 1 point (null: never).
  **pooled**: ``DigitsTask().train_centrally(seed)`` on the whole train part, same holdout.
- **learning round**: then ``--runs`` more ``LearningRoundWorkflow``s one at a time (client
  start to result; ``--warmup`` discarded), same fleet, continuing from the campaign's last
  round. Its shape is read from its history: select, P ``train_model`` at once, aggregate,
  evaluate, record (4 + P activities in 5 steps); ``record_round`` tells the bots' entities
  (none here). A rolled-back round adds its info alert (``raise_alerts``). No burst row: rounds
  of one task run one at a time by design (one champion per task).
- **skeleton**: ``bench.shapes.StepsSkeletonWorkflow``, the same activities as no-ops (before, P in
  parallel, after) on one queue of its own worker in this process. The round's phases (median
  over the measured rounds, from history timestamps) show where the difference goes; "notify"
  is from ``record_round`` done to the round's end (signals, the alert).

The summary table prints, per fleet, the final gap to pooled, the rounds to the target and the
round's p50 over the skeleton's. Figures, with the run's date: docs/benchmarks.md#learning.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python bench/learning.py` puts bench/ on the path, not the repository root.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from agentfleet import db, taskqueues
from agentfleet.bots.model import BotKind
from agentfleet.learning import registry
from agentfleet.learning.rounds import (
    CampaignOrder,
    CampaignView,
    RoundOrder,
    RoundReport,
    RoundStatus,
    TrainFrom,
    campaign_workflow_id,
    round_workflow_id,
)
from agentfleet.learning.tasks.digits import DigitsTask
from bench.harness import (
    Figures,
    Options,
    Run,
    Scratch,
    Sizes,
    add_bots,
    fmt,
    int_list,
    measure,
    medians,
    milliseconds,
    print_table,
    report_console,
    scratch_fleet,
)
from bench.shapes import (
    activity_spans,
    activity_steps,
    event_time,
    history_events,
    split,
    steps_skeleton,
    steps_text,
    type_counts,
)
from workers.main import running_workers

TASK = "digits"
TARGET_POINTS = 1.0
"""Rounds to reach the pooled model's accuracy minus this many points."""
SHORT = {
    "select_participants": "select",
    "train_model": "train",
    "aggregate_updates": "aggregate",
    "evaluate_candidate": "evaluate",
    "record_round": "record",
}
PHASES = [*SHORT.values(), "notify", "other", "total"]
QUICK = {"participants": [5, 20], "rounds": 3, "runs": 3, "warmup": 1}
_DECIDED = (RoundStatus.PROMOTED, RoundStatus.ROLLED_BACK)


OPTIONS = Options(__file__, __doc__, quick=QUICK)
OPTIONS.add_argument(
    "--participants",
    type=int_list("fleet sizes (bots)", 2, 200),
    default=[5, 20, 50],
    metavar="N,N,...",
    help="fleet sizes (active forecasters), each measured on its own (default: 5,20,50)",
)
OPTIONS.add_argument(
    "--train-from",
    choices=[choice.value for choice in TrainFrom],
    default=TrainFrom.CANDIDATE.value,
    help="where each round starts: the latest candidate (default) or the champion",
)
OPTIONS.add_argument(
    "--no-drift-correction",
    action="store_true",
    help="plain FedAvg rounds, without control variates",
)
OPTIONS.count("--rounds", 10, "rounds of the accuracy campaign")
OPTIONS.count("--runs", 20, "rounds one at a time")
OPTIONS.count("--warmup", 2, "discarded runs per row", low=0)
OPTIONS.count("--seed", 0, "partition and model seed", low=0)


def skeleton_name(before: int, parallel: int, after: int) -> str:
    return f"{before} + {parallel} parallel + {after}"


# -- a round's shape and phases, from its history -------------------------------------------------


ALERT_STEP = ", raise_alerts"
"""A rolled-back round ends with one more activity, its alert (patch ``alerts``): the rounds'
shapes are compared without it, and the rounds measured include it when they rolled back."""


def _core_shape(shape: str) -> str:
    return shape.removesuffix(ALERT_STEP)


async def round_shape(client: Client, workflow_id: str) -> dict[str, Any]:
    """Activities, steps (activities scheduled by one workflow task ran at once), signals and
    phases (ms) of one finished round. ``split``: (before, parallel, after) of the one step that
    ran several activities at once, what the skeleton needs."""
    events = await history_events(client, workflow_id)
    kinds = [event.event_type for event in events]
    signals = kinds.count(EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED)
    signals_failed = kinds.count(EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED)
    steps = activity_steps(events)
    types = type_counts(steps)
    wide = [index for index, group in enumerate(steps) if len(group) > 1]
    if len(wide) == 1:
        around = (
            sum(len(group) for group in steps[: wide[0]]),
            len(steps[wide[0]]),
            sum(len(group) for group in steps[wide[0] + 1 :]),
        )
    else:  # nothing (or more than one step) ran at once: all sequential
        around = (sum(types.values()), 0, 0)
    spans = activity_spans(events)
    phases: dict[str, float] = {}
    for name, short in SHORT.items():
        if name in spans:
            start = min(span.scheduled for span in spans[name])
            phases[short] = milliseconds(start, max(span.completed for span in spans[name]))
    begin, end = event_time(events[0]), event_time(events[-1])
    if "record_round" in spans:
        phases["notify"] = milliseconds(spans["record_round"][-1].completed, end)
    phases["total"] = milliseconds(begin, end)
    phases["other"] = phases["total"] - sum(v for k, v in phases.items() if k != "total")
    return {
        "activities": sum(types.values()),
        "steps": len(steps),
        "parallel": [group for group in steps if len(group) > 1],
        "shape": steps_text(steps, SHORT, collapse=True),
        "activity_types": types,
        "split": list(around),
        "signals": signals,
        "signals_failed": signals_failed,
        "workflow_tasks": kinds.count(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED),
        "history_events": len(events),
        "phases_ms": phases,
    }


# -- set-up ---------------------------------------------------------------------------------------


def round_order(args: argparse.Namespace, number: int) -> RoundOrder:
    """The benchmark's round settings (the defaults of ``fleet learn run`` but for the flags)."""
    return RoundOrder(
        task=TASK,
        round=number,
        seed=args.seed,
        train_from=TrainFrom(args.train_from),
        drift_correction=not args.no_drift_correction,
    )


def bot_names(participants: int) -> list[str]:
    return [f"fc-{index:02d}" for index in range(participants)]


def pooled_figures(seed: int) -> dict[str, Any]:
    """The yardstick: the same model trained on every participant's data at once."""
    task = DigitsTask()
    metrics = task.evaluate(task.train_centrally(seed).weights, task.holdout())
    accuracy = metrics["accuracy"]
    return {
        "seed": seed,
        "accuracy": accuracy,
        "loss": metrics["loss"],
        "target": accuracy - TARGET_POINTS / 100,
    }


def partition_sizes(participants: int, seed: int) -> tuple[list[int], str | None]:
    """Each share's size (train + validation) as the rounds will deal it, or the task's error."""
    try:
        shares = DigitsTask().partition(bot_names(participants), seed)
    except ValueError as exc:
        return [], str(exc)
    return sorted(len(data.train) + len(data.validation) for data in shares.values()), None


# -- the parts ------------------------------------------------------------------------------------


async def campaign_part(
    client: Client, url: str, participants: int, args: argparse.Namespace, target: float
) -> dict[str, Any]:
    """A campaign of ``args.rounds`` rounds from a fresh registry; accuracy per round."""
    order = CampaignOrder(
        task=TASK,
        rounds=args.rounds,
        first_round=1,
        round=round_order(args, 1),
    )
    started = time.perf_counter()
    view: CampaignView = await client.execute_workflow(
        "LearningCampaignWorkflow",
        order,
        id=f"{campaign_workflow_id(TASK, 1)}-{participants}-{uuid.uuid4().hex[:6]}",
        task_queue=taskqueues.WORKFLOWS,
        result_type=CampaignView,
    )
    elapsed = time.perf_counter() - started
    failed = [r for r in view.rounds if r.status not in _DECIDED]
    if failed:
        raise RuntimeError(f"round {failed[0].round} {failed[0].status}: {failed[0].reason}")
    records = {
        row.round: row
        for row in await asyncio.to_thread(registry.list_rounds, url, TASK, args.rounds + 10)
    }
    versions = await asyncio.to_thread(registry.list_versions, url, TASK)
    initial = float(versions[0].metrics["accuracy"])
    rounds: list[dict[str, Any]] = []
    reached: int | None = None
    for summary in view.rounds:
        metrics = records[summary.round].metrics
        champion = summary.metric
        if reached is None and champion is not None and champion >= target:
            reached = summary.round
        rounds.append(
            {
                "round": summary.round,
                "status": summary.status.value,
                "candidate_accuracy": metrics.get("accuracy"),
                "candidate_loss": metrics.get("loss"),
                "candidate_val_accuracy": metrics.get("val_accuracy"),
                "champion_accuracy": champion,
                "champion": summary.champion,
                "left_out": [
                    f"{e['participant']}: {e['reason']}"
                    for e in [*records[summary.round].dropped, *records[summary.round].excluded]
                ],
            }
        )
    final = rounds[-1]["champion_accuracy"]
    return {
        "rounds": rounds,
        "stopped": view.stopped,
        "elapsed_s": elapsed,
        "promoted": sum(1 for r in view.rounds if r.status is RoundStatus.PROMOTED),
        "initial_accuracy": initial,
        "final_accuracy": final,
        "target": target,
        "rounds_to_target": reached,
    }


async def latency_part(
    client: Client, participants: int, args: argparse.Namespace, err: Console
) -> dict[str, Any]:
    """The skeleton of the round's shape, then rounds one at a time; the shape comes from the
    campaign's first round and is checked against the last measured one."""
    probe = await round_shape(client, round_workflow_id(TASK, 1))
    before, parallel, after = probe["split"]
    shape = skeleton_name(before, parallel, after)
    common: dict[str, Any] = {
        "shape": shape,
        "activities": probe["activities"],
        "sizes": Sizes(args.runs, 0, args.warmup),
    }
    err.print(f"{participants} bots: one round is {probe['shape']}; skeleton {shape}")
    async with steps_skeleton(client, "bench-round-skeleton") as skeleton_worker:
        skeleton_once = skeleton_worker.runner(split(before, parallel, after))
        skeleton = await measure("skeleton", skeleton_once, **common)

    numbers = iter(range(args.rounds + 1, args.rounds + 1 + args.warmup + args.runs))
    round_ids: dict[str, str] = {}

    async def round_once(key: str) -> None:
        number = next(numbers)  # after the campaign's: the ids a campaign would give them
        round_ids[key] = workflow_id = round_workflow_id(TASK, number)
        report: RoundReport = await client.execute_workflow(
            "LearningRoundWorkflow",
            round_order(args, number),
            id=workflow_id,
            task_queue=taskqueues.WORKFLOWS,
            result_type=RoundReport,
        )
        if report.status not in _DECIDED:
            raise RuntimeError(f"{workflow_id} {report.status}: {report.reason}")

    err.print(f"{participants} bots: {args.runs} rounds one at a time")
    row = await measure(f"learning round, {participants} bots", round_once, **common)
    measured = [round_ids[f"r{index}"] for index in range(args.runs)]
    shapes = [await round_shape(client, workflow_id) for workflow_id in measured]
    for measured_shape in shapes:
        if _core_shape(measured_shape["shape"]) != _core_shape(probe["shape"]):
            raise RuntimeError(
                f"rounds differ in shape: {probe['shape']} then {measured_shape['shape']}"
            )
    per_round = {**probe}  # the campaign's first round: promoted, so no alert step
    per_round["phases_ms"] = medians(
        [s["phases_ms"] for s in shapes],
        [phase for phase in PHASES if all(phase in s["phases_ms"] for s in shapes)],
    )
    return {"per_round": per_round, "rows": [skeleton, row]}


async def fleet_part(
    scratch: Scratch,
    participants: int,
    pooled: dict[str, Any],
    args: argparse.Namespace,
    err: Console,
) -> dict[str, Any]:
    """One fleet size: its own database and artifact store, the campaign, then the latency."""
    sizes, problem = await asyncio.to_thread(partition_sizes, participants, args.seed)
    fleet: dict[str, Any] = {"participants": participants, "partition_error": problem}
    if problem is not None:
        err.print(f"{participants} bots: skipped, the digits cannot be dealt out: {problem}")
        return fleet | {"rows": []}
    fleet["share_sizes"] = {"smallest": sizes[0], "largest": sizes[-1]}
    folder = scratch.home / f"bots-{participants}"
    folder.mkdir()
    url = f"sqlite:///{folder / 'fleet.db'}"
    settings = scratch.settings(home=folder, database_url=url, openai_base_url=None)
    client = scratch.client
    try:
        await asyncio.to_thread(db.upgrade_database, url)
        await asyncio.to_thread(add_bots, url, bot_names(participants), BotKind.FORECASTER)
        async with running_workers(client, settings):
            err.print(f"{participants} bots: a campaign of {args.rounds} rounds")
            fleet["campaign"] = await campaign_part(
                client, url, participants, args, pooled["target"]
            )
            fleet.update(await latency_part(client, participants, args, err))
            skeleton, measured = fleet["rows"]
            fleet["round_vs_skeleton"] = measured.p50_ms / skeleton.p50_ms
    finally:
        db.dispose_engine(url)
    return fleet


# -- report ---------------------------------------------------------------------------------------


def _fmt(value: float | None, form: str = "{:.4f}") -> str:
    return fmt(value, form)


def print_report(report: dict[str, Any], rows: Sequence[Figures]) -> None:
    console = report_console()
    fleets = [f for f in report["fleets"] if f["partition_error"] is None]
    if rows:
        print_table(
            rows,
            baseline=[row for row in rows if row.name == "skeleton"],
            console=console,
            title=f"Learning round ({TASK}) one at a time, client start to result, vs a skeleton "
            "of the same activities as no-ops (no signals)",
        )
    phases = Table(title="Round phases, median ms over the measured rounds (history timestamps)")
    phases.add_column("bots", justify="right")
    phases.add_column("round")
    phases.add_column("signals", justify="right")
    phases.add_column("wf tasks", justify="right")
    for phase in PHASES:
        phases.add_column(phase, justify="right")
    for fleet in fleets:
        shape = fleet["per_round"]
        phases.add_row(
            str(fleet["participants"]),
            shape["shape"],
            str(shape["signals"]),
            str(shape["workflow_tasks"]),
            *(_fmt(shape["phases_ms"].get(phase), "{:.0f}") for phase in PHASES),
        )
    if fleets:
        console.print(phases)
    pooled = report["pooled"]
    summary = Table(
        title=f"Federated vs pooled accuracy (holdout; pooled {pooled['accuracy']:.4f}, "
        f"target {pooled['target']:.4f} = pooled - {TARGET_POINTS:g} point)"
    )
    headers = ("bots", "shares", "initial", "final", "vs pooled (points)", "rounds to target")
    for header in (*headers, "promoted", "campaign s", "round p50 / skeleton"):
        summary.add_column(header, justify="right")
    for fleet in report["fleets"]:
        if fleet["partition_error"] is not None:
            summary.add_row(str(fleet["participants"]), f"skipped: {fleet['partition_error']}")
            continue
        campaign = fleet["campaign"]
        gap = (campaign["final_accuracy"] - pooled["accuracy"]) * 100
        summary.add_row(
            str(fleet["participants"]),
            f"{fleet['share_sizes']['smallest']}-{fleet['share_sizes']['largest']}",
            _fmt(campaign["initial_accuracy"]),
            _fmt(campaign["final_accuracy"]),
            f"{gap:+.2f}",
            _fmt(campaign["rounds_to_target"], "{}"),
            f"{campaign['promoted']}/{len(campaign['rounds'])}",
            f"{campaign['elapsed_s']:.1f}",
            _fmt(fleet.get("round_vs_skeleton"), "{:.2f}x"),
        )
    console.print(summary)
    per_round = Table(
        title="Accuracy per round: candidate / champion after it (↑ promoted; left out: "
        "dropped or screened, reasons in --json)"
    )
    per_round.add_column("round", justify="right")
    for fleet in fleets:
        per_round.add_column(f"{fleet['participants']} bots", justify="right")
    for index in range(max((len(f["campaign"]["rounds"]) for f in fleets), default=0)):
        cells = [str(index + 1)]
        for fleet in fleets:
            rounds = fleet["campaign"]["rounds"]
            if index >= len(rounds):
                cells.append("")
                continue
            r = rounds[index]
            mark = " ↑" if r["status"] == RoundStatus.PROMOTED.value else "  "
            if r["left_out"]:
                mark = f" ({len(r['left_out'])} left out){mark}"
            cells.append(f"{_fmt(r['candidate_accuracy'])} / {_fmt(r['champion_accuracy'])}{mark}")
        per_round.add_row(*cells)
    if fleets:
        console.print(per_round)


async def amain(argv: Sequence[str] | None = None) -> int:
    """The benchmark in a running event loop; progress on stderr, the report on stdout."""
    args = OPTIONS.read(argv)
    meta = {
        "rounds": args.rounds,
        "runs": args.runs,
        "warmup": args.warmup,
        "seed": args.seed,
        "train_from": args.train_from,
        "drift_correction": not args.no_drift_correction,
    }
    run = Run("learning", args, task=TASK, **meta)
    report, err = run.report, run.err
    rows: list[Figures] = []
    err.print(f"pooled: {TASK} trained centrally (seed {args.seed})")
    report["pooled"] = pooled = await asyncio.to_thread(pooled_figures, args.seed)
    async with scratch_fleet("learning", database=False) as scratch:
        report["server"] = scratch.server
        report["fleets"] = []
        for participants in args.participants:
            fleet = await fleet_part(scratch, participants, pooled, args, err)
            rows.extend(fleet.pop("rows"))
            report["fleets"].append(fleet)
    report["rows"] = rows
    report["baseline"] = [row for row in rows if row.name == "skeleton"]
    return run.finish(tables=lambda: print_report(report, rows))


def main(argv: Sequence[str] | None = None) -> int:
    """``python bench/learning.py``: measure and print; returns the exit status."""
    return asyncio.run(amain(argv))


if __name__ == "__main__":
    sys.exit(main())
