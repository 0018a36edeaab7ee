"""Every ``workflow.patched()`` id our workflows branch on: what it guards and when it can go.

A change to what a running workflow does next is added behind ``workflow.patched(ID)``: a history
recorded before the change replays the old branch, a new execution takes the new one and records
the marker. Temporal's way out, in two steps, for each patch below:

1. **deprecate**: once no execution that started before the patch can still be running or be
   replayed (every such execution closed and past the namespace's retention, and the recorded
   histories under ``tests/histories/`` that take the old branch re-recorded), replace
   ``workflow.patched(ID)`` by ``workflow.deprecate_patch(ID)`` and delete the old branch;
2. **remove**: once no open execution recorded the marker (all started before step 1 closed and
   past retention), delete the ``deprecate_patch`` call.

``tests/test_patches.py`` keeps this list and the code in step: every ``patched()`` call names one
of these, and every one of these is used.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Patch:
    id: str
    """The marker recorded in histories; never change it."""
    guards: str
    """What the new branch does that the old one did not."""
    since: str
    """The day it was added (executions started before it may take the old branch)."""
    old_histories: tuple[str, ...] = ()
    """Recorded histories (``tests/histories/<name>_<backend>.json``) of the patched workflow
    that carry no marker for it (the old branch, if they reach it): re-record them before
    deprecating."""


ALERTS = Patch(
    id="alerts",
    guards="health checks, failed payments, reconciliation differences, overdue approvals and "
    "rolled-back learning rounds raise alerts (the raise_alerts activity)",
    since="2026-11-25",
    old_histories=(
        "fleet_health",
        "reconcile_payments",
        "learning_round",
        "content_pipeline_published",
        "content_pipeline_rejected",
        "content_pipeline_cancelled",
    ),
)
MODEL_HEALTH = Patch(
    id="model-health",
    guards="the fleet health check also checks the served models and rolls back a champion "
    "that does worse than its parent (check_models)",
    since="2026-11-25",
    old_histories=("fleet_health",),
)
PAYMENT_STATUS = Patch(
    id="payment-status",
    guards="a payment saga upserts the PaymentStatus search attribute at each status "
    "(implied by lean-saga)",
    since="2026-11-25",
    old_histories=(
        "payment_saga_settled",
        "payment_saga_rejected",
        "payment_saga_skill_failed",
        "payment_saga_failed_alert",
    ),
)
LEAN_SAGA = Patch(
    id="lean-saga",
    guards="verify and record are local activities and the settlement is one send_with_relayer "
    "activity instead of a child TransactionWorkflow (3 workflow tasks instead of 6)",
    since="2026-11-25",
    old_histories=(
        "payment_saga_settled",
        "payment_saga_settled_with_status",
        "payment_saga_rejected",
        "payment_saga_skill_failed",
        "payment_saga_failed_alert",
    ),
)
SETTLE_UNTIL_KNOWN = Patch(
    id="settle-until-known",
    guards="a settlement whose outcome is unknown is sent again (same request id) until it is "
    "known; the saga never ends on an unknown outcome",
    since="2026-12-07",
)
SPENDING_HOLDS = Patch(
    id="spending-holds",
    guards="a purchase holds its amount at the buyer's bot entity before signing, so racing "
    "purchases cannot pass the daily budget together",
    since="2026-12-07",
    old_histories=("buyer_purchase", "buyer_purchase_refunded"),
)
RELAYER_WAKES_ON_FINISHED = Patch(
    id="relayer-wakes-on-finished",
    guards="an idle relayer wakes when told a transaction finished, so it sets a timer for the "
    "re-check (before, re-checks waited for the next reservation)",
    since="2026-11-24",
    old_histories=("relayer",),
)
COMMAND_ANSWERS_STORED = Patch(
    id="command-answers-stored",
    guards="a fleet command plans its targets with plan_command (instead of resolve_targets); "
    "past FLEET_COMMAND_INLINE_ANSWERS targets its batches are answer_batch activities that "
    "store the answers, and the result carries a tally and where they are",
    since="2026-12-07",
    old_histories=("fleet_command",),
)
VERIFY_ACTIVITY = Patch(
    id="verify-activity",
    guards="a payment saga verifies with an activity instead of a local activity: verify waits "
    "on the payer entity's hold update, and a local activity keeps the saga's workflow task (and "
    "its worker slot) open meanwhile, so a burst of sagas larger than the worker's slots left no "
    "slot for the payer entity and hung",
    since="2026-12-07",
    old_histories=(
        "payment_saga_settled_lean",
        "payment_saga_rejected_lean",
        "payment_saga_skill_failed_lean",
        "payment_saga_failed_alert_lean",
        "payment_saga_unknown_then_settled",
        "payment_saga_settled",
        "payment_saga_settled_with_status",
        "payment_saga_rejected",
        "payment_saga_skill_failed",
        "payment_saga_failed_alert",
    ),
)
LEARNING_TOLD_BY_RECORD = Patch(
    id="learning-told-by-record",
    guards="a learning round's record_round activity tells the participants' entities the model "
    "they serve (signals sent from the activity, at once) instead of the workflow sending one "
    "signal per participant (each a command and an event, and more workflow tasks)",
    since="2026-12-07",
    old_histories=("learning_round", "learning_round_rolled_back"),
)

ALL = (
    ALERTS,
    MODEL_HEALTH,
    PAYMENT_STATUS,
    LEAN_SAGA,
    SETTLE_UNTIL_KNOWN,
    SPENDING_HOLDS,
    RELAYER_WAKES_ON_FINISHED,
    COMMAND_ANSWERS_STORED,
    VERIFY_ACTIVITY,
    LEARNING_TOLD_BY_RECORD,
)
