"""The Telegram command center without Telegram: :class:`CommandCenter` answers a user's command
with :class:`Reply` objects; ``starters/telegram.py`` carries them over the Bot API."""

from agentfleet.command_center.center import CommandCenter
from agentfleet.command_center.handlers import COMMANDS
from agentfleet.command_center.replies import Attachment, Reply

__all__ = ["COMMANDS", "Attachment", "CommandCenter", "Reply"]
