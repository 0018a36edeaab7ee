"""AgentRunWorkflow: one task answered by an agent bot, its LLM tool loop run durably.

Workflow id ``agent-{bot}-{key}`` (:func:`agentfleet.agents.model.run_workflow_id`), on the agents
task queue, where the worker carries Temporal's OpenAI Agents SDK integration
(``OpenAIAgentsPlugin``): the SDK's ``Runner`` runs in the workflow and every model call is an
activity (``invoke_model_activity``), so a crashed worker resumes the run from its history without
calling the model again for a turn that completed.

Around each model call: its cost is held in the agent's daily budget at its entity before the call
(``hold_agent_budget``; refused: the run ends ``over_budget``, or waits for a human when the
agent's ``approvals.budget_overrun`` says so), and after it the real usage is recorded once per
(run, call) (``record_usage``) and the hold becomes the call's cost.

Tools, each the fleet's durable path: the fleet's free skills (``forecast``, ``status``,
``performance``: the ``run_skill`` activity), ``patterns`` and ``find_sellers`` (activities),
``buy_skill`` (budget hold, approval above ``approvals.purchase_over``, then a child
``BuyerPurchaseWorkflow``: spending policy, x402, exactly once), ``submit_post`` (a
``ContentPipelineWorkflow`` that a human must approve; agents never publish), ``share_pattern``
(a ``PatternShareWorkflow``) and the tools of configured MCP servers (``call_mcp_tool``).
A tool call that needs a human waits for the ``decide`` update (validated), with a reminder
alert and an expiry; every decision is audited.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

from workflows import calls
from workflows.alerting import new_alert, raise_alerts

with workflow.unsafe.imports_passed_through():
    from agents import (
        Agent,
        FunctionTool,
        MaxTurnsExceeded,
        ModelResponse,
        ModelSettings,
        RunConfig,
        RunContextWrapper,
        RunHooks,
        Runner,
        function_tool,
    )

    from activities.agents import AgentActivities
    from activities.fleet import FleetActivities
    from activities.skills import SkillActivities
    from activities.store import StoreActivities
    from agentfleet import taskqueues
    from agentfleet.agents.model import (
        AgentContext,
        AgentRunRequest,
        AgentRunView,
        AgentTool,
        ApprovalAsk,
        ApprovalDecision,
        BudgetAsk,
        McpCall,
        McpListAsk,
        McpToolSpec,
        PatternsAsk,
        RunSource,
        RunStatus,
        RunStep,
        SellersAnswer,
        SellersAsk,
        UsageEntry,
        fusd,
        key_from,
        run_slug,
    )
    from agentfleet.bots.commands import ResolvedTargets, ResolveTargets, Targets
    from agentfleet.bots.model import BotKind, Pattern, Skill, SkillCall, bot_workflow_id
    from agentfleet.content.model import ContentOrder, content_workflow_id
    from agentfleet.learning.patterns import ShareOrder
    from agentfleet.messages import AuditRecord
    from agentfleet.operations.alerts import AlertKind
    from agentfleet.payments.purchases import PurchaseRequest, PurchaseStatus, PurchaseView
    from agentfleet.payments.spending import HoldAnswer, SpendingRef, SpentAmount

RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=10,
    non_retryable_error_types=["AgentRefused"],
)
STEP: dict[str, Any] = {"start_to_close_timeout": timedelta(seconds=30), "retry_policy": RETRY}
BOOK_STEP: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=10),
    "retry_policy": RETRY,
}
"""The budget's bookkeeping (a hold, a usage row): quick, so a worker that dies in one is
replaced after 10 s."""
SKILL_STEP: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=20),
    "retry_policy": RETRY,
}
CHARS_PER_TOKEN = 4
"""A call's input is estimated at a token per four characters to size its budget hold."""


