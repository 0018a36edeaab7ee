"""The one way agentfleet connects to Temporal, and starts workflows by business key.

Connection settings come, in order of precedence, from ``FLEET_TEMPORAL_*``, from Temporal's own
environment configuration (``TEMPORAL_ADDRESS``, ``TEMPORAL_API_KEY``, ``temporal.toml`` profiles),
and else from the embedded dev server's address. Payloads are pydantic models
(``pydantic_data_converter``), encrypted with AES-GCM when ``FLEET_PAYLOAD_KEY`` is set; failures
are redacted (:mod:`agentfleet.redaction`) and, with a key, encrypted as well.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.envconfig import ClientConfigProfile
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.runtime import Runtime
from temporalio.service import RPCError, TLSConfig

from agentfleet import redaction
from agentfleet.codec import EncodedRedactingFailureConverter, RedactingFailureConverter, codec
from agentfleet.errors import FleetError, first_line
from agentfleet.settings import Settings


def data_converter(settings: Settings) -> DataConverter:
    """Pydantic payloads, wrapped by the AES-GCM codec when a payload key is configured (which
    then refuses payloads that are not encrypted). Failure messages and stack traces are
    redacted of this process's secrets, and with a key they travel encrypted too."""
    redaction.install(settings)
    payload_codec = codec(settings)
    if payload_codec is None:
        return dataclasses.replace(
            pydantic_data_converter, failure_converter_class=RedactingFailureConverter
        )
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=payload_codec,
        failure_converter_class=EncodedRedactingFailureConverter,
    )


def connect_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``Client.connect`` (without the data converter)."""
    try:
        profile = ClientConfigProfile.load(profile=settings.temporal_profile)
    except Exception as exc:  # envconfig raises plain RuntimeError/ValueError on bad files
        raise FleetError(f"Temporal env config could not be read: {exc}") from exc
    options: dict[str, Any] = dict(profile.to_client_connect_config())
    options.setdefault("target_host", settings.embedded_temporal_address)
    options.setdefault("namespace", "default")
    if settings.temporal_address:
        options["target_host"] = settings.temporal_address
    if settings.temporal_namespace:
        options["namespace"] = settings.temporal_namespace
    if settings.temporal_api_key is not None:
        options["api_key"] = settings.temporal_api_key.get_secret_value()
        options.setdefault("tls", True)
    tls = _tls_config(settings)
    if tls is not None:
        options["tls"] = tls
    elif settings.temporal_tls is not None:
        options["tls"] = settings.temporal_tls
    return options


def _tls_config(settings: Settings) -> TLSConfig | None:
    files = (settings.temporal_tls_cert, settings.temporal_tls_key, settings.temporal_tls_ca)
    if not any(files) and not settings.temporal_tls_server_name:
        return None
    if bool(settings.temporal_tls_cert) != bool(settings.temporal_tls_key):
        raise FleetError("set both FLEET_TEMPORAL_TLS_CERT and FLEET_TEMPORAL_TLS_KEY for mTLS")

    def read(path: Any) -> bytes | None:
        if path is None:
            return None
        try:
            return bytes(path.read_bytes())
        except OSError as exc:
            raise FleetError(f"cannot read TLS file {path}: {exc.strerror}") from exc

    return TLSConfig(
        client_cert=read(settings.temporal_tls_cert),
        client_private_key=read(settings.temporal_tls_key),
        server_root_ca_cert=read(settings.temporal_tls_ca),
        domain=settings.temporal_tls_server_name,
    )


async def connect(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    """Connect, or raise a one-line :class:`FleetError` that says how to get a server."""
    options = connect_options(settings)
    try:
        return await Client.connect(
            **options,
            data_converter=data_converter(settings),
            runtime=runtime,
            connect_timeout=timedelta(seconds=5),
        )
    except (RPCError, RuntimeError) as exc:
        target = options["target_host"]
        hint = (
            "start the stack with `fleet up`"
            if settings.uses_embedded_temporal
            else "check FLEET_TEMPORAL_ADDRESS / TEMPORAL_ADDRESS and credentials"
        )
        raise FleetError(
            f"cannot reach Temporal at {target}: {_connect_reason(exc)}; {hint}"
        ) from exc


def _connect_reason(exc: BaseException) -> str:
    """A connect failure in words, not the transport's debug text."""
    text = str(exc).lower()
    for needle, reason in (
        ("connectionrefused", "connection refused"),
        ("connection refused", "connection refused"),
        ("failed to lookup", "host not found"),
        ("dns error", "host not found"),
        ("timed out", "timed out"),
        ("deadline", "timed out"),
        ("certificate", "TLS certificate rejected"),
        ("unauthenticated", "credentials rejected"),
        ("permission denied", "credentials rejected"),
    ):
        if needle in text:
            return reason
    return first_line(exc, 200)


