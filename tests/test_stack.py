"""`fleet up` / `status` / `down` as a user runs them: real processes, real ports, real files."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.fixtures.stack import FLEET, fleet, pids_of, temporal, wait_gone

pytestmark = pytest.mark.stack


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    assert "Traceback" not in result.stdout + result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
        return str(response.read().decode())


def test_port_in_use_is_one_line_error_and_starts_nothing(stack_env: dict[str, str]) -> None:
    port = int(stack_env["FLEET_ANVIL_PORT"])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        result = fleet(stack_env, "up", "--detach")
    assert_one_line_error(result, f"port {port}", "FLEET_ANVIL_PORT")
    assert not (Path(stack_env["FLEET_HOME"]) / "stack.json").exists()


def test_missing_anvil_is_one_line_error(stack_env: dict[str, str], tmp_path: Path) -> None:
    stack_env["FLEET_ANVIL_BIN"] = str(tmp_path / "no-such-anvil")
    assert_one_line_error(fleet(stack_env, "up", "--detach"), "anvil")
    assert_one_line_error(fleet(stack_env, "up"), "anvil")


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("postgresql+psycopg://postgres:hunter2@127.0.0.1:1/test", "FLEET_DATABASE_URL"),
        ("not a url", "FLEET_DATABASE_URL"),
        ("mysql://root@127.0.0.1/test", "FLEET_DATABASE_URL"),
    ],
)
def test_invalid_database_url_is_one_line_error(
    stack_env: dict[str, str], url: str, needle: str
) -> None:
    stack_env["FLEET_DATABASE_URL"] = url
    result = fleet(stack_env, "up", "--detach")
    assert_one_line_error(result, needle)
    assert "hunter2" not in result.stderr
    assert not (Path(stack_env["FLEET_HOME"]) / "stack.json").exists()


def test_invalid_setting_is_one_line_error(stack_env: dict[str, str]) -> None:
    stack_env["FLEET_TEMPORAL_PORT"] = "70000"
    assert_one_line_error(fleet(stack_env, "status"), "FLEET_TEMPORAL_PORT")


def test_bad_telegram_access_list_is_one_line_error_and_starts_nothing(
    stack_env: dict[str, str],
) -> None:
    stack_env["FLEET_TELEGRAM_USERS"] = "42:superuser"
    assert_one_line_error(fleet(stack_env, "up", "--detach"), "FLEET_TELEGRAM_USERS", "superuser")
    assert not (Path(stack_env["FLEET_HOME"]) / "stack.json").exists()


def test_stale_state_with_orphan_process_is_refused_until_down(stack_env: dict[str, str]) -> None:
    home = Path(stack_env["FLEET_HOME"])
    home.mkdir(parents=True)
    orphan = subprocess.Popen(["sleep", "120"], start_new_session=True)
    try:
        state = {
            "home": str(home),
            "supervisor_pid": 999_999,
            "status": "ready",
            "components": [
                {
                    "name": "anvil",
                    "pid": orphan.pid,
                    "create_time": psutil.Process(orphan.pid).create_time(),
                }
            ],
        }
        (home / "stack.json").write_text(json.dumps(state))
        assert_one_line_error(fleet(stack_env, "up", "--detach"), "stale", "fleet down")
        assert fleet(stack_env, "down").returncode == 0
        orphan.wait(timeout=20)
        assert not (home / "stack.json").exists()
    finally:
        if orphan.poll() is None:
            orphan.kill()


def test_foreground_up_stops_cleanly_on_sigterm(stack_env: dict[str, str]) -> None:
    proc = subprocess.Popen(
        [FLEET, "up", "--no-demo", "--json"],
        env=stack_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("}"):
            break
    status = json.loads("".join(lines))
    assert status["healthy"] is True
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert wait_gone(pids_of(status)) == []
    assert not (Path(stack_env["FLEET_HOME"]) / "stack.json").exists()


def http_post(url: str, body: object, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(  # noqa: S310 - loopback URLs of the test's stack
        url,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return int(response.status), str(response.read().decode())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def payloads_of(history: object) -> list[tuple[bytes, bytes]]:
    """(encoding, data) of every payload in a history as JSON."""
    import base64

    found: list[tuple[bytes, bytes]] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            metadata = node.get("metadata")
            if isinstance(metadata, dict) and "encoding" in metadata:
                found.append(
                    (
                        base64.b64decode(metadata["encoding"]),
                        base64.b64decode(node.get("data", "")),
                    )
                )
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(history)
    return found


def test_up_on_postgresql_with_payload_key_encrypts_history_and_serves_codec_behind_a_token(
    stack_env: dict[str, str], postgresql_url: str
) -> None:
    import base64

    from starters.stack.devchain import free_port

    key = base64.b64encode(os.urandom(32)).decode()
    stack_env["FLEET_DATABASE_URL"] = postgresql_url
    stack_env["FLEET_PAYLOAD_KEY"] = key
    stack_env["FLEET_CODEC_PORT"] = str(free_port())
    up = fleet(stack_env, "up", "--detach", "--demo", "check", "--json")
    assert up.returncode == 0, up.stderr
    started = json.loads(up.stdout)
    [check] = started["demo"]  # --demo check: the stack check alone, and no remote bot
    assert "database postgresql" in check, started["demo"]
    assert "remote-bot" not in {c["name"] for c in started["components"]}
    assert key not in up.stdout + up.stderr

    demo_id = started["demo"][0].split()[2].rstrip(":")
    shown = temporal(stack_env, "workflow", "show", "-w", demo_id, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    raw = json.loads(shown.stdout)
    encodings = {encoding for encoding, _ in payloads_of(raw)}
    assert encodings == {b"binary/encrypted"}, encodings
    assert not any(b"fleet up" in data for _, data in payloads_of(raw))  # the demo's label
    sealed = next(
        payload
        for event in raw["events"]
        for payload in event.get("workflowExecutionStartedEventAttributes", {})
        .get("input", {})
        .get("payloads", [])
    )
    body = {"payloads": [sealed]}

    # The public app decodes nothing (it is reachable by anyone who can pay a bot).
    http = f"http://127.0.0.1:{stack_env['FLEET_HTTP_PORT']}"
    for path in ("/codec/decode", "/decode", "/codec/encode", "/encode"):
        status, answer = http_post(f"{http}{path}", body)
        assert status == 404, (path, status, answer)

    shown_codec = fleet(stack_env, "codec", "show", "--json")
    assert shown_codec.returncode == 0, shown_codec.stderr
    codec = json.loads(shown_codec.stdout)
    endpoint = f"http://127.0.0.1:{stack_env['FLEET_CODEC_PORT']}"
    token = codec["authorization"].removeprefix("Bearer ")
    assert codec["endpoint"] == endpoint and codec["up"] is True
    assert codec["ui_endpoint"] == f"{endpoint}/t/{token}"
    codec_component = next(c for c in started["components"] if c["name"] == "codec")
    listening = {
        conn.laddr.ip
        for conn in psutil.Process(codec_component["pid"]).net_connections("tcp")
        if conn.status == psutil.CONN_LISTEN
    }
    assert listening == {"127.0.0.1"}

    ui_settings = json.loads(
        http_get(f"http://127.0.0.1:{stack_env['FLEET_UI_PORT']}/api/v1/settings")
    )
    assert ui_settings["Codec"]["Endpoint"] == codec["ui_endpoint"]

    # The codec app decodes for the token's holder only.
    assert http_post(f"{endpoint}/decode", body)[0] == 401
    assert http_post(f"{endpoint}/decode", body, {"Authorization": "Bearer nope"})[0] == 401
    assert http_post(f"{endpoint}/t/{'x' * len(token)}/decode", body)[0] == 404
    status, answer = http_post(f"{endpoint}/t/{token}/decode", body, {"X-Namespace": "default"})
    assert status == 200, answer
    [(encoding, data)] = payloads_of(json.loads(answer))
    assert encoding == b"json/plain" and b'"label":"fleet up"' in data

    # The temporal CLI reads the history through the codec with the token as a Bearer header.
    decoded = temporal(
        stack_env,
        "workflow",
        "show",
        "-w",
        demo_id,
        "-o",
        "json",
        "--codec-endpoint",
        endpoint,
        "--codec-auth",
        codec["authorization"],
    )
    assert decoded.returncode == 0, decoded.stderr
    opened_all = payloads_of(json.loads(decoded.stdout))
    assert b"binary/encrypted" not in {encoding for encoding, _ in opened_all}
    assert any(b'"label":"fleet up"' in data for _, data in opened_all), opened_all[:3]

    # A client without the key cannot hand the fleet a workflow input of its own.
    plain_id = "stack-check-plaintext"
    started_plain = temporal(
        stack_env,
        "workflow",
        "start",
        "--type",
        "StackCheckWorkflow",
        "--task-queue",
        "fleet-workflows",
        "-w",
        plain_id,
        "--input",
        '{"label": "injected", "check_chain": false}',
    )
    assert started_plain.returncode == 0, started_plain.stderr
    deadline = time.monotonic() + 30
    kinds: list[str] = []
    while time.monotonic() < deadline and "EVENT_TYPE_WORKFLOW_TASK_FAILED" not in kinds:
        time.sleep(0.5)
        events = json.loads(
            temporal(stack_env, "workflow", "show", "-w", plain_id, "-o", "json").stdout
        )["events"]
        kinds = [event["eventType"] for event in events]
    assert "EVENT_TYPE_WORKFLOW_TASK_FAILED" in kinds, kinds
    assert "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED" not in kinds, kinds
    assert temporal(stack_env, "workflow", "terminate", "-w", plain_id).returncode == 0

    import sqlalchemy

    with sqlalchemy.create_engine(postgresql_url).connect() as conn:
        rows = conn.execute(
            sqlalchemy.text("select workflow_id from audit_events where kind = 'stack.checked'")
        ).all()
    assert [r[0] for r in rows] == [demo_id]
    for log in (Path(stack_env["FLEET_HOME"]) / "logs").glob("*.log"):
        text = log.read_text(errors="replace")
        assert key not in text, log
        assert token not in text, log
    assert fleet(stack_env, "down").returncode == 0
