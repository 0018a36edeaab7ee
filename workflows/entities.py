"""What the entity workflows (bots' relayers, the alerts entity, ...) share."""

from __future__ import annotations

from temporalio import workflow


def continue_as_new_due(after: int | None) -> bool:
    """True when Temporal suggests continuing as new, or when this run's history has reached
    ``after`` events (an entity's own, lower limit; None: only when Temporal suggests it)."""
    info = workflow.info()
    if info.is_continue_as_new_suggested():
        return True
    return after is not None and info.get_current_history_length() >= after
