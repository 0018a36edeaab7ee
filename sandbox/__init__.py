"""Local servers that speak the channels' real protocols, for tests and the ``fleet up`` demo.

One process (``python -m sandbox``) or one in-process :class:`Sandbox` serves a Bot
API subset with Telegram's flood limits (``/telegram``), an OpenAI-compatible API
(``/openai/v1``), a Standard Webhooks receiver (``/webhooks/<name>``) and SMTP, and shows what
they received at ``GET /sandbox/inbox``. Nothing leaves the machine.
"""

from __future__ import annotations

from sandbox.app import Sandbox, create_app, free_port
from sandbox.buckets import TelegramLimits, TokenBucket
from sandbox.store import InboxItem, SandboxStore

__all__ = [
    "InboxItem",
    "Sandbox",
    "SandboxStore",
    "TelegramLimits",
    "TokenBucket",
    "create_app",
    "free_port",
]
