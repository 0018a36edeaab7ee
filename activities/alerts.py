"""Alert activities on ``fleet-io``: raise alerts (signal the ``alerts`` entity) and deliver a
grouped digest (record it, hand it to each alert channel's publisher).

``deliver_alert_digest`` is safe to retry: the ``alerts`` row is keyed by the digest id, and each
channel's message id is ``alert-{digest}-{channel}``, which the publisher and its send marker
send at most once. An alert channel that does not exist is logged and skipped (the digest is
still recorded); with no alert channel configured, digests are recorded and logged only.
"""

from __future__ import annotations

import asyncio
import logging

from temporalio import activity
from temporalio.client import Client

from activities.content import automated_request, hand_over
from agentfleet import db, taskqueues
from agentfleet.content import store as content_store
from agentfleet.models import AlertRecord
from agentfleet.operations.alerts import (
    AlertBatch,
    AlertDigest,
    DigestDelivery,
    format_digest,
    headline,
)
from agentfleet.settings import Settings
from clients.alerts import send_alerts

log = logging.getLogger("agentfleet.operations.alerts")
RECORDED_LENGTH = 4096
"""The text kept in the ``alerts`` row (a Telegram message's length)."""


class AlertActivities:
    task_queue = taskqueues.IO

    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self._settings = settings
        self._url = settings.effective_database_url
        self._client = client

    @activity.defn(name="raise_alerts")
    async def raise_alerts(self, batch: AlertBatch) -> None:
        """Hand ``batch`` to the ``alerts`` entity (created on first use)."""
        await send_alerts(self._client or activity.client(), batch, self._settings)

    @activity.defn(name="deliver_alert_digest")
    async def deliver_alert_digest(self, digest: AlertDigest) -> DigestDelivery:
        """Record ``digest`` and hand it to every configured alert channel's publisher."""
        delivery = DigestDelivery(digest_id=digest.digest_id)
        channels = []
        for name in self._settings.alert_channels:
            channel = await asyncio.to_thread(content_store.get_channel, self._url, name)
            if channel is None:
                delivery.missing.append(name)
                log.warning(
                    "alert channel %s does not exist: `fleet channel add %s ...`", name, name
                )
            else:
                channels.append(channel)
                delivery.channels.append(name)
        _, text = format_digest(digest, RECORDED_LENGTH)
        await asyncio.to_thread(self._record, digest, text, delivery.channels)
        log.warning("alert %s [%s] %s", digest.digest_id, digest.severity.value, headline(digest))
        client = self._client or activity.client()
        for channel in channels:
            subject, text = format_digest(digest, channel.max_length)
            message_id = f"alert-{digest.digest_id}-{channel.name}"
            await hand_over(
                client,
                automated_request(
                    channel, message_id, text=text, subject=subject, idempotency_key=message_id
                ),
            )
        return delivery

    def _record(self, digest: AlertDigest, text: str, channels: list[str]) -> None:
        with db.session_scope(self._url) as session:
            if session.get(AlertRecord, digest.digest_id) is not None:
                return
            session.add(
                AlertRecord(
                    digest_id=digest.digest_id,
                    kind=digest.kind.value,
                    severity=digest.severity.value,
                    count=digest.count,
                    keys=digest.keys,
                    text=text,
                    repeats=digest.repeats,
                    channels=channels,
                    first_at=digest.first_at,
                    last_at=digest.last_at,
                )
            )
            session.commit()
