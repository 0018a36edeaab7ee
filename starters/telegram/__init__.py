"""The Telegram command center without Telegram: :class:`CommandCenter` answers a user's command
with :class:`Reply` objects; ``starters/telegram/bot.py`` carries them over the Bot API."""

from starters.telegram.center import CommandCenter
from starters.telegram.handlers import COMMANDS
from starters.telegram.replies import Attachment, Reply

__all__ = ["COMMANDS", "Attachment", "CommandCenter", "Reply"]
