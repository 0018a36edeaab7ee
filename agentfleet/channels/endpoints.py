"""Where each channel sends, resolved from settings: a real endpoint when one is set, else the
local sandbox (``FLEET_CHANNEL_SANDBOX``), else a :class:`NotConfigured` error.

The sandbox (:mod:`sandbox`) uses the same functions to know which token it accepts
and which secret it verifies webhooks with, so both ends agree without extra configuration.
"""

from __future__ import annotations

import base64
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import SecretStr

from agentfleet import redaction, secretfile
from agentfleet.channels.errors import NotConfigured
from agentfleet.settings import LOOPBACK, Settings

TELEGRAM_API_URL = "https://api.telegram.org"
SANDBOX_TELEGRAM_TOKEN = "0:sandbox"  # noqa: S105 - public, accepted by the sandbox only
"""The bot token the sandbox accepts; used only when the sandbox is the Telegram endpoint."""
WEBHOOK_SECRET_FILE = "webhook-secret"  # noqa: S105 - a file name
WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 - the format prefix


def _telegram_uses_sandbox(settings: Settings) -> bool:
    return settings.telegram_api_url is None and settings.channel_sandbox


def telegram_endpoint(settings: Settings) -> tuple[str, SecretStr]:
    """``(api_base_url, token)``. The base has no ``/bot`` suffix and no trailing slash:
    ``FLEET_TELEGRAM_API_URL``, else ``<sandbox>/telegram`` when the sandbox is on, else
    ``https://api.telegram.org``. The token is ``FLEET_TELEGRAM_BOT_TOKEN``, or the sandbox's
    fixed token when the sandbox is the endpoint; otherwise :class:`NotConfigured`."""
    if settings.telegram_api_url:
        base = settings.telegram_api_url.rstrip("/")
    elif settings.channel_sandbox:
        base = f"{settings.sandbox_url}/telegram"
    else:
        base = TELEGRAM_API_URL
    if settings.telegram_bot_token is not None and settings.telegram_bot_token.get_secret_value():
        return base, settings.telegram_bot_token
    if _telegram_uses_sandbox(settings):
        return base, SecretStr(SANDBOX_TELEGRAM_TOKEN)
    raise NotConfigured("telegram: no bot token; set FLEET_TELEGRAM_BOT_TOKEN")


def smtp_endpoint(settings: Settings) -> tuple[str, int]:
    """``(host, port)``: ``FLEET_SMTP_HOST`` with ``FLEET_SMTP_PORT`` (default 587 with STARTTLS,
    25 without), else the sandbox's SMTP port on 127.0.0.1, else :class:`NotConfigured`."""
    if settings.smtp_host:
        port = settings.smtp_port or (587 if settings.smtp_starttls else 25)
        return settings.smtp_host, port
    if settings.channel_sandbox:
        return LOOPBACK, settings.sandbox_smtp_port
    raise NotConfigured("email: no SMTP server; set FLEET_SMTP_HOST")


def webhook_secret(settings: Settings) -> SecretStr:
    """The Standard Webhooks signing secret: ``FLEET_WEBHOOK_SECRET``, else the dev secret under
    ``FLEET_HOME`` (created on first use)."""
    if settings.webhook_secret is not None and settings.webhook_secret.get_secret_value():
        return settings.webhook_secret
    return dev_webhook_secret(settings.home)


def dev_webhook_secret(home: Path) -> SecretStr:
    """``whsec_`` + base64 of 32 random bytes, generated once into ``home/webhook-secret`` (mode
    0600) and read back afterwards; concurrent first calls agree on one secret."""
    path = home / WEBHOOK_SECRET_FILE
    value = secretfile.read_or_create(
        path, lambda: WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()
    )
    if not value.startswith(WEBHOOK_SECRET_PREFIX):
        raise NotConfigured(f"{path} does not hold a whsec_ secret; delete it to generate one")
    redaction.register(value)
    return SecretStr(value)


def describe_url(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: safe to show, since paths and queries of webhook and
    Bot API URLs can hold secrets."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<invalid url>"
    if not parts.scheme or not parts.hostname:
        return "<invalid url>"
    return f"{parts.scheme}://{parts.hostname}" + (f":{port}" if port else "")
