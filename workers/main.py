"""Worker process: polls the fleet's task queues and runs what each queue owns.

``python -m workers.main`` (or ``fleet worker``) polls every queue; ``--queue`` limits it to some,
so each kind of work can scale on its own machines. Metrics: one ``/metrics`` port
(``FLEET_METRICS_PORT``) with the Temporal SDK's metrics and agentfleet's app metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import contextlib
import functools
import gc
import logging
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import workflows
from activities import queues
from activities.agents import AgentActivities
from activities.alerts import AlertActivities
from activities.chain import ChainActivities
from activities.channels import ChannelActivities
from activities.compliance import ComplianceActivities
from activities.content import ContentActivities
from activities.fleet import FleetActivities
from activities.health import HealthActivities
from activities.identity import IdentityActivities
from activities.learning import LearningActivities, PatternActivities
from activities.llm import LlmActivities
from activities.payments import PaymentActivities
from activities.purchases import PurchaseActivities
from activities.reconcile import ReconcileActivities
from activities.skeleton import noop
from activities.skills import SkillActivities
from activities.store import StoreActivities
from activities.validation import ValidationActivities
from agentfleet import keystore, redaction, taskqueues
from agentfleet.agents import runtime
from agentfleet.errors import FleetError
from agentfleet.operations import metrics
from agentfleet.ports import free_port
from agentfleet.settings import Settings, get_settings, invalid_settings_line
from agentfleet.temporal import connect
from workflows.agent_run import AgentRunWorkflow
from workflows.alerts import AlertsWorkflow
from workflows.bot_lifecycle import BotLifecycleWorkflow
from workflows.buyer_purchase import BuyerPurchaseWorkflow
from workflows.channel_publisher import ChannelPublisherWorkflow
from workflows.content_pipeline import ContentPipelineWorkflow
from workflows.fleet_command import FleetCommandWorkflow
from workflows.fleet_health import FleetHealthWorkflow
from workflows.learning_campaign import LearningCampaignWorkflow
from workflows.learning_round import LearningRoundWorkflow
from workflows.patterns import PatternShareWorkflow
from workflows.payer import PayerWorkflow
from workflows.payment_saga import PaymentSagaWorkflow
from workflows.reconcile import ReconcilePaymentsWorkflow
from workflows.relayer import RelayerWorkflow, TransactionWorkflow
from workflows.skeleton import SkeletonWorkflow
from workflows.stack_check import StackCheckWorkflow

log = logging.getLogger("agentfleet.worker")

WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(
        "agentfleet", "pydantic", "pydantic_core", "annotated_types"
    )
)
"""Our shared models and pydantic are deterministic and imported once, not per workflow run."""

WORKFLOWS: list[type] = [
    AlertsWorkflow,
    BotLifecycleWorkflow,
    BuyerPurchaseWorkflow,
    ChannelPublisherWorkflow,
    ContentPipelineWorkflow,
    FleetCommandWorkflow,
    FleetHealthWorkflow,
    LearningCampaignWorkflow,
    LearningRoundWorkflow,
    PatternShareWorkflow,
    PayerWorkflow,
    PaymentSagaWorkflow,
    ReconcilePaymentsWorkflow,
    RelayerWorkflow,
    SkeletonWorkflow,
    StackCheckWorkflow,
    TransactionWorkflow,
]


class Activities:
    """The activity objects of one worker process (they hold connections to close at the end)."""

    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self.settings = settings
        self.store = StoreActivities(settings)
        self.chain = ChainActivities(settings, client)
        self.identity = IdentityActivities(settings)
        self.fleet = FleetActivities(settings, client)
        self.skills = SkillActivities(settings)
        self.health = HealthActivities(settings, skills=self.skills)
        self.payments = PaymentActivities(settings, client)
        self.purchases = PurchaseActivities(settings)
        self.validation = ValidationActivities(settings, self.purchases)
        self.reconcile = ReconcileActivities(settings)
        self.content = ContentActivities(settings, client)
        self.llm = LlmActivities(settings)
        self.compliance = ComplianceActivities(settings)
        self.channels = ChannelActivities(settings)
        self.learning = LearningActivities(settings)
        self.patterns = PatternActivities(settings)
        self.alerts = AlertActivities(settings, client)
        self.agents = AgentActivities(settings)

    def instances(self) -> list[object]:
        return [value for value in vars(self).values() if hasattr(type(value), "task_queue")]

    async def close(self) -> None:
        await self.chain.close()
        await self.identity.close()
        await self.skills.close()
        await self.health.close()
        await self.payments.close()
        await self.purchases.close()
        await self.reconcile.close()


def activities_for(queue: str, bound: Activities) -> list[Callable[..., Any]]:
    """The activities registered on ``queue``: each where its class (or its own ``runs_on``)
    says, and the local ones also with the workflows (see :mod:`activities.queues`)."""
    return queues.by_queue(bound.instances(), [noop])[queue]


@functools.cache
def compile_workflow_modules() -> None:
    """Write the bytecode of ``workflows/`` (once per process, best effort). The sandbox
    imports a workflow's modules afresh for every run; without cached bytecode (as under
    ``PYTHONDONTWRITEBYTECODE=1``, which the Dockerfile and many dev machines set) each run
    compiles them from source, ~8 ms of CPU per payment saga here. A read-only tree just keeps
    compiling."""
    for folder in workflows.__path__:
        compileall.compile_dir(folder, maxlevels=0, quiet=2)


def build_workers(
    client: Client,
    bound: Activities,
    queues: Sequence[str] = taskqueues.ALL,
    executor: ThreadPoolExecutor | None = None,
) -> list[Worker]:
    """One ``Worker`` per queue, sharing a client and a thread pool for sync activities."""
    compile_workflow_modules()
    executor = executor or ThreadPoolExecutor(max_workers=32, thread_name_prefix="activity")
    workers = []
    for queue in queues:
        if queue == taskqueues.AGENTS:
            # Agent runs: the client carries the OpenAI Agents SDK plugin, which adds the model
            # activity and runs the SDK's Runner in these workflows (agentfleet.agents.runtime).
            workers.append(
                Worker(
                    runtime.agents_client(client, bound.settings),
                    task_queue=queue,
                    workflows=[AgentRunWorkflow],
                    workflow_runner=WORKFLOW_RUNNER,
                    activities=activities_for(queue, bound),
                    activity_executor=executor,
                    max_concurrent_workflow_tasks=bound.settings.workflow_task_slots,
                )
            )
            continue
        workers.append(
            Worker(
                client,
                task_queue=queue,
                workflows=WORKFLOWS if queue == taskqueues.WORKFLOWS else [],
                workflow_runner=WORKFLOW_RUNNER,
                activities=activities_for(queue, bound),
                activity_executor=executor,
                max_concurrent_workflow_tasks=bound.settings.workflow_task_slots,
            )
        )
    return workers


@contextlib.asynccontextmanager
async def running_workers(
    client: Client, settings: Settings, queues: Sequence[str] = taskqueues.ALL
) -> AsyncIterator[list[Worker]]:
    """Poll ``queues`` until the block ends; then shut down and close connections. Once the
    workers have started, the process heap is collected and frozen (``gc.freeze()``)."""
    bound = Activities(settings, client)
    try:
        async with contextlib.AsyncExitStack() as stack:
            workers = build_workers(client, bound, queues)
            for worker in workers:
                await stack.enter_async_context(worker)
            # What exists now (modules, settings, the workers) lives as long as the workers:
            # frozen, it is left out of every full garbage collection, whose pause holds the GIL
            # and so stalls every workflow thread (toward the SDK's 2 s deadlock detector). This
            # freezes the whole process's heap, the caller's objects too: fine for the worker
            # process and the benchmarks, and tests freeze after each test anyway.
            gc.collect()
            gc.freeze()
            yield workers
    finally:
        await bound.close()


async def run(settings: Settings, queues: Sequence[str], metrics_port: int | None) -> None:
    # A lost or wrong keystore secret stops the worker here, not at its first signature.
    stored = await asyncio.to_thread(keystore.verify_master_secret, settings)
    log.info("keystore secret opens the %d stored keys", stored)
    runtime = None
    if metrics_port:
        sdk_address = f"127.0.0.1:{free_port()}"
        runtime = Runtime(
            telemetry=TelemetryConfig(
                metrics=PrometheusConfig(bind_address=sdk_address, counters_total_suffix=True)
            )
        )
        metrics.serve(
            metrics_port,
            sdk_address,
            host=settings.bind_host,
            database_url=settings.effective_database_url,
        )
    client = await connect(settings, runtime=runtime)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker polling %s (metrics on :%s)", ", ".join(queues), metrics_port or "-")
    async with running_workers(client, settings, queues):
        await stop.wait()
        log.info("worker shutting down")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.main", description=__doc__)
    parser.add_argument(
        "--queue", action="append", choices=taskqueues.ALL, help="poll only this queue (repeat)"
    )
    parser.add_argument(
        "--metrics-port", type=int, default=None, help="override FLEET_METRICS_PORT (0: off)"
    )
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
    except Exception as exc:  # pydantic ValidationError: bad FLEET_* value
        print(f"error: {invalid_settings_line(exc)}")
        return 1
    redaction.configure_logging(settings)
    port = settings.metrics_port if args.metrics_port is None else args.metrics_port
    try:
        asyncio.run(run(settings, args.queue or list(taskqueues.ALL), port))
    except FleetError as exc:
        print(f"error: {redaction.redact(str(exc))}")
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