async def start_by_business_key(
    client: Client,
    workflow: Any,
    arg: Any,
    *,
    id: str,
    task_queue: str,
    reuse_policy: WorkflowIDReusePolicy = WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
    conflict_policy: WorkflowIDConflictPolicy = WorkflowIDConflictPolicy.USE_EXISTING,
    **kwargs: Any,
) -> WorkflowHandle[Any, Any]:
    """Start ``workflow`` under a business-key id; a start while one is running attaches to it.

    Starting the same business key twice is never an error for the user: a running execution is
    returned as it is (``USE_EXISTING``); a completed one is not re-run unless it failed.
    (:func:`started_or_attached` passes ``FAIL`` to learn which happened.)
    """
    handle: WorkflowHandle[Any, Any] = await client.start_workflow(
        workflow,
        arg,
        id=id,
        task_queue=task_queue,
        id_conflict_policy=conflict_policy,
        id_reuse_policy=reuse_policy,
        **kwargs,
    )
    return handle


async def start_or_attach(
    client: Client,
    workflow: Any,
    arg: Any,
    *,
    id: str,
    task_queue: str,
    reuse_policy: WorkflowIDReusePolicy = WorkflowIDReusePolicy.REJECT_DUPLICATE,
    **kwargs: Any,
) -> WorkflowHandle[Any, Any]:
    """Start ``workflow`` under a business-key id that names one piece of work for good: a
    running execution is attached to, and a finished one the reuse policy does not let run
    again (by default: any) is returned as it is, its result being the answer."""
    handle, _ = await started_or_attached(
        client, workflow, arg, id=id, task_queue=task_queue, reuse_policy=reuse_policy, **kwargs
    )
    return handle


async def started_or_attached(
    client: Client,
    workflow: Any,
    arg: Any,
    *,
    id: str,
    task_queue: str,
    reuse_policy: WorkflowIDReusePolicy = WorkflowIDReusePolicy.REJECT_DUPLICATE,
    **kwargs: Any,
) -> tuple[WorkflowHandle[Any, Any], bool]:
    """:func:`start_or_attach`, and whether this call started the execution (``arg`` is its
    input) or found one running or finished (its input may differ: the caller compares)."""
    try:
        handle = await start_by_business_key(
            client,
            workflow,
            arg,
            id=id,
            task_queue=task_queue,
            reuse_policy=reuse_policy,
            conflict_policy=WorkflowIDConflictPolicy.FAIL,
            **kwargs,
        )
    except WorkflowAlreadyStartedError:
        if isinstance(workflow, str):
            return client.get_workflow_handle(id, result_type=kwargs.get("result_type")), False
        return client.get_workflow_handle_for(workflow, id), False
    return handle, True


async def ensure_search_attributes(client: Client, namespace: str) -> list[str]:
    """Register every agentfleet search attribute missing on ``namespace``; return those added.

    Idempotent. On Temporal Cloud the API key usually lacks the operator permission: the error
    then says to add them in the Cloud console (or with tcld).
    """
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import (
        AddSearchAttributesRequest,
        ListSearchAttributesRequest,
    )

    from agentfleet import search_attributes

    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        missing = [
            k.name for k in search_attributes.ALL if k.name not in existing.custom_attributes
        ]
        if missing:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(
                    namespace=namespace,
                    search_attributes={
                        name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for name in missing
                    },
                )
            )
    except RPCError as exc:
        names = ", ".join(k.name for k in search_attributes.ALL)
        raise FleetError(
            f"cannot register search attributes on {namespace}: {first_line(exc, 200)}; "
            f"add them as Keyword yourself ({names})"
        ) from exc
    return missing
