"""Scoring and policy checks on ``fleet-llm``.

Offline by default (textstat, VADER, a profanity list; the policy's declarative checks). With
``FLEET_OPENAI_BASE_URL`` set, an LLM judge adds a 0-100 score and, when the policy says
``moderation: true``, the endpoint's moderation verdict is one more check.
"""

from __future__ import annotations

import asyncio

from temporalio import activity

from agentfleet import llm, taskqueues
from agentfleet.content.model import CheckOutcome, CheckResult, ReviewRequest, Scores
from agentfleet.content.policy.checks import run_checks
from agentfleet.content.policy.rules import Policy
from agentfleet.content.scoring import score_text
from agentfleet.settings import Settings

JUDGE_PROMPT = (
    "You review posts of automated agents before a human approves them. Answer JSON "
    '{"score": 0-100, "why": "one sentence"}: clarity, accuracy of tone, and no spam.'
)


class ComplianceActivities:
    task_queue = taskqueues.LLM

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @activity.defn(name="score_content")
    async def score_content(self, request: ReviewRequest) -> Scores:
        scores = await asyncio.to_thread(score_text, request.text, max_length=request.max_length)
        if llm.configured(self._settings):
            verdict = await llm.chat_json(self._settings, JUDGE_PROMPT, request.text)
            try:
                judge = max(0.0, min(100.0, float(verdict["score"])))
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"the judge's answer has no 0-100 score: {verdict}") from None
            scores = scores.model_copy(
                update={
                    "judge": judge,
                    "scorer": f"{scores.scorer}+llm:{self._settings.openai_model}",
                }
            )
        return scores

    @activity.defn(name="check_content")
    async def check_content(self, request: ReviewRequest) -> list[CheckResult]:
        policy = Policy.model_validate(request.policy)
        checks = run_checks(
            policy,
            request.text,
            channel=request.channel,
            max_length=request.max_length,
            disclosure=request.disclosure,
        )
        if policy.moderation and llm.configured(self._settings):
            flagged, categories = await llm.moderate(self._settings, request.text)
            checks.append(
                CheckResult(
                    check="moderation",
                    outcome=CheckOutcome.FAIL if flagged else CheckOutcome.PASS,
                    reason=f"flagged: {', '.join(categories)}" if flagged else "",
                )
            )
        return checks
