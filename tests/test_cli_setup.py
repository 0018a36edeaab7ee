"""`fleet setup`: migrations and search attributes on a database and namespace you run yourself."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from agentfleet import binaries, db, search_attributes
from starters.cli.main import app


@pytest.fixture
def fresh_namespace(dev_env: WorkflowEnvironment) -> tuple[str, str]:
    address = dev_env.client.service_client.config.target_host
    namespace = f"setup-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        [
            str(binaries.temporal_cli()),
            "operator",
            "namespace",
            "create",
            "-n",
            namespace,
            "--address",
            address,
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return address, namespace


def test_setup_migrates_and_registers_missing_attributes_once(
    fresh_namespace: tuple[str, str], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    address, namespace = fresh_namespace
    monkeypatch.setenv("FLEET_TEMPORAL_ADDRESS", address)
    monkeypatch.setenv("FLEET_TEMPORAL_NAMESPACE", namespace)
    monkeypatch.setenv("FLEET_DATABASE_URL", database_url)
    runner = CliRunner()
    first = runner.invoke(app, ["setup", "--json"])
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert report["database_revision"] == db.head_revision() == db.current_revision(database_url)
    assert sorted(report["search_attributes_added"]) == sorted(
        k.name for k in search_attributes.ALL
    )
    second = runner.invoke(app, ["setup", "--json"])
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["search_attributes_added"] == []


def test_setup_with_server_down_is_one_line_error(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fixtures.chain import free_port

    monkeypatch.setenv("FLEET_TEMPORAL_ADDRESS", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("FLEET_DATABASE_URL", database_url)
    result = CliRunner().invoke(app, ["setup"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach Temporal"), result.stderr
