"""``python -m starters.http``: serve the HTTP app on FLEET_BIND_HOST:FLEET_HTTP_PORT."""

from __future__ import annotations

import uvicorn

from agentfleet.settings import get_settings
from starters.http.app import create_app


def main() -> None:
    settings = get_settings()
    uvicorn.run(
        create_app(settings),
        host=settings.bind_host,
        port=settings.http_port,
        log_level=settings.log_level.lower(),
    )


if __name__ == "__main__":
    main()
