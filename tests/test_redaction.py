"""One redaction helper: the values it masks, the failures Temporal stores, and the log lines and
tracebacks fleet processes write."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    import pytest
    from google.protobuf import json_format
    from temporalio.api.failure.v1 import Failure
    from temporalio.client import Client, WorkflowFailureError
    from temporalio.exceptions import ActivityError, ApplicationError
    from temporalio.testing import WorkflowEnvironment
    from temporalio.worker import Worker

    from agentfleet import redaction
    from agentfleet.codec import (
        ENCODED_MESSAGE,
        EncodedRedactingFailureConverter,
        RedactingFailureConverter,
    )
    from agentfleet.settings import Settings
    from agentfleet.temporal import data_converter

RPC_KEY = "Qm7vR2xK9pL4sT8wZ3nB6cJ1"
RPC_URL = f"https://polygon-amoy.g.alchemy.com/v2/{RPC_KEY}"
BOT_TOKEN = "7301234567:AAHk3Jd9sLq2WmZx8RtYb5NcVf4GhPe1uIo"
OPENAI_KEY = "sk-proj-4fGh8JkL2mNq6RsT0vWx"
KEYSTORE_SECRET = "c0ffee" * 11
DB_PASSWORD = "pg-pass-5829-secret"
PRIVATE_KEY = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
PAYLOAD_KEY = base64.b64encode(bytes(range(32))).decode()


@pytest.fixture
def secrets_installed() -> Iterator[Settings]:
    redaction.reset()
    settings = Settings(
        rpc_url=RPC_URL,
        telegram_bot_token=BOT_TOKEN,
        openai_api_key=OPENAI_KEY,
        openai_base_url="https://llm.example/v1?api-key=llm-query-key-77",
        keystore_secret=KEYSTORE_SECRET,
        database_url=f"postgresql+psycopg://fleet:{DB_PASSWORD}@db.example:5432/fleet",
        webhook_secret="whsec_dGVzdC13ZWJob29rLXNlY3JldA==",
        codec_token="codec-token-" + "z" * 30,
    )
    redaction.install(settings)
    yield settings
    redaction.reset()


# --- redact() ------------------------------------------------------------------------------------


def test_every_configured_secret_is_masked(secrets_installed: Settings) -> None:
    text = (
        f"POST {RPC_URL} failed; bot {BOT_TOKEN}; key {OPENAI_KEY}; secret {KEYSTORE_SECRET}; "
        f"db fleet:{DB_PASSWORD}@db.example; llm ?api-key=llm-query-key-77; "
        "whsec_dGVzdC13ZWJob29rLXNlY3JldA==; codec-token-" + "z" * 30
    )
    shown = redaction.redact(text)
    for secret in (
        RPC_KEY,
        BOT_TOKEN,
        OPENAI_KEY,
        KEYSTORE_SECRET,
        DB_PASSWORD,
        "llm-query-key-77",
        "dGVzdC13ZWJob29rLXNlY3JldA",
        "z" * 30,
    ):
        assert secret not in shown
    assert "https://polygon-amoy.g.alchemy.com/v2/***" in shown


def test_every_secret_setting_is_registered_whatever_its_name() -> None:
    names = [n for n, f in Settings.model_fields.items() if "SecretStr" in str(f.annotation)]
    assert len(names) >= 9
    settings = Settings(**{name: f"value-of-{name}-{'x' * 32}" for name in names})
    found = redaction.secrets_of(settings)
    for name in names:
        assert f"value-of-{name}-{'x' * 32}" in found, name


def test_generic_patterns_mask_secrets_nobody_registered() -> None:
    redaction.reset()
    text = (
        "GET https://user:pa55w0rd@node.example/rpc and "
        "POST https://api.telegram.org/bot123456789:AAF-unregistered_token_value99/sendMessage "
        f"private_key={PRIVATE_KEY} secret: 0x{PRIVATE_KEY.upper()}"
    )
    shown = redaction.redact(text)
    assert "pa55w0rd" not in shown and "https://user:***@node.example/rpc" in shown
    assert "AAF-unregistered" not in shown and "/bot123456789:***/sendMessage" in shown
    assert PRIVATE_KEY not in shown.lower()


def test_hashes_and_nonces_stay_readable_unless_registered_as_keys() -> None:
    redaction.reset()
    tx = "0x" + "ab" * 32
    text = f"tx {tx} settled for payment-31337-0xabc-{tx}"
    assert redaction.redact(text) == text
    redaction.register(PRIVATE_KEY)
    shown = redaction.redact(f"leaked 0x{PRIVATE_KEY} and {PRIVATE_KEY.upper()}; tx {tx}")
    assert PRIVATE_KEY not in shown.lower()
    assert tx in shown
    redaction.reset()


def test_short_and_empty_values_are_not_registered() -> None:
    redaction.reset()
    redaction.register("", None, "admin", "1234567")
    assert redaction.redact("admin 1234567 postgres") == "admin 1234567 postgres"
    redaction.reset()


@pytest.mark.parametrize(
    ("url", "secret", "kept"),
    [
        (RPC_URL, RPC_KEY, "polygon-amoy.g.alchemy.com/v2/"),
        ("https://mainnet.infura.io/v3/" + "9aa3d95b3bc440fa88ea12eaa4456161", "9aa3d95b", "/v3/"),
        ("https://rpc.example/eth?apikey=Abcdef123456", "Abcdef123456", "rpc.example/eth"),
        ("https://tok3nUserAbcdef12345@rpc.example/", "tok3nUserAbcdef12345", "rpc.example"),
    ],
)
def test_url_secrets_find_keys_in_path_query_and_user(url: str, secret: str, kept: str) -> None:
    shown = redaction.redact_url(url)
    assert secret not in shown
    assert kept in shown


def test_url_secrets_leave_ordinary_urls_and_database_paths_alone() -> None:
    for url in (
        "http://127.0.0.1:8545",
        "https://polygon-amoy.g.alchemy.com/v2/",
        "sqlite:////tmp/pytest-of-root/test_masked_leaves_unset_secre0/fleet.db",
        "postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dtest_1a2b3c4d5e",
    ):
        assert redaction.url_secrets(url) == []
        assert redaction.redact_url(url) == url


# --- failure converters ---------------------------------------------------------------------------


def _failure_of(converter: RedactingFailureConverter, exc: BaseException) -> Failure:
    failure = Failure()
    converter.to_failure(exc, data_converter(Settings()).payload_converter, failure)
    return failure


def _raised(message: str, cause: str) -> BaseException:
    try:
        try:
            raise ConnectionError(cause)
        except ConnectionError as inner:
            raise ApplicationError(message, type="ChainUnreachable") from inner
    except ApplicationError as outer:
        return outer


def test_failure_converter_redacts_every_message_and_trace_of_the_chain(
    secrets_installed: Settings,
) -> None:
    exc = _raised(f"chain unreachable at {RPC_URL}", f"503 for url {RPC_URL} bot{BOT_TOKEN}")
    failure = _failure_of(RedactingFailureConverter(), exc)
    text = json.dumps(json_format.MessageToDict(failure))
    assert RPC_KEY not in text and BOT_TOKEN not in text
    assert failure.message == "chain unreachable at https://polygon-amoy.g.alchemy.com/v2/***"
    assert failure.cause.message.startswith("503 for url https://polygon-amoy")
    assert "test_redaction.py" in failure.stack_trace  # the trace is kept, redacted


def test_encoded_failure_converter_moves_each_level_into_encoded_attributes(
    secrets_installed: Settings,
) -> None:
    exc = _raised(f"chain unreachable at {RPC_URL}", f"503 for url {RPC_URL}")
    failure = _failure_of(EncodedRedactingFailureConverter(), exc)
    converter = data_converter(Settings()).payload_converter
    level: Failure | None = failure
    levels = 0
    while level is not None:
        assert level.message == ENCODED_MESSAGE and level.stack_trace == ""
        attributes = converter.from_payloads([level.encoded_attributes])[0]
        assert "***" in attributes["message"] and RPC_KEY not in json.dumps(attributes)
        level = level.cause if level.HasField("cause") else None
        levels += 1
    assert levels == 2


# --- on the dev server ----------------------------------------------------------------------------


@activity.defn(name="redaction_test_call_rpc")
async def call_rpc(url: str) -> str:
    raise ConnectionError(f"503 Service Unavailable for url: {url}")


@workflow.defn(name="RedactionTestWorkflow")
class CallRpcWorkflow:
    @workflow.run
    async def run(self, url: str) -> str:
        try:
            return await workflow.execute_activity(
                call_rpc,
                url,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(maximum_attempts=2, initial_interval=timedelta(0)),
            )
        except ActivityError as err:
            raise ApplicationError(f"gave up: {err.cause}", non_retryable=True) from err


async def _run_failing_workflow(client: Client) -> str:
    task_queue = f"redaction-{uuid.uuid4()}"
    workflow_id = f"redaction-{uuid.uuid4()}"
    async with Worker(
        client, task_queue=task_queue, workflows=[CallRpcWorkflow], activities=[call_rpc]
    ):
        with pytest.raises(WorkflowFailureError) as info:
            await client.execute_workflow(
                CallRpcWorkflow.run,
                RPC_URL,
                id=workflow_id,
                task_queue=task_queue,
                execution_timeout=timedelta(seconds=30),
            )
    assert RPC_KEY not in str(info.value.cause)
    assert "503 Service Unavailable for url: https://polygon-amoy.g.alchemy.com/v2/***" in str(
        info.value.cause
    )
    return workflow_id


def _client_with(dev_env: WorkflowEnvironment, settings: Settings) -> Client:
    config = dev_env.client.config()
    config["data_converter"] = data_converter(settings)
    return Client(**config)


async def test_failures_in_history_are_redacted_without_a_payload_key(
    dev_env: WorkflowEnvironment, secrets_installed: Settings
) -> None:
    settings = Settings(rpc_url=RPC_URL)
    workflow_id = await _run_failing_workflow(_client_with(dev_env, settings))

    history = await dev_env.client.get_workflow_handle(workflow_id).fetch_history()
    raw = history.to_json()
    assert "Service Unavailable for url: https://polygon-amoy.g.alchemy.com/v2/***" in raw
    # The workflow's own input is a payload: without a key it is stored as given; the failures
    # are what this test is about.
    failures = [
        e
        for e in history.events
        if e.HasField("activity_task_failed_event_attributes")
        or e.HasField("workflow_execution_failed_event_attributes")
    ]
    assert failures
    for event in failures:
        assert RPC_KEY not in json_format.MessageToJson(event)


async def test_failures_in_history_are_ciphertext_with_a_payload_key(
    dev_env: WorkflowEnvironment, secrets_installed: Settings
) -> None:
    settings = Settings(rpc_url=RPC_URL, payload_key=PAYLOAD_KEY)
    client = _client_with(dev_env, settings)
    workflow_id = await _run_failing_workflow(client)

    history = await dev_env.client.get_workflow_handle(workflow_id).fetch_history()
    raw = history.to_json()
    assert RPC_KEY not in raw
    assert "Service Unavailable" not in raw  # messages travel encrypted
    assert ENCODED_MESSAGE in raw
    assert base64.b64encode(b"binary/encrypted").decode() in raw


# --- logs of fleet processes ----------------------------------------------------------------------

LOGGING_SCRIPT = """
import logging, os
from agentfleet import redaction
from agentfleet.settings import Settings
redaction.configure_logging(Settings())
log = logging.getLogger("agentfleet.test")
try:
    raise ConnectionError("503 for url " + os.environ["FLEET_RPC_URL"])
except ConnectionError:
    log.exception("call to %s failed", os.environ["FLEET_RPC_URL"])
logging.getLogger("httpx").info("HTTP Request: POST %s", os.environ["FLEET_RPC_URL"])
raise RuntimeError("uncaught with " + os.environ["FLEET_TELEGRAM_BOT_TOKEN"])
"""


def test_process_logs_and_uncaught_tracebacks_are_redacted() -> None:
    result = subprocess.run(
        [sys.executable, "-c", LOGGING_SCRIPT],
        env={
            "PATH": "/usr/bin:/bin",
            "FLEET_RPC_URL": RPC_URL,
            "FLEET_TELEGRAM_BOT_TOKEN": BOT_TOKEN,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    err = result.stderr
    assert "ERROR agentfleet.test: call to https://polygon-amoy.g.alchemy.com/v2/*** failed" in err
    assert "ConnectionError: 503 for url https://polygon-amoy.g.alchemy.com/v2/***" in err
    assert "RuntimeError: uncaught with ***" in err
    assert "HTTP Request" not in err  # httpx request lines are quiet
    assert RPC_KEY not in err and BOT_TOKEN not in err
