"""LearningCampaignWorkflow: learning rounds one after another (``learning-campaign-{task}-{n}``).

Each round is a child ``LearningRoundWorkflow`` with the round's own id (``learning-{task}-{n}``),
so a round is visible, retried and replayed on its own. The campaign stops at the round budget,
when the champion reaches the target metric, or after ``patience`` rounds without a promotion,
and says which. ``progress`` is what ``fleet learn run`` draws.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows import calls

with workflow.unsafe.imports_passed_through():
    from activities.learning import LearningActivities
    from agentfleet import search_attributes, taskqueues
    from agentfleet.learning.rounds import (
        CampaignOrder,
        CampaignView,
        RoundReport,
        RoundStatus,
        RoundSummary,
        round_workflow_id,
    )


@workflow.defn(name="LearningCampaignWorkflow")
class LearningCampaignWorkflow:
    def __init__(self) -> None:
        self.view: CampaignView | None = None

    @workflow.query
    def progress(self) -> CampaignView | None:
        return self.view

    @workflow.run
    async def run(self, order: CampaignOrder) -> CampaignView:
        view = self.view = CampaignView(task=order.task, rounds_planned=order.rounds)
        workflow.upsert_search_attributes([search_attributes.LEARNING_TASK.value_set(order.task)])
        without_promotion = 0
        first = order.first_round
        if first == 0:
            first = await calls.run(
                LearningActivities.next_learning_round,
                order.task,
                start_to_close_timeout=timedelta(seconds=30),
            )
        for number in range(first, first + order.rounds):
            round_order = order.round.model_copy(update={"round": number, "task": order.task})
            report: RoundReport = await workflow.execute_child_workflow(
                "LearningRoundWorkflow",
                round_order,
                id=round_workflow_id(order.task, number),
                task_queue=taskqueues.WORKFLOWS,
                result_type=RoundReport,
            )
            evaluation = report.evaluation
            promoted = report.status is RoundStatus.PROMOTED
            metric = loss = None
            if evaluation is not None:
                view.primary = evaluation.primary
                chosen = evaluation.candidate if promoted else evaluation.champion
                metric = chosen.get(evaluation.primary)
                loss = chosen.get("loss", chosen.get("mae"))
            view.champion = report.champion or view.champion
            view.rounds.append(
                RoundSummary(
                    round=number,
                    round_id=report.round_id,
                    status=report.status,
                    champion=report.champion,
                    metric=metric,
                    loss=loss,
                    participants=len(report.participants),
                    dropped=len(report.dropped),
                    excluded=len(report.excluded),
                    reason=report.reason,
                )
            )
            without_promotion = 0 if promoted else without_promotion + 1
            if order.target is not None and metric is not None and evaluation is not None:
                reached = (
                    metric >= order.target
                    if evaluation.higher_is_better
                    else (metric <= order.target)
                )
                if reached:
                    view.stopped = f"target {view.primary} {order.target:g} reached"
                    return view
            if order.patience is not None and without_promotion >= order.patience:
                view.stopped = f"no promotion in {order.patience} rounds"
                return view
        view.stopped = f"{order.rounds} rounds done"
        return view
