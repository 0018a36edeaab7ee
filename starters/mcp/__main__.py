"""``python -m starters.mcp``: serve the MCP server on FLEET_BIND_HOST:FLEET_MCP_PORT (``/mcp``)."""

from __future__ import annotations

import uvicorn

from agentfleet import redaction
from agentfleet.settings import get_settings, invalid_settings_line
from starters.mcp.server import create_app


def main() -> int:
    try:
        settings = get_settings()
    except Exception as exc:  # pydantic ValidationError: bad FLEET_* value
        print(f"error: {invalid_settings_line(exc)}")
        return 1
    redaction.configure_logging(settings)
    uvicorn.run(
        create_app(settings),
        host=settings.bind_host,
        port=settings.mcp_port,
        log_config=None,
        log_level=settings.log_level.lower(),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
