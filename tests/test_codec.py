"""AES-GCM payload codec: behaviour, key parsing, and ciphertext-only history on a dev server."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow

# The sandbox re-imports this module for the workflow below; cryptography's native extension
# cannot be imported twice, so everything the workflow does not use is passed through.
with workflow.unsafe.imports_passed_through():
    import pytest
    from cryptography.exceptions import InvalidTag
    from temporalio.api.common.v1 import Payload
    from temporalio.api.enums.v1 import EventType
    from temporalio.client import Client
    from temporalio.testing import WorkflowEnvironment
    from temporalio.worker import Worker

    from agentfleet.codec import (
        ENCODING,
        KEY_ID_FIELD,
        AESGCMCodec,
        PlaintextRefused,
        key_id,
        parse_key,
    )
    from agentfleet.errors import FleetError
    from agentfleet.settings import Settings
    from agentfleet.temporal import data_converter

KEY = bytes(range(32))
OLD_KEY = bytes(range(100, 132))
MARKER = "plaintext-marker-7f3a9c"


def _payload(text: str = MARKER) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=f'"{text}"'.encode())


class Note(BaseModel):
    text: str


@workflow.defn
class EchoNoteWorkflow:
    @workflow.run
    async def run(self, note: Note) -> Note:
        return Note(text=note.text + "!")


# --- the codec itself ----------------------------------------------------------------------------


async def test_encode_then_decode_returns_the_original_payloads() -> None:
    codec = AESGCMCodec(KEY)
    originals = [_payload("a"), _payload("b"), Payload(metadata={"encoding": b"binary/null"})]
    decoded = await codec.decode(await codec.encode(originals))
    assert decoded == originals


async def test_ciphertext_hides_plaintext_and_differs_between_encodes() -> None:
    codec = AESGCMCodec(KEY)
    original = _payload()
    [first] = await codec.encode([original])
    [second] = await codec.encode([original])
    assert first.metadata["encoding"] == ENCODING
    assert first.metadata[KEY_ID_FIELD] == key_id(KEY).encode()
    assert MARKER.encode() not in first.SerializeToString()
    assert first.data != original.data
    assert first.data != second.data  # a fresh random nonce each time


async def test_tampered_ciphertext_fails_to_decode() -> None:
    codec = AESGCMCodec(KEY)
    [sealed] = await codec.encode([_payload()])
    data = bytearray(sealed.data)
    data[-1] ^= 0x01
    tampered = Payload(metadata=dict(sealed.metadata), data=bytes(data))
    with pytest.raises(InvalidTag):
        await codec.decode([tampered])


@pytest.mark.parametrize(
    "plain",
    [_payload(), Payload(metadata={"encoding": b"binary/null"}), Payload(data=b"\x00\x01")],
    ids=["json", "null", "no-encoding"],
)
async def test_payloads_not_encrypted_are_refused_by_decode(plain: Payload) -> None:
    codec = AESGCMCodec(KEY)
    [sealed] = await codec.encode([_payload("fine")])
    with pytest.raises(PlaintextRefused, match="FLEET_PAYLOAD_ACCEPT_PLAINTEXT"):
        await codec.decode([sealed, plain])


async def test_plaintext_passes_through_only_when_accepted_for_a_migration() -> None:
    codec = AESGCMCodec(KEY, accept_plaintext=True)
    plain = [_payload(), Payload(metadata={"encoding": b"binary/plain"}, data=b"\x00\x01")]
    assert await codec.decode(plain) == plain


async def test_payload_from_a_previous_key_decodes_when_that_key_is_listed() -> None:
    [sealed] = await AESGCMCodec(OLD_KEY).encode([_payload()])
    rotated = AESGCMCodec(KEY, previous=[OLD_KEY])
    assert await rotated.decode([sealed]) == [_payload()]


async def test_payload_from_an_unlisted_key_fails_with_unknown_key_id() -> None:
    [sealed] = await AESGCMCodec(OLD_KEY).encode([_payload()])
    with pytest.raises(ValueError, match="unknown key id") as info:
        await AESGCMCodec(KEY).decode([sealed])
    assert key_id(OLD_KEY) in str(info.value)
    assert OLD_KEY.hex() not in str(info.value)


def test_key_id_is_short_and_not_the_key() -> None:
    kid = key_id(KEY)
    assert len(kid) == 8
    assert kid != key_id(OLD_KEY)
    assert kid not in KEY.hex()


# --- parse_key -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        base64.b64encode(KEY).decode(),
        KEY.hex(),
        KEY.hex().upper(),
        "0x" + KEY.hex(),
        "  " + base64.b64encode(KEY).decode() + "\n",
    ],
    ids=["base64", "hex", "HEX", "0x-hex", "base64-with-whitespace"],
)
def test_parse_key_accepts_32_bytes_as_base64_or_hex(text: str) -> None:
    assert parse_key(text) == KEY


@pytest.mark.parametrize(
    "text",
    [
        base64.b64encode(os.urandom(16)).decode(),
        os.urandom(16).hex(),
        "0x" + os.urandom(16).hex(),
        "not-a-key-hunter2-sekrit",
        base64.b64encode(KEY).decode()[:-4],
        "",
    ],
    ids=["base64-16-bytes", "hex-16-bytes", "0x-hex-16-bytes", "garbage", "truncated", "empty"],
)
def test_parse_key_rejects_wrong_length_or_garbage_without_echoing_it(text: str) -> None:
    with pytest.raises(FleetError) as info:
        parse_key(text)
    message = str(info.value)
    assert "FLEET_PAYLOAD_KEY" in message
    assert "32 bytes" in message
    if text:
        assert text not in message


# --- end to end on the dev server ----------------------------------------------------------------


async def test_history_holds_only_ciphertext_and_codec_client_reads_result(
    dev_env: WorkflowEnvironment,
) -> None:
    settings = Settings(payload_key=base64.b64encode(KEY).decode())
    base = dev_env.client
    config = base.config()
    config["data_converter"] = data_converter(settings)
    codec_client = Client(**config)
    target = base.service_client.config.target_host
    plain_client = await Client.connect(target, namespace=base.namespace)

    task_queue = f"codec-{uuid.uuid4()}"
    workflow_id = f"codec-e2e-{uuid.uuid4()}"
    async with Worker(codec_client, task_queue=task_queue, workflows=[EchoNoteWorkflow]):
        handle = await codec_client.start_workflow(
            EchoNoteWorkflow.run,
            Note(text=MARKER),
            id=workflow_id,
            task_queue=task_queue,
            execution_timeout=timedelta(seconds=30),
        )
        result = await handle.result()
    assert result == Note(text=MARKER + "!")

    history = await plain_client.get_workflow_handle(workflow_id).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    [input_payload] = started.input.payloads
    assert input_payload.metadata["encoding"] == ENCODING
    assert input_payload.metadata[KEY_ID_FIELD] == key_id(KEY).encode()
    completed = history.events[-1].workflow_execution_completed_event_attributes
    assert completed.result.payloads[0].metadata["encoding"] == ENCODING
    raw = b"".join(event.SerializeToString() for event in history.events)
    assert MARKER.encode() not in raw

    # Without the key the result is unreadable; with it, it is the model again.
    with pytest.raises(KeyError, match="binary/encrypted"):
        await plain_client.get_workflow_handle(workflow_id).result()
    reread = codec_client.get_workflow_handle(workflow_id, result_type=Note)
    assert await reread.result() == Note(text=MARKER + "!")


async def _wait_for_event(client: Client, workflow_id: str, kind: EventType.ValueType) -> bool:

    for _ in range(100):
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        if any(event.event_type == kind for event in history.events):
            return True
        await asyncio.sleep(0.1)
    return False


async def test_a_worker_with_a_key_refuses_a_workflow_started_in_plaintext(
    dev_env: WorkflowEnvironment,
) -> None:
    """A client without the key cannot hand the fleet an input of its own making."""
    settings = Settings(payload_key=base64.b64encode(KEY).decode())
    config = dev_env.client.config()
    config["data_converter"] = data_converter(settings)
    codec_client = Client(**config)
    task_queue = f"codec-{uuid.uuid4()}"
    workflow_id = f"codec-plain-{uuid.uuid4()}"
    async with Worker(codec_client, task_queue=task_queue, workflows=[EchoNoteWorkflow]):
        stranger = dev_env.client  # pydantic payloads, no codec
        await stranger.start_workflow(
            EchoNoteWorkflow.run,
            Note(text=MARKER),
            id=workflow_id,
            task_queue=task_queue,
            execution_timeout=timedelta(seconds=30),
        )
        refused = await _wait_for_event(
            dev_env.client, workflow_id, EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
        )
        await stranger.get_workflow_handle(workflow_id).terminate("test over")
    assert refused
    history = await dev_env.client.get_workflow_handle(workflow_id).fetch_history()
    kinds = {event.event_type for event in history.events}
    assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED not in kinds


async def test_a_migrating_worker_accepts_plaintext_inputs(dev_env: WorkflowEnvironment) -> None:
    settings = Settings(payload_key=base64.b64encode(KEY).decode(), payload_accept_plaintext=True)
    config = dev_env.client.config()
    config["data_converter"] = data_converter(settings)
    codec_client = Client(**config)
    task_queue = f"codec-{uuid.uuid4()}"
    async with Worker(codec_client, task_queue=task_queue, workflows=[EchoNoteWorkflow]):
        handle = await dev_env.client.start_workflow(
            EchoNoteWorkflow.run,
            Note(text=MARKER),
            id=f"codec-migrating-{uuid.uuid4()}",
            task_queue=task_queue,
            execution_timeout=timedelta(seconds=30),
        )
        # The worker answers encrypted: only a client with the key reads the result.
        result = await codec_client.get_workflow_handle(handle.id, result_type=Note).result()
    assert result == Note(text=MARKER + "!")
