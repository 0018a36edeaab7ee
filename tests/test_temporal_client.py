"""Connecting to Temporal (option precedence, one-line errors) and starting by business key."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from temporalio import workflow

# The sandbox re-imports this module for the workflow below; pass everything else through.
with workflow.unsafe.imports_passed_through():
    import pytest
    from temporalio.client import Client, WorkflowHandle
    from temporalio.common import WorkflowIDReusePolicy
    from temporalio.exceptions import WorkflowAlreadyStartedError
    from temporalio.service import TLSConfig
    from temporalio.worker import Worker

    from agentfleet.errors import FleetError
    from agentfleet.ports import free_port
    from agentfleet.settings import Settings
    from agentfleet.temporal import connect, connect_options, start_by_business_key

PROFILES_TOML = """
[profile.default]
address = "default-profile.example:7233"
namespace = "default-profile-ns"

[profile.staging]
address = "staging.example:7233"
namespace = "staging-ns"
"""


class Order(BaseModel):
    number: str


@workflow.defn
class WaitForReleaseWorkflow:
    def __init__(self) -> None:
        self._released = False

    @workflow.run
    async def run(self, order: Order) -> str:
        await workflow.wait_condition(lambda: self._released)
        return f"done {order.number}"

    @workflow.signal
    def release(self) -> None:
        self._released = True


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No FLEET_*/TEMPORAL_* variables, no temporal.toml in a config dir, no .env in cwd."""
    for name in list(os.environ):
        if name.startswith(("FLEET_", "TEMPORAL_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


# --- connect_options precedence ------------------------------------------------------------------


def test_default_is_the_embedded_dev_server(clean_env: Path) -> None:
    options = connect_options(Settings())
    assert options["target_host"] == "127.0.0.1:7233"
    assert options["namespace"] == "default"
    assert "tls" not in options
    assert "api_key" not in options


def test_embedded_default_follows_fleet_temporal_port(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEET_TEMPORAL_PORT", "17233")
    assert connect_options(Settings())["target_host"] == "127.0.0.1:17233"


def test_temporal_address_alone_wins_over_the_default(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "envconfig.example:7233")
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "envconfig-ns")
    settings = Settings()
    options = connect_options(settings)
    assert options["target_host"] == "envconfig.example:7233"
    assert options["namespace"] == "envconfig-ns"
    assert not settings.uses_embedded_temporal


def test_fleet_temporal_address_wins_over_temporal_address(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "envconfig.example:7233")
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "envconfig-ns")
    monkeypatch.setenv("FLEET_TEMPORAL_ADDRESS", "fleet.example:7233")
    monkeypatch.setenv("FLEET_TEMPORAL_NAMESPACE", "fleet-ns")
    options = connect_options(Settings())
    assert options["target_host"] == "fleet.example:7233"
    assert options["namespace"] == "fleet-ns"


def test_temporal_api_key_from_envconfig_is_used_with_tls(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "ns.tmprl.cloud:7233")
    monkeypatch.setenv("TEMPORAL_API_KEY", "envconfig-api-key")
    options = connect_options(Settings())
    assert options["api_key"] == "envconfig-api-key"
    assert options["tls"] is True


def test_profile_file_with_named_profile_selected_by_fleet_temporal_profile(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = clean_env / "temporal.toml"
    config.write_text(PROFILES_TOML)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(config))

    default = connect_options(Settings())
    assert default["target_host"] == "default-profile.example:7233"
    assert default["namespace"] == "default-profile-ns"

    monkeypatch.setenv("FLEET_TEMPORAL_PROFILE", "staging")
    staging = connect_options(Settings())
    assert staging["target_host"] == "staging.example:7233"
    assert staging["namespace"] == "staging-ns"

    # FLEET_* still wins over the selected profile.
    monkeypatch.setenv("FLEET_TEMPORAL_ADDRESS", "fleet.example:7233")
    assert connect_options(Settings())["target_host"] == "fleet.example:7233"


def test_unknown_profile_is_a_fleet_error(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = clean_env / "temporal.toml"
    config.write_text(PROFILES_TOML)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(config))
    monkeypatch.setenv("FLEET_TEMPORAL_PROFILE", "no-such-profile")
    with pytest.raises(FleetError, match="Temporal env config"):
        connect_options(Settings())


def test_fleet_temporal_api_key_implies_tls(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEET_TEMPORAL_ADDRESS", "ns.acct.tmprl.cloud:7233")
    monkeypatch.setenv("FLEET_TEMPORAL_API_KEY", "fleet-api-key")
    options = connect_options(Settings())
    assert options["api_key"] == "fleet-api-key"
    assert options["tls"] is True


def test_explicit_tls_off_wins_over_the_api_key_default(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEET_TEMPORAL_API_KEY", "fleet-api-key")
    monkeypatch.setenv("FLEET_TEMPORAL_TLS", "false")
    assert connect_options(Settings())["tls"] is False


def test_tls_cert_without_key_is_a_fleet_error(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert = clean_env / "client.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("FLEET_TEMPORAL_TLS_CERT", str(cert))
    with pytest.raises(FleetError, match="FLEET_TEMPORAL_TLS_KEY"):
        connect_options(Settings())


def test_mtls_files_become_a_tls_config(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key, ca = (clean_env / name for name in ("client.pem", "client.key", "ca.pem"))
    cert.write_bytes(b"CERT")
    key.write_bytes(b"KEY")
    ca.write_bytes(b"CA")
    monkeypatch.setenv("FLEET_TEMPORAL_TLS_CERT", str(cert))
    monkeypatch.setenv("FLEET_TEMPORAL_TLS_KEY", str(key))
    monkeypatch.setenv("FLEET_TEMPORAL_TLS_CA", str(ca))
    monkeypatch.setenv("FLEET_TEMPORAL_TLS_SERVER_NAME", "temporal.internal")
    tls = connect_options(Settings())["tls"]
    assert tls == TLSConfig(
        client_cert=b"CERT",
        client_private_key=b"KEY",
        server_root_ca_cert=b"CA",
        domain="temporal.internal",
    )


def test_unreadable_tls_file_is_a_fleet_error(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEET_TEMPORAL_TLS_CA", str(clean_env / "missing-ca.pem"))
    with pytest.raises(FleetError, match="cannot read TLS file"):
        connect_options(Settings())


# --- connect -------------------------------------------------------------------------------------


async def test_connect_to_closed_embedded_port_is_a_one_line_error_saying_fleet_up(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setenv("FLEET_TEMPORAL_PORT", str(port))
    started = time.monotonic()
    with pytest.raises(FleetError) as info:
        await connect(Settings())
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert "\n" not in message
    assert f"127.0.0.1:{port}" in message
    assert "fleet up" in message


async def test_connect_to_closed_configured_address_names_it_and_points_at_the_settings(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("FLEET_TEMPORAL_ADDRESS", address)
    with pytest.raises(FleetError) as info:
        await connect(Settings())
    message = str(info.value)
    assert "\n" not in message
    assert address in message
    assert "FLEET_TEMPORAL_ADDRESS" in message
    assert "fleet up" not in message


async def test_connect_to_closed_profile_address_does_not_suggest_fleet_up(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = f"127.0.0.1:{free_port()}"
    config = clean_env / "temporal.toml"
    config.write_text(f'[profile.default]\naddress = "{address}"\n')
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(config))
    with pytest.raises(FleetError) as info:
        await connect(Settings())
    assert address in str(info.value)
    assert "fleet up" not in str(info.value)


# --- start_by_business_key -----------------------------------------------------------------------


async def test_start_by_business_key_attaches_to_the_running_execution(
    dev_client: Client,
) -> None:
    task_queue = f"bizkey-{uuid.uuid4()}"
    business_key = f"order-{uuid.uuid4()}"

    async def start() -> WorkflowHandle[Any, Any]:
        return await start_by_business_key(
            dev_client,
            WaitForReleaseWorkflow.run,
            Order(number=business_key),
            id=business_key,
            task_queue=task_queue,
            execution_timeout=timedelta(seconds=60),
        )

    async with Worker(dev_client, task_queue=task_queue, workflows=[WaitForReleaseWorkflow]):
        first, second = await asyncio.gather(start(), start())
        third = await start()
        handles = [first, second, third]
        run_ids = {handle.result_run_id for handle in handles}
        assert len(run_ids) == 1
        assert None not in run_ids

        await third.signal(WaitForReleaseWorkflow.release)
        assert await first.result() == f"done {business_key}"

        # Completed successfully: the default policy is ALLOW_DUPLICATE_FAILED_ONLY, so the same
        # business key is not run again.
        with pytest.raises(WorkflowAlreadyStartedError) as info:
            await start()
        assert info.value.run_id == run_ids.pop()


async def test_start_by_business_key_reuse_policy_can_allow_a_rerun(dev_client: Client) -> None:
    task_queue = f"bizkey-{uuid.uuid4()}"
    business_key = f"order-{uuid.uuid4()}"
    async with Worker(dev_client, task_queue=task_queue, workflows=[WaitForReleaseWorkflow]):
        runs = []
        for _ in range(2):
            handle = await start_by_business_key(
                dev_client,
                WaitForReleaseWorkflow.run,
                Order(number=business_key),
                id=business_key,
                task_queue=task_queue,
                reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                execution_timeout=timedelta(seconds=60),
            )
            await handle.signal(WaitForReleaseWorkflow.release)
            assert await handle.result() == f"done {business_key}"
            runs.append(handle.result_run_id)
    assert runs[0] != runs[1]
