"""Settings for CLI commands: an invalid FLEET_* value is one line, not a traceback."""

from __future__ import annotations

from pydantic import ValidationError
from pydantic_settings import SettingsError

from agentfleet import redaction
from agentfleet.settings import Settings
from starters.cli.output import fail


def load_settings(as_json: bool = False) -> Settings:
    """The settings, their secrets registered for redaction; an invalid value is one line."""
    try:
        settings = Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["loc"]:
            field = "_".join(str(part) for part in first["loc"]).upper()
            message = f"FLEET_{field}: {message}"
        fail(message, as_json=as_json)
    except SettingsError as exc:
        fail(f"invalid FLEET_* setting: {exc}", as_json=as_json)
    redaction.install(settings)
    return settings
