"""Settings for CLI commands: an invalid FLEET_* value is one line, not a traceback."""

from __future__ import annotations

from pydantic import ValidationError
from pydantic_settings import SettingsError

from agentfleet import redaction
from agentfleet.settings import Settings, invalid_settings_line
from starters.cli.output import fail


def load_settings(as_json: bool = False) -> Settings:
    """The settings, their secrets registered for redaction; an invalid value is one line."""
    try:
        settings = Settings()
    except (ValidationError, SettingsError) as exc:
        fail(invalid_settings_line(exc), as_json=as_json)
    redaction.install(settings)
    return settings
