"""Sending on ``fleet-io``: one content item to its channel, never twice.

Before the request leaves, a ``publish_attempts`` row is committed as ``sending``. An attempt
that finds it still ``sending`` (an earlier attempt died after marking: it may have sent) or
``unconfirmed`` does not send: it fails ``MaybeSent`` and a human decides. Only a send that
surely did not start (``NotSent``: connection refused, nothing marked) is retried. Webhooks are
the exception the Standard Webhooks spec makes: a repeat carries the same ``webhook-id`` and
receivers drop duplicates, so an uncertain webhook is sent again.

Failure types for ``ChannelPublisherWorkflow``: ``RateLimited`` (details: retry-after seconds),
``MaybeSent``, ``Refused`` (non-retryable) and ``NotSent`` (retryable).
"""

from __future__ import annotations

import asyncio

from temporalio import activity
from temporalio.exceptions import ApplicationError

from agentfleet import channels, taskqueues
from agentfleet.chaos import chaos_point
from agentfleet.content import store as content_store
from agentfleet.content.model import ChannelKind, PublishRequest, SendReceipt
from agentfleet.content.store import SendState
from agentfleet.operations import metrics
from agentfleet.settings import Settings


class ChannelActivities:
    task_queue = taskqueues.IO

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._url = settings.effective_database_url

    @activity.defn(name="publish_to_channel")
    async def publish_to_channel(self, request: PublishRequest) -> SendReceipt:
        content_id, channel = request.content_id, request.channel
        chaos_point("before_mark", content_id)
        before = await asyncio.to_thread(
            content_store.begin_send, self._url, content_id, channel.name
        )
        resend_safe = channel.kind is ChannelKind.WEBHOOK
        if before.state == SendState.SENT.value and before.message_id:
            return SendReceipt(
                channel=channel.name,
                message_id=before.message_id,
                sent_at=before.updated_at,
                detail={"repeat": True},
            )
        if before.state in {SendState.SENDING.value, SendState.UNCONFIRMED.value} and not (
            resend_safe
        ):
            await self._finish(
                content_id, SendState.UNCONFIRMED, error="an earlier attempt may have sent"
            )
            raise ApplicationError(
                "an earlier attempt was interrupted after the send started; it may have been "
                "published: look at the channel, then `fleet content resolve`",
                type="MaybeSent",
                non_retryable=True,
            )
        if before.state == SendState.REFUSED.value:
            raise ApplicationError(before.error or "refused", type="Refused", non_retryable=True)
        chaos_point("before_send", content_id)
        try:
            receipt = await channels.send(channel, request.message, self._settings)
        except channels.RateLimited as err:
            await self._finish(content_id, SendState.NOT_SENT, error=str(err))
            metrics.CHANNEL_SENDS.labels(channel=channel.name, outcome="rate_limited").inc()
            raise ApplicationError(
                str(err), err.retry_after_s, type="RateLimited", non_retryable=True
            ) from None
        except channels.NotSent as err:
            await self._finish(content_id, SendState.NOT_SENT, error=str(err))
            metrics.CHANNEL_SENDS.labels(channel=channel.name, outcome="not_sent").inc()
            raise ApplicationError(str(err), type="NotSent") from None
        except channels.MaybeSent as err:
            state = SendState.NOT_SENT if resend_safe else SendState.UNCONFIRMED
            await self._finish(content_id, state, error=str(err))
            metrics.CHANNEL_SENDS.labels(channel=channel.name, outcome="maybe_sent").inc()
            raise ApplicationError(
                str(err),
                type="NotSent" if resend_safe else "MaybeSent",
                non_retryable=not resend_safe,
            ) from None
        except channels.Refused as err:
            await self._finish(content_id, SendState.REFUSED, error=str(err))
            metrics.CHANNEL_SENDS.labels(channel=channel.name, outcome="refused").inc()
            raise ApplicationError(str(err), type="Refused", non_retryable=True) from None
        chaos_point("after_send", content_id)
        await self._finish(content_id, SendState.SENT, message_id=receipt.message_id)
        metrics.CHANNEL_SENDS.labels(channel=channel.name, outcome="sent").inc()
        return receipt

    async def _finish(
        self,
        content_id: str,
        state: SendState,
        *,
        message_id: str | None = None,
        error: str | None = None,
    ) -> None:
        await asyncio.to_thread(
            content_store.finish_send,
            self._url,
            content_id,
            state,
            message_id=message_id,
            error=error,
        )