class Stop(Exception):
    """The run ends here with ``status`` and ``reason`` (raised from the run's hooks)."""

    def __init__(self, status: RunStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Hooks(RunHooks[Any]):
    """The SDK calls these around every model call, in the workflow."""

    def __init__(self, run: AgentRunWorkflow) -> None:
        self.run = run

    async def on_llm_start(
        self,
        context: RunContextWrapper[Any],
        agent: Agent[Any],
        system_prompt: str | None,
        input_items: list[Any],
    ) -> None:
        await self.run.before_model_call(system_prompt or "", input_items)

    async def on_llm_end(
        self, context: RunContextWrapper[Any], agent: Agent[Any], response: ModelResponse
    ) -> None:
        await self.run.after_model_call(response)


@workflow.defn(name="AgentRunWorkflow")
class AgentRunWorkflow:
    @workflow.init
    def __init__(self, request: AgentRunRequest) -> None:
        self.request = request
        # A Schedule's runs get their id (the schedule's, plus a time) from the schedule.
        scheduled = request.source is RunSource.SCHEDULE
        run_id = workflow.info().workflow_id if scheduled else request.run_id
        self.slug = run_slug(run_id)
        self.view = AgentRunView(
            run_id=run_id,
            bot=request.bot,
            task=request.task,
            source=request.source,
            requested_by=request.requested_by,
        )
        self.ctx: AgentContext | None = None
        self.decision: ApprovalDecision | None = None
        self.asked = 0
        self.stop: Stop | None = None
        self.hold_id: str | None = None
        self.holds = 0

    # -- queries and updates ------------------------------------------------------------------

    @workflow.query
    def status(self) -> AgentRunView:
        return self._snapshot()

    def _snapshot(self) -> AgentRunView:
        """The view with every field marked set: the plugin's payload converter leaves unset
        fields out, and a list grown by ``append`` never counts as set."""
        return AgentRunView.model_validate(self.view.model_dump())

    @workflow.update
    def decide(self, decision: ApprovalDecision) -> AgentRunView:
        """A human approves or denies the tool call that waits (``fleet agent approve|deny``,
        Telegram buttons)."""
        self.decision = decision
        self.view.pending, self.view.status = None, RunStatus.RUNNING
        return self._snapshot()

    @decide.validator
    def _validate_decide(self, decision: ApprovalDecision) -> None:
        pending = self.view.pending
        if pending is None or self.decision is not None:
            raise ApplicationError(
                f"run {self.view.run_id} has no tool call waiting for approval",
                type="NothingPending",
            )
        if decision.approval_id != pending.approval_id:
            raise ApplicationError(
                f"approval {decision.approval_id} is not the one waiting ({pending.approval_id})",
                type="WrongApproval",
            )
        if decision.approver == self.view.bot:
            raise ApplicationError("an agent cannot approve its own call", type="SelfApproval")

    # -- the run ----------------------------------------------------------------------------

    @workflow.run
    async def run(self, request: AgentRunRequest) -> AgentRunView:
        try:
            self.ctx = await calls.run(AgentActivities.agent_context, request, **STEP)
        except ActivityError as err:
            return await self._end(RunStatus.REFUSED, _message(err))
        ctx = self.ctx
        self._step("start", request.source.value, f"model {ctx.params.model}")
        tools = self._tools(ctx) + await self._mcp_tools(ctx)
        agent: Agent[Any] = Agent(
            name=ctx.bot,
            instructions=(
                f"{ctx.params.instructions}\n\nYou are {ctx.bot}. {ctx.disclosure} Say that you "
                "are automated in every answer and every post."
            ),
            model=ctx.params.model,
            tools=tools,
            model_settings=ModelSettings(max_tokens=ctx.max_output_tokens),
        )
        try:
            result = await Runner.run(
                agent,
                request.task,
                max_turns=ctx.params.max_turns,
                hooks=_Hooks(self),
                run_config=RunConfig(tracing_disabled=True),
            )
        except Stop as stop:
            return await self._end(stop.status, stop.reason)
        except MaxTurnsExceeded:
            return await self._end(
                RunStatus.FAILED, f"no answer within {ctx.params.max_turns} model turns"
            )
        if self.stop is not None:
            return await self._end(self.stop.status, self.stop.reason)
        self.view.answer = str(result.final_output)
        return await self._end(RunStatus.COMPLETED, None)

    async def before_model_call(self, system_prompt: str, input_items: list[Any]) -> None:
        """Stop if a tool stopped the run; else hold the call's estimated cost."""
        if self.stop is not None:
            raise self.stop
        assert self.ctx is not None  # noqa: S101 (set before the runner starts)
        chars = len(system_prompt) + sum(len(str(item)) for item in input_items)
        estimate = self.ctx.price.units(chars // CHARS_PER_TOKEN + 1, self.ctx.max_output_tokens)
        self.hold_id = f"{self.slug}:call-{self.view.model_calls + 1}"
        await self._hold(self.hold_id, max(1, estimate), "model call")

    async def after_model_call(self, response: ModelResponse) -> None:
        """Record the call's usage once and spend its real cost."""
        assert self.ctx is not None  # noqa: S101
        self.view.model_calls += 1
        usage = response.usage
        cost = self.ctx.price.units(usage.input_tokens, usage.output_tokens)
        self.view.input_tokens += usage.input_tokens
        self.view.output_tokens += usage.output_tokens
        self.view.token_units += cost
        await calls.run(
            AgentActivities.record_usage,
            UsageEntry(
                run_id=self.view.run_id,
                call_no=self.view.model_calls,
                bot=self.view.bot,
                model=self.ctx.params.model,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cost_units=cost,
            ),
            **BOOK_STEP,
        )
        if self.hold_id is not None:
            await self._entity().signal(
                "spend_budget", SpentAmount(purchase_id=self.hold_id, amount=cost)
            )
            self.hold_id = None
        self._step(
            "model",
            f"call {self.view.model_calls}",
            f"{usage.input_tokens} in, {usage.output_tokens} out, {fusd(cost)} fUSD",
        )

    async def _hold(self, hold_id: str, amount: int, what: str) -> None:
        """Hold ``amount`` of the agent's day; over budget: wait for a human if the rules say
        so, else stop the run (raises :class:`Stop`)."""
        assert self.ctx is not None  # noqa: S101
        try:
            answer: HoldAnswer = await calls.run(
                AgentActivities.hold_budget,
                BudgetAsk(bot=self.view.bot, hold_id=hold_id, amount=amount),
                **BOOK_STEP,
            )
        except ActivityError as err:
            raise Stop(RunStatus.REFUSED, _message(err)) from None
        if answer.granted:
            return
        reason = f"{what} refused: {answer.reason}"
        await raise_alerts([new_alert(AlertKind.AGENT_BUDGET, self.view.bot, reason)])
        if self.ctx.params.approvals.budget_overrun:
            decision = await self._approval("budget", {"hold": hold_id, "units": amount}, reason)
            if decision is not None and decision.approved:
                return
        raise Stop(RunStatus.OVER_BUDGET, reason)

    async def _end(self, status: RunStatus, reason: str | None) -> AgentRunView:
        self.view.status = status
        self.view.reason = reason
        self.view.pending = None
        self._step("end", status.value, reason or "")
        await calls.run(
            StoreActivities.record_audit_event,
            AuditRecord(
                idempotency_key=f"agent-run:{self.view.run_id}",
                actor=self.view.bot,
                kind="agent_run",
                subject=self.view.requested_by,
                workflow_id=self.view.run_id,
                detail={
                    "status": status.value,
                    "reason": reason,
                    "model_calls": self.view.model_calls,
                    "token_units": self.view.token_units,
                    "purchase_units": self.view.purchase_units,
                },
            ),
            **STEP,
        )
        return self._snapshot()

    def _step(self, kind: str, name: str, detail: str = "") -> None:
        self.view.steps.append(RunStep(at=workflow.now(), kind=kind, name=name, detail=detail))

    def _entity(self) -> workflow.ExternalWorkflowHandle[Any]:
        return workflow.get_external_workflow_handle(bot_workflow_id(self.view.bot))

    # -- approvals --------------------------------------------------------------------------

    async def _approval(
        self, tool: str, arguments: dict[str, Any], why: str
    ) -> ApprovalDecision | None:
        """Wait for a human's decision on one call: a reminder alert after
        ``remind_after_s``, None once ``timeout_s`` passed (expired)."""
        assert self.ctx is not None  # noqa: S101
        rules = self.ctx.params.approvals
        self.asked += 1
        now = workflow.now()
        ask = ApprovalAsk(
            approval_id=f"{tool}-{self.asked}",
            tool=tool,
            arguments=arguments,
            why=why,
            asked_at=now,
            expires_at=now + timedelta(seconds=rules.timeout_s),
        )
        self.view.pending, self.view.status, self.decision = ask, RunStatus.WAITING_APPROVAL, None
        self._step("approval", tool, f"waiting: {why}")
        remind = min(rules.remind_after_s, rules.timeout_s)
        decided = await self._wait_decision(remind)
        if not decided and remind < rules.timeout_s:
            text = f"run {self.view.run_id}: {tool} awaits approval ({why})"
            await raise_alerts([new_alert(AlertKind.AGENT_APPROVAL_OVERDUE, ask.approval_id, text)])
            decided = await self._wait_decision(rules.timeout_s - remind)
        decision, self.decision = self.decision, None
        self.view.pending, self.view.status = None, RunStatus.RUNNING
        if decision is None:
            self._step("approval", tool, "expired")
            return None
        self.view.decisions.append(decision)
        verdict = "approved" if decision.approved else "denied"
        self._step("approval", tool, f"{verdict} by {decision.approver}")
        await calls.run(
            StoreActivities.record_audit_event,
            AuditRecord(
                idempotency_key=f"agent-approval:{self.view.run_id}:{ask.approval_id}",
                actor=decision.approver,
                kind="agent_approval",
                subject=self.view.bot,
                workflow_id=self.view.run_id,
                detail={"tool": tool, "decision": verdict, "note": decision.note or None},
            ),
            **STEP,
        )
        return decision

    async def _wait_decision(self, seconds: int) -> bool:
        try:
            await workflow.wait_condition(
                lambda: self.decision is not None, timeout=timedelta(seconds=seconds)
            )
        except TimeoutError:
            return False
        return True

    async def _gate(self, tool: str, arguments: dict[str, Any], why: str) -> str | None:
        """None when the call may go on; else the refusal the model reads."""
        decision = await self._approval(tool, arguments, why)
        if decision is None:
            return f"refused: the approval of {tool} expired"
        if not decision.approved:
            return f"refused by {decision.approver}: {decision.note or 'denied'}"
        return None

    def _needs_approval(self, tool: str) -> bool:
        assert self.ctx is not None  # noqa: S101
        return tool in self.ctx.params.approvals.tools

    # -- tools ------------------------------------------------------------------------------

    def _tools(self, ctx: AgentContext) -> list[Any]:
        allowed = set(ctx.params.built_in())
        run = self

        @function_tool(name_override="forecast")
        async def forecast(symbol: str = "BTCUSDT", horizon: str = "1h", bot: str = "") -> str:
            """A price forecast from one of the fleet's own forecaster bots (free inside the
            fleet). bot: a forecaster's name, or empty for the fleet's first one."""
            return await run._skill(
                AgentTool.FORECAST, Skill.FORECAST, bot, {"symbol": symbol, "horizon": horizon}
            )

        @function_tool(name_override="status")
        async def status(bot: str) -> str:
            """A fleet bot's status: kind, state, owner, parameters."""
            return await run._skill(AgentTool.STATUS, Skill.STATUS, bot, {})

        @function_tool(name_override="performance")
        async def performance(bot: str) -> str:
            """A fleet bot's forecasting performance (mean error, hit rate)."""
            return await run._skill(AgentTool.PERFORMANCE, Skill.PERFORMANCE, bot, {})

        @function_tool(name_override="patterns")
        async def patterns(symbol: str = "") -> str:
            """Market patterns (regimes) the fleet's bots shared, newest first."""
            return await run._tool_call(
                AgentTool.PATTERNS,
                {"symbol": symbol},
                lambda: calls.run(
                    AgentActivities.shared_patterns, PatternsAsk(symbol=symbol or None), **STEP
                ),
            )

        @function_tool(name_override="find_sellers")
        async def find_sellers(skill: str = "forecast") -> str:
            """Bots that sell a skill (forecast, performance, share_pattern) and their price in
            fUSD per call, cheapest first."""
            return await run._find_sellers(skill)

        @function_tool(name_override="buy_skill")
        async def buy_skill(seller: str, skill: str = "forecast", symbol: str = "BTCUSDT") -> str:
            """Buy one call of another bot's skill, paid in fUSD with x402 within your budget
            (exactly once; a human approves purchases above your threshold)."""
            return await run._buy(seller, skill, symbol)

        @function_tool(name_override="submit_post")
        async def submit_post(text: str) -> str:
            """Submit a post to the fleet's content pipeline: it is checked against the policy
            and waits for a human's approval before anything is published."""
            return await run._submit_post(text)

        @function_tool(name_override="share_pattern")
        async def share_pattern(symbol: str, regime: str, confidence: float) -> str:
            """Share a market pattern (a regime such as trending or ranging on a symbol, with a
            confidence 0-1) with the fleet; other bots check it before it spreads."""
            return await run._share_pattern(symbol, regime, confidence)

        every: dict[AgentTool, Any] = {
            AgentTool.FORECAST: forecast,
            AgentTool.STATUS: status,
            AgentTool.PERFORMANCE: performance,
            AgentTool.PATTERNS: patterns,
            AgentTool.FIND_SELLERS: find_sellers,
            AgentTool.BUY_SKILL: buy_skill,
            AgentTool.SUBMIT_POST: submit_post,
            AgentTool.SHARE_PATTERN: share_pattern,
        }
        return [tool for name, tool in every.items() if name in allowed]

    async def _mcp_tools(self, ctx: AgentContext) -> list[Any]:
        found: list[Any] = []
        for server, url in sorted(ctx.mcp_urls.items()):
            try:
                listed = await calls.run(
                    AgentActivities.list_mcp_tools, McpListAsk(server=server, url=url), **STEP
                )
            except ActivityError as err:
                self._step("tool", f"mcp:{server}", f"not reachable: {_message(err)}")
                continue
            found.extend(self._mcp_tool(spec, url) for spec in listed.tools)
        return found

    def _mcp_tool(self, spec: McpToolSpec, url: str) -> FunctionTool:
        name = f"{spec.server}__{spec.name}"[:64]

        async def invoke(_ctx: RunContextWrapper[Any], arguments: str) -> str:
            try:
                args = json.loads(arguments or "{}")
            except ValueError:
                return "error: the arguments are not JSON"
            return await self._tool_call(
                name,
                args if isinstance(args, dict) else {},
                lambda: calls.run(
                    AgentActivities.call_mcp_tool,
                    McpCall(server=spec.server, url=url, tool=spec.name, arguments=args),
                    **STEP,
                ),
            )

        schema = spec.input_schema or {"type": "object", "properties": {}}
        return FunctionTool(
            name=name,
            description=spec.description or f"{spec.name} (MCP server {spec.server})",
            params_json_schema=schema,
            on_invoke_tool=invoke,
            strict_json_schema=False,
        )

    async def _tool_call(
        self, name: str, arguments: dict[str, Any], work: Callable[[], Awaitable[Any]]
    ) -> str:
        """Run one tool's durable work (after an approval when the rules ask for one); its
        answer as JSON text for the model, or the one-line refusal."""
        if self._needs_approval(name):
            refusal = await self._gate(name, arguments, "the agent's rules ask for approval")
            if refusal is not None:
                self._step("tool", name, refusal)
                return refusal
        try:
            result = await work()
        except ActivityError as err:
            line = f"error: {_message(err)}"
            self._step("tool", name, line)
            return line
        self._step("tool", name, "ok")
        data = result.model_dump(mode="json") if hasattr(result, "model_dump") else result
        return json.dumps(data, default=str)[:8000]

    async def _skill(self, tool: AgentTool, skill: Skill, bot: str, args: dict[str, Any]) -> str:
        targets = Targets(names=[bot]) if bot else Targets(kinds=[BotKind.FORECASTER])
        resolved: ResolvedTargets = await calls.run(
            FleetActivities.resolve_targets, ResolveTargets(targets=targets), **STEP
        )
        if not resolved.bots:
            return f"error: no bot named {bot}" if bot else "error: the fleet has no forecaster"
        ref = resolved.bots[0]
        return await self._tool_call(
            tool.value,
            {"bot": ref.name, **args},
            lambda: calls.run(
                SkillActivities.run_skill, SkillCall(bot=ref, skill=skill, args=args), **SKILL_STEP
            ),
        )

    async def _find_sellers(self, skill: str) -> str:
        try:
            wanted = Skill(skill)
        except ValueError:
            return f"error: unknown skill {skill!r}"
        return await self._tool_call(
            AgentTool.FIND_SELLERS.value,
            {"skill": skill},
            lambda: calls.run(
                AgentActivities.find_sellers,
                SellersAsk(skill=wanted, buyer=self.view.bot),
                **STEP,
            ),
        )

    async def _buy(self, seller: str, skill: str, symbol: str) -> str:
        assert self.ctx is not None  # noqa: S101
        tool = AgentTool.BUY_SKILL.value
        try:
            wanted = Skill(skill)
        except ValueError:
            return f"error: unknown skill {skill!r}"
        offers: SellersAnswer = await calls.run(
            AgentActivities.find_sellers, SellersAsk(skill=wanted, buyer=self.view.bot), **STEP
        )
        offer = next((o for o in offers.sellers if o.bot == seller), None)
        if offer is None:
            return f"error: {seller} does not sell {skill} (find_sellers lists who does)"
        arguments = {"seller": seller, "skill": skill, "symbol": symbol, "price": offer.price}
        threshold = self.ctx.params.approvals.purchase_over
        if self._needs_approval(tool) or offer.units > int(threshold * 10**6):
            why = f"{offer.price} fUSD is above the approval threshold of {threshold} fUSD"
            refusal = await self._gate(tool, arguments, why)
            if refusal is not None:
                self._step("tool", tool, refusal)
                return refusal
        self.holds += 1
        number = self.holds
        hold_id = f"{self.slug}:buy-{number}"
        try:
            await self._hold(hold_id, offer.units, f"buying {skill} from {seller}")
        except Stop as stop:
            self.stop = stop
            return f"refused: {stop.reason}"
        purchase_id = f"purchase-{self.slug}-{number}"[:129]
        self.view.purchases.append(purchase_id)
        self._step("tool", tool, f"{purchase_id}: {offer.price} fUSD to {seller}")
        try:
            bought: PurchaseView = await workflow.execute_child_workflow(
                "BuyerPurchaseWorkflow",
                PurchaseRequest(
                    purchase_id=purchase_id,
                    buyer=self.view.bot,
                    seller=seller,
                    skill=wanted,
                    args={"symbol": symbol, "horizon": "1h"} if wanted is Skill.FORECAST else {},
                    validator=None,
                    min_score=50,
                ),
                id=purchase_id,
                task_queue=taskqueues.WORKFLOWS,
                result_type=PurchaseView,
                # A purchase finishes (settles, reviews, frees its holds) whatever becomes of
                # the run that started it.
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,
            )
        except ChildWorkflowError as err:
            # Its outcome is not known here: the hold stays (as the buyer's spending does).
            return f"error: the purchase did not finish: {_message(err)}"
        entity = self._entity()
        if bought.status is PurchaseStatus.DONE or "settled" in bought.steps:
            paid = bought.amount or offer.units
            self.view.purchase_units += paid
            await entity.signal("spend_budget", SpentAmount(purchase_id=hold_id, amount=paid))
        elif "paid" not in bought.steps:
            await entity.signal("release_budget", SpendingRef(purchase_id=hold_id))
        return json.dumps(
            {
                "seller": seller,
                "status": bought.status.value,
                "answer": bought.result,
                "paid": fusd(bought.amount or 0) if "settled" in bought.steps else "0",
                "tx_hash": bought.tx_hash,
                "reason": bought.reason,
            },
            default=str,
        )[:8000]

    async def _submit_post(self, text: str) -> str:
        assert self.ctx is not None  # noqa: S101
        tool = AgentTool.SUBMIT_POST.value
        if self.ctx.publisher is None or self.ctx.channel is None:
            return "error: the fleet has no active publisher with a channel to submit through"
        text = " ".join(text.split())[:4000]
        if not text:
            return "error: the post is empty"
        if self._needs_approval(tool):
            refusal = await self._gate(tool, {"text": text}, "the agent's rules ask for approval")
            if refusal is not None:
                return refusal
        self.holds += 1
        content_id = f"{self.view.bot}-{key_from(self.slug)[:10]}-{self.holds}"
        order = ContentOrder(
            content_id=content_id,
            bot=self.ctx.publisher,
            channel=self.ctx.channel,
            brief=text,
            submitted_by=f"agent:{self.view.bot}",
            publish_at=None,
            needs_human=True,
        )
        await workflow.start_child_workflow(
            "ContentPipelineWorkflow",
            order,
            id=content_workflow_id(content_id),
            task_queue=taskqueues.WORKFLOWS,
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
        )
        self.view.posts.append(content_id)
        self._step("tool", tool, f"content {content_id} submitted; it waits for approval")
        return (
            f"submitted as content {content_id} through {self.ctx.publisher}; it is checked "
            "against the policy and waits for a human's approval (`fleet content approve`)"
        )

    async def _share_pattern(self, symbol: str, regime: str, confidence: float) -> str:
        tool = AgentTool.SHARE_PATTERN.value
        try:
            claim = Pattern(symbol=symbol, regime=regime, confidence=confidence)
        except ValueError as exc:
            return f"error: {exc}"
        if self._needs_approval(tool):
            refusal = await self._gate(tool, claim.model_dump(), "the agent's rules ask for it")
            if refusal is not None:
                return refusal
        self.holds += 1
        pattern_id = f"pattern-{self.slug}-{self.holds}"
        await workflow.start_child_workflow(
            "PatternShareWorkflow",
            ShareOrder(pattern_id=pattern_id, source=self.view.bot, symbol=symbol, claim=claim),
            id=pattern_id,
            task_queue=taskqueues.WORKFLOWS,
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
        )
        self._step("tool", tool, pattern_id)
        return f"shared as {pattern_id}; the fleet's bots check it before it spreads"


def _message(err: BaseException) -> str:
    """The innermost failure's message (an activity's or a child's ApplicationError)."""
    cause: BaseException | None = err
    while cause is not None and isinstance(cause, ActivityError | ChildWorkflowError):
        cause = cause.cause
    return str(cause if cause is not None else err)
