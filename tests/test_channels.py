"""Channel adapters against the local sandbox's real protocols (Bot API, SMTP, Standard Webhooks).

Nothing is patched: each test starts a :class:`Sandbox` on free ports and points the settings at
it (or at a closed port), then asserts on the adapter's outcome and on what the server recorded.
"""

from __future__ import annotations

import base64
import logging
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from agentfleet.channels import (
    MaybeSent,
    NotConfigured,
    NotSent,
    RateLimited,
    Refused,
    send,
    telegram_endpoint,
    webhook_secret,
)
from agentfleet.channels.email import email_message_id
from agentfleet.channels.errors import httpx_cause, transport_error_class
from agentfleet.content.model import ChannelConfig, ChannelKind, OutboundMessage, default_limit
from agentfleet.settings import Settings
from sandbox import Sandbox, free_port
from sandbox.store import Fault

TEXT = "Release 2.0 is out\nAll the details."


def fault(mode: str, **extra: Any) -> Fault:
    return Fault(mode=mode, **extra)


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with Sandbox(home=tmp_path) as sb:
        yield sb


def settings_for(sb: Sandbox, home: Path, **overrides: Any) -> Settings:
    return Settings(**{"home": home, **sb.settings_overrides(), **overrides})


def channel(kind: ChannelKind, target: str, name: str = "news") -> ChannelConfig:
    return ChannelConfig(
        name=name, kind=kind, target=target, limit=default_limit(kind, target), max_length=4096
    )


def message(key: str = "item-1:news", text: str = TEXT) -> OutboundMessage:
    return OutboundMessage(
        content_id="item-1", bot="herald", text=text, subject="", idempotency_key=key
    )


# Telegram


