"""PatternShareWorkflow: one shared pattern, from the bot that saw it to the fleet (``pattern-*``).

the source's ``share_pattern`` (or an operator's claim in its name) -> stored -> a first wave of
bots of its kind check it on their own data (``receive_intelligence``, batched) -> if at least
``min_success`` of them confirm it, everyone else of that kind is asked too; otherwise it is
``rejected`` and goes no further. Every verdict is one ``pattern_validations`` row, so the
pattern's success rate across the fleet is in SQL and in ``fleet learn patterns``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

from workflows import calls

with workflow.unsafe.imports_passed_through():
    from activities.learning import PatternActivities
    from activities.skills import SkillActivities
    from agentfleet.bots.model import (
        BotRef,
        Pattern,
        Skill,
        SkillBatch,
        SkillBatchResult,
        SkillCall,
        SkillResult,
    )
    from agentfleet.learning.patterns import (
        PatternStatus,
        PatternTargets,
        PatternView,
        ShareOrder,
        ValidationWave,
        Verdict,
    )

T = TypeVar("T")
STEP = timedelta(seconds=60)
RETRY = RetryPolicy(maximum_interval=timedelta(seconds=10), maximum_attempts=10)
STEP_OPTIONS: dict[str, Any] = {"start_to_close_timeout": STEP, "retry_policy": RETRY}


@workflow.defn(name="PatternShareWorkflow")
class PatternShareWorkflow:
    def __init__(self) -> None:
        self.view: PatternView | None = None

    @workflow.query
    def status(self) -> PatternView | None:
        return self.view

    @workflow.run
    async def run(self, order: ShareOrder) -> PatternView:
        view = self.view = PatternView(pattern_id=order.pattern_id, source=order.source)
        targets: PatternTargets = await calls.run(
            PatternActivities.pattern_targets, order, **STEP_OPTIONS
        )
        pattern = order.claim or await self._observe(order, targets)
        view.pattern = pattern
        await calls.run(PatternActivities.store_pattern, view, **STEP_OPTIONS)
        first, rest = targets.others[: order.first_wave], targets.others[order.first_wave :]
        asked, holds = await self._wave(order, pattern, first)
        if asked == 0 or holds / asked < order.min_success:
            view.status = PatternStatus.REJECTED
            view.not_reached = [bot.name for bot in rest]
        else:
            asked, holds = await self._wave(order, pattern, rest) if rest else (asked, holds)
            view.status = PatternStatus.VALIDATED
        view.asked, view.holds = asked, holds
        view.success_rate = holds / asked if asked else None
        await calls.run(PatternActivities.finish_pattern, view, **STEP_OPTIONS)
        return view

    async def _observe(self, order: ShareOrder, targets: PatternTargets) -> Pattern:
        args = {"symbol": order.symbol} if order.symbol else {}
        result: SkillResult = await calls.run(
            SkillActivities.run_skill,
            SkillCall(bot=targets.source, skill=Skill.SHARE_PATTERN, args=args),
            start_to_close_timeout=STEP,
            retry_policy=RETRY,
        )
        if not result.ok:
            raise ApplicationError(
                f"{result.bot} could not share a pattern: {result.error}", type="ShareFailed"
            )
        return Pattern.model_validate(result.data["pattern"])

    async def _wave(
        self, order: ShareOrder, pattern: Pattern, bots: list[BotRef]
    ) -> tuple[int, int]:
        batch = [
            SkillCall(
                bot=bot,
                skill=Skill.RECEIVE_INTELLIGENCE,
                args={"item": pattern.model_dump(mode="json")},
            )
            for bot in bots
        ]
        verdicts: list[Verdict] = []
        if batch:
            answers: SkillBatchResult = await calls.run(
                SkillActivities.run_skill_batch,
                SkillBatch(calls=batch),
                start_to_close_timeout=STEP,
                retry_policy=RETRY,
            )
            for answer in answers.results:
                if answer.ok:
                    verdicts.append(
                        Verdict(
                            bot=answer.bot,
                            holds=bool(answer.data.get("holds")),
                            confidence=answer.data.get("confidence"),
                        )
                    )
                else:
                    verdicts.append(Verdict(bot=answer.bot, holds=False, error=answer.error))
        wave = ValidationWave(pattern_id=order.pattern_id, verdicts=verdicts)
        totals: list[int] = await calls.run(
            PatternActivities.record_validations, wave, **STEP_OPTIONS
        )
        return totals[0], totals[1]
