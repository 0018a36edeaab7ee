"""The Telegram command center: long polling through the Bot API (python-telegram-bot), each
command answered by :class:`starters.telegram.CommandCenter` with the same workflow calls
the CLI makes.

``python -m starters.telegram.bot`` (``fleet up`` starts it as the ``telegram`` component). The Bot
API is the real one with ``FLEET_TELEGRAM_BOT_TOKEN``, else the local sandbox; who may do what is
``FLEET_TELEGRAM_USERS``. Messages are plain text (no parse mode), so nothing a bot or a user wrote
can break the formatting."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from telegram import Bot, BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, Update
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from agentfleet import redaction
from agentfleet.channels.endpoints import SANDBOX_TELEGRAM_TOKEN, telegram_endpoint
from agentfleet.errors import FleetError, first_line
from agentfleet.operations.operators import SANDBOX_OPERATOR, Operator, parse_access_list
from agentfleet.settings import Settings, get_settings
from starters.stack.components import TELEGRAM_READY_FILE as READY_FILE
from starters.telegram import COMMANDS, CommandCenter, Reply
from starters.telegram.replies import FollowRun

if TYPE_CHECKING:
    from temporalio.client import Client

log = logging.getLogger("agentfleet.telegram")

PRIVATE_CHAT_INTERVAL_S = 1.0
"""Telegram's limit for one chat: about one message a second (AIORateLimiter keeps the overall
30 a second and 20 a minute per group, and waits out a 429 if one still comes)."""
POLL_TIMEOUT_S = 10


def access_list(settings: Settings, uses_sandbox: bool) -> dict[int, Operator]:
    """``FLEET_TELEGRAM_USERS``, or the sandbox's one admin when it is unset and the Bot API is
    the sandbox; a one-line FleetError for a bad entry."""
    spec = settings.telegram_users.strip()
    if not spec and uses_sandbox:
        spec = SANDBOX_OPERATOR
    return parse_access_list(spec)


class ChatPacer:
    """At most one message per ``interval_s`` to each chat, in the order they were asked."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._next: dict[int, float] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def turn(self, chat_id: int) -> AsyncIterator[None]:
        lock = self._locks.setdefault(chat_id, asyncio.Lock())
        async with lock:
            loop = asyncio.get_running_loop()
            wait = self._next.get(chat_id, 0.0) - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                yield
            finally:
                self._next[chat_id] = loop.time() + self.interval_s


class FollowUps:
    """The agent runs the command center follows (a reply's ``follow``): one task each that
    sends the run's next news to the chat, so no update waits for a run. Cancelled when the
    center stops; the runs go on, and their approval buttons still work after a restart."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("following a run failed: %s", task.exception())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def build_application(
    settings: Settings,
    center: CommandCenter,
    pacer: ChatPacer,
    follow_ups: FollowUps | None = None,
) -> Application[Any, Any, Any, Any, Any, Any]:
    base, token = telegram_endpoint(settings)
    application = (
        ApplicationBuilder()
        .token(token.get_secret_value())
        .base_url(f"{base}/bot")
        .base_file_url(f"{base}/file/bot")
        .concurrent_updates(True)
        .rate_limiter(AIORateLimiter(max_retries=2))
        .get_updates_read_timeout(POLL_TIMEOUT_S + 5)
        .build()
    )

    following = follow_ups or FollowUps()

    async def send(bot: Bot, chat_id: int, reply: Reply) -> None:
        markup = None
        if reply.buttons:
            markup = InlineKeyboardMarkup(
                [
                    [InlineKeyboardButton(b.text, callback_data=b.data) for b in row]
                    for row in reply.buttons
                ]
            )
        async with pacer.turn(chat_id):
            await bot.send_message(chat_id, reply.text, reply_markup=markup)
        if reply.attachment is not None:
            attachment = reply.attachment
            document = InputFile(attachment.content.encode(), filename=attachment.filename)
            async with pacer.turn(chat_id):
                await bot.send_document(chat_id, document, caption=attachment.filename)
        if reply.follow is not None:
            following.start(follow(bot, chat_id, reply.follow))

    async def follow(bot: Bot, chat_id: int, run: FollowRun) -> None:
        try:
            reply = await center.follow_run(run)
        except Exception as exc:  # noqa: BLE001 - Temporal went away: say so, once
            log.error("following run %s failed: %s", run.run_id, exc)
            reply = Reply(
                text=f"Lost track of run {run.run_id} ({first_line(exc)}); "
                f"`fleet agent show {run.run_id}` follows it."
            )
        await send(bot, chat_id, reply)

    async def on_message(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None or not message.text:
            return
        key = f"{message.chat_id}-{message.message_id}-{int(message.date.timestamp())}"
        replies = await center.handle_text(user.id, user.username, message.text, key)
        for reply in replies:
            await send(context.bot, message.chat_id, reply)

    async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query, user = update.callback_query, update.effective_user
        if query is None or user is None:
            return
        reply = await center.handle_button(user.id, user.username, query.data or "")
        await query.answer(reply.text[:190])
        chat = update.effective_chat
        if chat is not None:
            await send(context.bot, chat.id, reply)

    application.add_handler(MessageHandler(filters.TEXT, on_message))
    application.add_handler(CallbackQueryHandler(on_button))
    application.add_error_handler(on_error)
    return application


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A command that failed unexpectedly: logged (one line, no payloads) and answered."""
    log.error("telegram update failed: %s", context.error, exc_info=context.error)
    if isinstance(update, Update) and update.effective_chat is not None:
        with contextlib.suppress(Exception):
            await context.bot.send_message(
                update.effective_chat.id,
                "Something went wrong on our side; nothing was changed by this message. "
                "The operators' logs have the details.",
            )


async def serve(
    settings: Settings,
    client: Client,
    stop: asyncio.Event,
    chat_interval_s: float = PRIVATE_CHAT_INTERVAL_S,
) -> None:
    """Poll until ``stop`` is set. Raises FleetError for a bad allow-list or no bot token.
    ``chat_interval_s``: the pace per chat (tests against a faster sandbox pass less)."""
    base, token = telegram_endpoint(settings)
    operators = access_list(settings, token.get_secret_value() == SANDBOX_TELEGRAM_TOKEN)
    center = CommandCenter(client, settings, operators)
    follow_ups = FollowUps()
    application = build_application(settings, center, ChatPacer(chat_interval_s), follow_ups)
    ready = settings.home / READY_FILE
    async with application:
        await application.bot.set_my_commands(
            [BotCommand(c.name, c.summary) for c in COMMANDS.values()]
        )
        await application.start()
        updater = application.updater
        if updater is None:
            raise FleetError("python-telegram-bot built no updater; cannot poll")
        await updater.start_polling(
            poll_interval=0,
            timeout=POLL_TIMEOUT_S,
            allowed_updates=[Update.MESSAGE, Update.CALLBACK_QUERY],
        )
        log.info("command center polling %s for %d operators", base, len(operators))
        _touch(ready)
        try:
            await stop.wait()
        finally:
            ready.unlink(missing_ok=True)
            await follow_ups.close()
            await updater.stop()
            await application.stop()


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("polling\n")


async def main(settings: Settings) -> None:
    from agentfleet.temporal import connect

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    client = await connect(settings)
    await serve(settings, client, stop)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args()
    current = get_settings()
    redaction.configure_logging(current)
    try:
        asyncio.run(main(current))
    except FleetError as exc:
        raise SystemExit(f"error: {redaction.redact(str(exc))}") from None
