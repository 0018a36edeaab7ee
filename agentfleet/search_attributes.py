"""Custom search attributes that keep the Web UI's list filters useful.

They are registered when the embedded dev server starts (``--search-attribute``) and by
``fleet setup`` on a cluster; workflows set them through the typed keys below.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

BOT_NAME = SearchAttributeKey.for_keyword("BotName")
BOT_KIND = SearchAttributeKey.for_keyword("BotKind")
BOT_STATUS = SearchAttributeKey.for_keyword("BotStatus")
BOT_OWNER = SearchAttributeKey.for_keyword("BotOwner")
PAYMENT_STATUS = SearchAttributeKey.for_keyword("PaymentStatus")
CONTENT_STATE = SearchAttributeKey.for_keyword("ContentState")
CONTENT_CHANNEL = SearchAttributeKey.for_keyword("ContentChannel")
LEARNING_TASK = SearchAttributeKey.for_keyword("LearningTask")

ALL: tuple[SearchAttributeKey[str], ...] = (
    BOT_NAME,
    BOT_KIND,
    BOT_STATUS,
    BOT_OWNER,
    PAYMENT_STATUS,
    CONTENT_STATE,
    CONTENT_CHANNEL,
    LEARNING_TASK,
)


def dev_server_flags() -> list[str]:
    """``temporal server start-dev`` arguments that register every attribute as a Keyword."""
    flags: list[str] = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}=Keyword"]
    return flags