async def test_telegram_send_returns_the_message_id_the_server_recorded(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    settings = settings_for(sandbox, tmp_path)
    first = await send(channel(ChannelKind.TELEGRAM, "42"), message(), settings)
    second = await send(channel(ChannelKind.TELEGRAM, "-1001"), message(), settings)

    recorded = sandbox.store.telegram_messages("42")
    assert [m.message_id for m in recorded] == [1]
    assert first.message_id == "1" and first.channel == "news"
    assert first.detail["chat_id"] == "42"
    assert recorded[0].text == message().text
    assert second.message_id == "1"
    assert sandbox.store.telegram_counters()["accepted"] == 2


async def test_telegram_past_the_chat_limit_is_rate_limited_and_not_recorded(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    settings = settings_for(sandbox, tmp_path)
    await send(channel(ChannelKind.TELEGRAM, "42"), message(), settings)

    with pytest.raises(RateLimited) as caught:
        await send(channel(ChannelKind.TELEGRAM, "42"), message(), settings)

    assert caught.value.retry_after_s == 1.0
    assert caught.value.retry_safe
    assert len(sandbox.store.telegram_messages("42")) == 1
    assert sandbox.store.telegram_counters()["rate_limited"] == 1


async def test_telegram_closed_port_is_not_sent_and_hides_the_token(tmp_path: Path) -> None:
    token = "123456:SECRET-token-value"
    settings = Settings(
        home=tmp_path,
        telegram_api_url=f"http://127.0.0.1:{free_port()}/telegram",
        telegram_bot_token=token,
    )

    with pytest.raises(NotSent) as caught:
        await send(channel(ChannelKind.TELEGRAM, "42"), message(), settings)

    assert "SECRET" not in str(caught.value) and "\n" not in str(caught.value)
    assert caught.value.__cause__ is None


async def test_telegram_hang_after_recording_is_maybe_sent(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.store.set_telegram_fault(fault("hang", hang_s=10))
    settings = settings_for(sandbox, tmp_path, channel_timeout_s=0.3)

    with pytest.raises(MaybeSent) as caught:
        await send(channel(ChannelKind.TELEGRAM, "42"), message(), settings)

    assert not caught.value.retry_safe
    assert [m.text for m in sandbox.store.telegram_messages("42")] == [message().text]


async def test_telegram_connection_dropped_mid_answer_is_maybe_sent(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.store.set_telegram_fault(fault("drop"))

    with pytest.raises(MaybeSent):
        await send(channel(ChannelKind.TELEGRAM, "42"), message(), settings_for(sandbox, tmp_path))

    assert len(sandbox.store.telegram_messages("42")) == 1


async def test_telegram_server_error_is_maybe_sent(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.store.set_telegram_fault(fault("refuse"))

    with pytest.raises(MaybeSent):
        await send(channel(ChannelKind.TELEGRAM, "42"), message(), settings_for(sandbox, tmp_path))

    assert sandbox.store.telegram_messages("42") == []


async def test_telegram_unknown_chat_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    with pytest.raises(Refused) as caught:
        await send(channel(ChannelKind.TELEGRAM, "bad"), message(), settings_for(sandbox, tmp_path))

    assert "chat not found" in str(caught.value).lower()
    assert sandbox.store.telegram_counters()["accepted"] == 0


async def test_telegram_unknown_token_is_refused_without_the_token(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    token = "987654:WRONG-token-value"
    settings = settings_for(
        sandbox, tmp_path, telegram_api_url=sandbox.telegram_api_url, telegram_bot_token=token
    )

    with pytest.raises(Refused) as caught:
        await send(channel(ChannelKind.TELEGRAM, "42"), message(), settings)

    assert "WRONG" not in str(caught.value)


async def test_telegram_request_log_masks_the_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token = "123456:SECRET-token-value"
    async with Sandbox(home=tmp_path, telegram_tokens=[token]) as sb:
        settings = settings_for(sb, tmp_path, telegram_bot_token=token)
        with caplog.at_level(logging.INFO, logger="httpx"):
            await send(channel(ChannelKind.TELEGRAM, "42"), message(), settings)

    assert "/bot***/sendMessage" in caplog.text
    assert "SECRET" not in caplog.text


def test_telegram_needs_a_token_without_the_sandbox(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path, channel_sandbox=False, telegram_api_url=None, telegram_bot_token=None
    )

    with pytest.raises(NotConfigured):
        telegram_endpoint(settings)


async def test_too_long_text_is_refused_before_sending(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, telegram_api_url="http://127.0.0.1:9/telegram")

    with pytest.raises(Refused, match="4097 characters"):
        await send(channel(ChannelKind.TELEGRAM, "42"), message(text="x" * 4097), settings)


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (httpx.ConnectError("refused"), NotSent),
        (httpx.ConnectTimeout("slow"), NotSent),
        (httpx.ReadTimeout("slow"), MaybeSent),
        (httpx.WriteTimeout("slow"), MaybeSent),
        (httpx.RemoteProtocolError("closed"), MaybeSent),
        (httpx.UnsupportedProtocol("ftp"), Refused),
    ],
)
def test_transport_failures_map_to_outcomes(error: Exception, outcome: type) -> None:
    wrapper = RuntimeError("library wrapper")
    wrapper.__cause__ = error

    assert httpx_cause(wrapper) is error
    assert transport_error_class(error) is outcome


# Email


async def test_email_is_delivered_with_a_stable_message_id(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    settings = settings_for(sandbox, tmp_path, smtp_from="herald@fleet.test")
    target = channel(ChannelKind.EMAIL, "reader@example.com")

    first = await send(target, message(), settings)
    again = await send(target, message(), settings)

    assert first.message_id == again.message_id == "<item-1=3Anews@agentfleet>"
    mails = sandbox.store.emails("reader@example.com")
    assert [m.message_id for m in mails] == [first.message_id, first.message_id]
    assert mails[0].subject == "Release 2.0 is out"
    assert mails[0].mail_from == "herald@fleet.test"
    assert mails[0].body == message().text


async def test_email_non_ascii_subject_and_text_arrive_intact(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    text = "Café ouvert ✓\nÀ bientôt"
    mail = message(text=text).model_copy(update={"subject": "Nouveauté ☕"})

    await send(
        channel(ChannelKind.EMAIL, "reader@example.com"), mail, settings_for(sandbox, tmp_path)
    )

    [received] = sandbox.store.emails("reader@example.com")
    assert (received.subject, received.body) == ("Nouveauté ☕", text)


def test_email_message_ids_keep_distinct_keys_distinct() -> None:
    assert email_message_id("a:b") != email_message_id("a_b")
    assert email_message_id("a b@c") == "<a=20b=40c@agentfleet>"


async def test_email_refused_recipient_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    with pytest.raises(Refused, match="550"):
        await send(
            channel(ChannelKind.EMAIL, "refused@example.com"),
            message(),
            settings_for(sandbox, tmp_path),
        )

    assert sandbox.store.emails() == []


async def test_email_try_later_before_data_is_rate_limited(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    with pytest.raises(RateLimited, match="450"):
        await send(
            channel(ChannelKind.EMAIL, "busy@example.com"),
            message(),
            settings_for(sandbox, tmp_path),
        )


async def test_email_timeout_after_data_is_maybe_sent(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.store.set_email_fault(fault("hang", hang_s=10))
    settings = settings_for(sandbox, tmp_path, channel_timeout_s=0.3)

    with pytest.raises(MaybeSent):
        await send(channel(ChannelKind.EMAIL, "reader@example.com"), message(), settings)

    assert len(sandbox.store.emails("reader@example.com")) == 1


async def test_email_closed_port_is_not_sent(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, smtp_host="127.0.0.1", smtp_port=free_port())

    with pytest.raises(NotSent):
        await send(channel(ChannelKind.EMAIL, "reader@example.com"), message(), settings)


# Webhooks


async def test_webhook_is_signed_verified_and_a_repeat_is_a_duplicate(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    settings = settings_for(sandbox, tmp_path, webhook_secret=None)
    target = channel(ChannelKind.WEBHOOK, sandbox.webhook_url("partner"))

    first = await send(target, message(), settings)
    again = await send(target, message(), settings)

    assert first.message_id == again.message_id == "item-1:news"
    deliveries = sandbox.store.webhook_deliveries("partner")
    assert len(deliveries) == 1
    assert sandbox.store.webhook_counters("partner")["duplicates"] == 1
    payload = deliveries[0].payload
    assert payload["type"] == "content.published"
    assert payload["data"] == {
        "content_id": "item-1",
        "bot": "herald",
        "channel": "news",
        "text": message().text,
        "subject": "",
    }


async def test_webhook_signed_with_another_secret_is_refused(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    other = "whsec_" + base64.b64encode(b"k" * 32).decode()
    settings = settings_for(sandbox, tmp_path, webhook_secret=other)

    with pytest.raises(Refused, match="401"):
        await send(
            channel(ChannelKind.WEBHOOK, sandbox.webhook_url("partner")), message(), settings
        )

    assert sandbox.store.webhook_counters("partner")["rejected"] == 1
    assert sandbox.store.webhook_deliveries("partner") == []


@pytest.mark.parametrize(
    ("mode", "outcome", "recorded"),
    [
        ("throttle", RateLimited, 0),
        ("refuse", Refused, 0),
        ("error", MaybeSent, 0),
        ("hang", MaybeSent, 1),
        ("drop", MaybeSent, 1),
    ],
)
async def test_webhook_faults_map_to_outcomes(
    sandbox: Sandbox, tmp_path: Path, mode: str, outcome: type, recorded: int
) -> None:
    sandbox.store.set_webhook_fault("partner", fault(mode, hang_s=10, retry_after=7))
    settings = settings_for(sandbox, tmp_path, channel_timeout_s=0.3)

    with pytest.raises(outcome) as caught:
        await send(
            channel(ChannelKind.WEBHOOK, sandbox.webhook_url("partner")), message(), settings
        )

    if isinstance(caught.value, RateLimited):
        assert caught.value.retry_after_s == 7.0
    assert len(sandbox.store.webhook_deliveries("partner")) == recorded


async def test_webhook_closed_port_is_not_sent(tmp_path: Path) -> None:
    target = channel(ChannelKind.WEBHOOK, f"http://127.0.0.1:{free_port()}/hook?token=SECRET")

    with pytest.raises(NotSent) as caught:
        await send(target, message(), Settings(home=tmp_path, webhook_secret=None))

    assert "SECRET" not in str(caught.value)


def test_dev_webhook_secret_is_created_once_private_and_verifiable(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", webhook_secret=None)

    secret = webhook_secret(settings).get_secret_value()

    assert secret == webhook_secret(settings).get_secret_value()
    path = tmp_path / "home" / "webhook-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    Webhook(secret)
