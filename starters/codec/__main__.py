"""``python -m starters.codec``: serve the codec endpoint on FLEET_CODEC_BIND_HOST (loopback)
and FLEET_CODEC_PORT."""

from __future__ import annotations

import uvicorn

from agentfleet import redaction
from agentfleet.errors import FleetError
from agentfleet.settings import get_settings, invalid_settings_line
from starters.codec.app import create_app


def main() -> int:
    try:
        settings = get_settings()
    except Exception as exc:  # pydantic ValidationError: bad FLEET_* value
        print(f"error: {invalid_settings_line(exc)}")
        return 1
    redaction.configure_logging(settings)
    try:
        app = create_app(settings)
    except FleetError as exc:
        print(f"error: {redaction.redact(str(exc))}")
        return exc.exit_code
    uvicorn.run(
        app,
        host=settings.codec_bind_host,
        port=settings.codec_port,
        log_config=None,
        log_level=settings.log_level.lower(),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
