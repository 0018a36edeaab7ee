"""Email adapter: one plain-text message over SMTP (aiosmtplib), outcome mapped for retries.

The SMTP dialogue is driven step by step (connect, MAIL, RCPT, DATA) so a failure can be placed:
anything before DATA means the server holds nothing of the message; a timeout or a dropped
connection once DATA has started may leave a delivered message behind.
"""

from __future__ import annotations

import re
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime

import aiosmtplib

from agentfleet.channels.endpoints import smtp_endpoint
from agentfleet.channels.errors import (
    ChannelError,
    MaybeSent,
    NotSent,
    RateLimited,
    Refused,
    one_line,
)
from agentfleet.content.model import ChannelConfig, OutboundMessage, SendReceipt
from agentfleet.settings import Settings

MESSAGE_ID_DOMAIN = "agentfleet"
TRY_LATER_S = 60.0
"""Delay suggested after a 4xx "try later" to MAIL or RCPT (greylisting, mailbox busy)."""
SUBJECT_LIMIT = 78
_ID_SAFE = re.compile(r"[A-Za-z0-9_+-]")


def email_message_id(idempotency_key: str) -> str:
    """``<key@agentfleet>``, the same for every send of one item, so a receiving system can
    drop a duplicate. Characters not allowed in a Message-ID are written ``=XX`` (UTF-8 bytes in
    hex), which keeps distinct keys distinct."""
    local = "".join(
        char if _ID_SAFE.fullmatch(char) else "".join(f"={b:02X}" for b in char.encode())
        for char in idempotency_key
    )
    return f"<{local}@{MESSAGE_ID_DOMAIN}>"


def subject_of(message: OutboundMessage) -> str:
    """``message.subject``, else the first non-empty line of the text, cut to 78 characters."""
    if message.subject.strip():
        return " ".join(message.subject.split())
    first = next((line.strip() for line in message.text.splitlines() if line.strip()), "")
    return first if len(first) <= SUBJECT_LIMIT else first[: SUBJECT_LIMIT - 3] + "..."


def compose_email(
    channel: ChannelConfig, message: OutboundMessage, settings: Settings
) -> EmailMessage:
    """The message as it goes on the wire (headers From, To, Subject, Date, Message-ID)."""
    mail = EmailMessage()
    mail["From"] = settings.smtp_from
    mail["To"] = channel.target
    mail["Subject"] = subject_of(message)
    mail["Date"] = format_datetime(datetime.now(UTC))
    mail["Message-ID"] = email_message_id(message.idempotency_key)
    mail["X-Agentfleet-Content-Id"] = message.content_id
    mail["X-Agentfleet-Bot"] = message.bot
    if message.text.isascii():
        mail.set_content(message.text)
    else:  # quoted-printable: servers without 8BITMIME take it too
        mail.set_content(message.text, cte="quoted-printable")
    return mail


async def send_email(
    channel: ChannelConfig, message: OutboundMessage, settings: Settings
) -> SendReceipt:
    """Send ``message`` to ``channel.target`` from ``settings.smtp_from``.

    STARTTLS when ``settings.smtp_starttls``; login when ``settings.smtp_username`` is set. Each
    SMTP step waits at most ``settings.channel_timeout_s``. The receipt's ``message_id`` is the
    Message-ID header (:func:`email_message_id`).
    """
    host, port = smtp_endpoint(settings)
    mail = compose_email(channel, message, settings)
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    where = f"email to {channel.target} via {host}:{port}"
    client = aiosmtplib.SMTP(
        hostname=host,
        port=port,
        timeout=settings.channel_timeout_s,
        start_tls=settings.smtp_starttls,
        username=settings.smtp_username,
        password=password,
        cert_bundle=str(settings.smtp_ca_file) if settings.smtp_ca_file else None,
    )
    step = "connect"
    try:
        await client.connect()
        step = "envelope"
        await client.mail(settings.smtp_from)
        await client.rcpt(channel.target)
        step = "data"
        await client.data(mail.as_bytes(policy=SMTP_POLICY))
    except (aiosmtplib.SMTPException, OSError) as error:
        raise _channel_error(error, step, where, password) from None
    finally:
        await _close(client)
    return SendReceipt(
        channel=channel.name,
        message_id=str(mail["Message-ID"]),
        sent_at=datetime.now(UTC),
        detail={"to": channel.target, "server": f"{host}:{port}"},
    )


async def _close(client: aiosmtplib.SMTP) -> None:
    if not client.is_connected:
        return
    try:
        await client.quit(timeout=1.0)
    except (aiosmtplib.SMTPException, OSError):
        client.close()


def _channel_error(
    error: BaseException, step: str, where: str, password: str | None
) -> ChannelError:
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused) and error.recipients:
        error = error.recipients[0]
    if isinstance(error, aiosmtplib.SMTPResponseException):
        said = f"{where}: server said {error.code} {one_line(error.message, password)}"
        if error.code >= 500:
            return Refused(said)
        if step == "envelope" and error.code != 421:
            return RateLimited(said, TRY_LATER_S)
        return NotSent(said)
    if isinstance(error, aiosmtplib.SMTPNotSupported):
        return Refused(f"{where}: {one_line(str(error), password)}")
    if isinstance(error, ssl.SSLCertVerificationError):
        return NotSent(
            f"{where}: the server's TLS certificate is not trusted "
            f"({one_line(error.verify_message or str(error), password)}); if the relay uses a CA "
            "of its own, set FLEET_SMTP_CA_FILE to its PEM file"
        )
    kind = type(error).__name__
    said = one_line(str(error), password) if isinstance(error, aiosmtplib.SMTPException) else ""
    why = f"{kind}: {said}" if said else kind
    if step == "data":
        return MaybeSent(f"{where}: the connection failed after DATA began ({why})")
    return NotSent(f"{where}: the connection failed before the message was handed over ({why})")
