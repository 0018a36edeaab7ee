"""``python -m starters.stack``: the supervisor of ``fleet up --detach``, without a terminal.

Progress goes to stdout (the CLI points it at ``logs/supervisor.log``); SIGTERM stops the stack.
"""

from __future__ import annotations

import sys
import time

from agentfleet import redaction
from agentfleet.errors import FleetError
from agentfleet.settings import get_settings
from starters.stack.state import StackStatus
from starters.stack.supervisor import Supervisor


def _report(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


def main() -> int:
    settings = get_settings()
    redaction.configure_logging(settings)
    supervisor = Supervisor(settings, _report)
    supervisor.stop_on_signals()
    try:
        supervisor.start()
    except FleetError as exc:
        _report(redaction.redact(f"error: {exc}"))
        return 1
    except KeyboardInterrupt:
        _report("start interrupted")
        return 1
    _report("stack ready")
    try:
        supervisor.supervise()
    finally:
        failed = supervisor.state.status is StackStatus.FAILED
        supervisor.stop()
    _report("stack stopped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
