"""Fleet health activities: which bots to check, the checks themselves, and the alerts.

``check_bots_health`` checks a batch of bots at once (gas, fUSD, ERC-8004 registration, a
``status`` skill round trip through the same code as ``run_skill``, the entity's error rate) and
answers a verdict per bot. What is wrong with a bot is a reason in its verdict, never an activity
failure; what is wrong with us (the chain unreachable, the wrong chain) fails the batch, so the
workflow leaves those bots as they are. ``report_health`` is where alerts go: a log line and the
metrics below until alert channels exist.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from prometheus_client import Counter, Gauge
from sqlmodel import col, select
from temporalio import activity
from temporalio.client import WorkflowQueryFailedError, WorkflowQueryRejectedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from web3 import AsyncWeb3
from web3.exceptions import Web3Exception

from activities.queues import runs_on
from activities.skills import SkillActivities
from agentfleet import db, taskqueues
from agentfleet.bots.health import (
    BotHealth,
    FleetHealthSummary,
    HealthBatch,
    HealthBatchResult,
    HealthCheck,
    HealthTarget,
    HealthTargets,
)
from agentfleet.bots.model import (
    BotKind,
    BotRef,
    BotStatus,
    Skill,
    SkillCall,
)
from agentfleet.chain import artifacts
from agentfleet.chain.rpc import Web3Connection
from agentfleet.errors import first_line
from agentfleet.models import BotRecord
from agentfleet.settings import Settings
from clients import bots

log = logging.getLogger("agentfleet.bots.health")

CHECKED_STATUSES = (BotStatus.ACTIVE, BotStatus.DEGRADED)
QUERY_TIMEOUT = timedelta(seconds=5)

BOT_DEGRADED = Counter(
    "fleet_bot_health_degraded",
    "Times a health check moved a bot from active to degraded",
    ["bot"],
)
BOTS_DEGRADED = Gauge(
    "fleet_bots_degraded", "Bots degraded after the last health run this process reported"
)


class HealthActivities:
    """Health activities bound to one database, one chain (web3) and the skill code."""

    task_queue = taskqueues.IO

    def __init__(self, settings: Settings, skills: SkillActivities | None = None) -> None:
        self._settings = settings
        self._url = settings.effective_database_url
        self._own_skills = skills is None
        self._skills = skills or SkillActivities(settings)
        self._rpc = Web3Connection(settings.effective_rpc_url)

    async def close(self) -> None:
        await self._rpc.close()
        if self._own_skills:
            await self._skills.close()

    @activity.defn(name="health_targets")
    def health_targets(self, check: HealthCheck) -> HealthTargets:
        """Active and degraded bots, by name (their rows in the ``bots`` table)."""
        statuses = [status.value for status in CHECKED_STATUSES]
        with db.session_scope(self._url) as session:
            rows = session.exec(
                select(BotRecord)
                .where(col(BotRecord.status).in_(statuses))
                .order_by(col(BotRecord.name))
            ).all()
            found = [
                HealthTarget(
                    bot=BotRef(
                        name=row.name,
                        kind=BotKind(row.kind),
                        status=BotStatus(row.status),
                        owner=row.owner,
                        params=row.params,
                    ),
                    address=row.address,
                    agent_id=row.agent_id,
                )
                for row in rows
                if row.kind in set(BotKind)
            ]
        return HealthTargets(bots=found)

    @activity.defn(name="check_bots_health")
    @runs_on(taskqueues.CHAIN)
    async def check_bots_health(self, batch: HealthBatch) -> HealthBatchResult:
        """Every bot of ``batch`` checked at once; verdicts in the batch's order."""
        w3 = self._rpc.get()
        try:
            chain_id = await w3.eth.chain_id
        except Exception as exc:  # noqa: BLE001 - any transport error: the chain is not there
            raise ApplicationError(
                f"chain unreachable at {self._settings.effective_rpc_url}: {first_line(exc, 200)}",
                type="ChainUnreachable",
            ) from None
        if chain_id != batch.context.chain_id:
            raise ApplicationError(
                f"the RPC serves chain {chain_id}, the deployment is on {batch.context.chain_id}",
                type="WrongChain",
                non_retryable=True,
            )
        results = await asyncio.gather(*(self._check(t, batch) for t in batch.targets))
        return HealthBatchResult(results=list(results))

    async def _check(self, target: HealthTarget, batch: HealthBatch) -> BotHealth:
        health = BotHealth(name=target.bot.name, status=target.bot.status, healthy=True)
        await self._entity(target, batch.check, health)
        if target.address is None:
            health.reasons.append("wallet: no address recorded")
        else:
            await self._chain(target, target.address, batch, health)
        await self._round_trip(target, batch.check, health)
        health.healthy = not health.reasons
        return health

    async def _entity(self, target: HealthTarget, check: HealthCheck, health: BotHealth) -> None:
        """Live status and error counters from the bot's entity (its row may lag behind)."""
        try:
            view = await bots.bot_status(activity.client(), target.bot.name, QUERY_TIMEOUT)
        except RPCError as exc:
            if exc.status is RPCStatusCode.NOT_FOUND:
                health.reasons.append(f"entity: bot-{target.bot.name} is not running")
            else:
                health.reasons.append(f"entity: status query failed: {first_line(exc, 200)}")
            return
        except (WorkflowQueryFailedError, WorkflowQueryRejectedError) as exc:
            health.reasons.append(f"entity: status query failed: {first_line(exc, 200)}")
            return
        health.status = view.status
        health.errors, health.commands_handled = view.errors, view.commands_handled
        if view.commands_handled >= check.min_commands:
            rate = view.errors / view.commands_handled
            if rate > check.max_error_rate:
                health.reasons.append(
                    f"errors: {view.errors} of {view.commands_handled} commands failed "
                    f"({rate:.0%} > {check.max_error_rate:.0%})"
                )

    async def _chain(
        self, target: HealthTarget, address: str, batch: HealthBatch, health: BotHealth
    ) -> None:
        w3, context = self._rpc.get(), batch.context
        wallet = AsyncWeb3.to_checksum_address(address)
        token = w3.eth.contract(
            address=AsyncWeb3.to_checksum_address(context.fleet_usd),
            abi=artifacts.load("FleetUSD").abi,
        )
        health.gas_wei = int(await w3.eth.get_balance(wallet))
        if health.gas_wei < batch.check.min_gas_wei:
            health.reasons.append(
                f"gas: {_ether(health.gas_wei)} native left, below the "
                f"{_ether(batch.check.min_gas_wei)} minimum; send gas to {wallet}"
            )
        try:
            health.fusd_units = int(await token.functions.balanceOf(wallet).call())
        except Web3Exception as exc:
            log.warning("fUSD balance of %s unreadable: %s", target.bot.name, first_line(exc, 200))
        if target.agent_id is None:
            health.reasons.append("registration: no agent id recorded")
            return
        registry = w3.eth.contract(
            address=AsyncWeb3.to_checksum_address(context.identity_registry),
            abi=artifacts.load("IdentityRegistry").abi,
        )
        agent = target.agent_id
        try:
            owner = str(await registry.functions.ownerOf(agent).call())
            agent_wallet = str(await registry.functions.getAgentWallet(agent).call())
        except Web3Exception as exc:
            health.reasons.append(f"registration: agent {agent} unreadable: {first_line(exc, 200)}")
            return
        if owner.lower() != wallet.lower():
            health.reasons.append(f"registration: agent {agent} is owned by {owner}, not {wallet}")
        if agent_wallet.lower() != wallet.lower():
            health.reasons.append(
                f"registration: agent {agent}'s wallet is {agent_wallet}, not {wallet}"
            )

    async def _round_trip(
        self, target: HealthTarget, check: HealthCheck, health: BotHealth
    ) -> None:
        """The ``status`` skill through ``run_skill``'s code, in this activity (no nested one)."""
        call = SkillCall(bot=target.bot, skill=Skill.STATUS)
        try:
            result = await asyncio.wait_for(
                self._skills.run_skill(call), timeout=check.per_bot_timeout_s
            )
        except TimeoutError:
            health.reasons.append(f"skill status: no answer within {check.per_bot_timeout_s:g} s")
            return
        health.skill_ms = result.elapsed_ms
        if not result.ok:
            health.reasons.append(f"skill status: {result.error or 'failed without a reason'}")

    @activity.defn(name="report_health")
    def report_health(self, summary: FleetHealthSummary) -> None:
        """Alerts of one health run: a log line per change, the degraded counter and gauge."""
        for name in summary.degraded:
            BOT_DEGRADED.labels(bot=name).inc()
            log.warning("bot %s degraded: %s", name, summary.reasons.get(name, ""))
        for name in summary.recovered:
            log.info("bot %s recovered", name)
        BOTS_DEGRADED.set(len(summary.degraded) + len(summary.still_degraded))


def _ether(wei: int) -> str:
    return f"{wei / 10**18:.6g}"
