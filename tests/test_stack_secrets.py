"""A full demo run configured with real-shaped secrets leaks none of them: not into a workflow
history (raw, nor decoded with the payload key as an operator sees it), a log file, the worker's
metrics, a CLI answer or an HTTP answer, even while the RPC endpoint fails and its URL (which
carries the API key, as Alchemy's and Infura's do) ends up in error messages.

anvil answers JSON-RPC on ``/`` only, so the test puts a small loopback forwarder in front of it
whose path holds the key, like a hosted RPC provider, and which can answer 503 for a while.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import secrets
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from temporalio.client import Client

from agentfleet.chain.accounts import dev_account
from agentfleet.codec import ENCODING, AESGCMCodec, parse_key
from starters.stack.devchain import free_port, start_anvil
from tests.fixtures.stack import FLEET, fleet

pytestmark = pytest.mark.stack

RPC_KEY = "Ak7Qm3Xr9Lp2Vt5Wz8Nb4Yc6Hd1Jf0Gs"
OPENAI_KEY = "sk-proj-Tq8Wm2Kx7Rv4Lz9Pc3Nb6Yh1Jd5Fg0As"
BOT_TOKEN = "7301234567:AAHk3Jd9sLq2WmZx8RtYb5NcVf4GhPe1uIo"


class RpcProvider:
    """A hosted-RPC stand-in on loopback: ``POST /v3/<key>`` is forwarded to anvil, any other
    path is a 401; while ``failing``, every call is a 503 (as a provider's outage or rate limit
    answers)."""

    def __init__(self, upstream: str, key: str) -> None:
        self.upstream = upstream
        self.path = f"/v3/{key}"
        self.failing = False
        self.forwarded = 0
        self.refused = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path != provider.path:
                    self._answer(401, b'{"error":"unknown api key"}')
                    return
                if provider.failing:
                    provider.refused += 1
                    self._answer(503, b"upstream unavailable")
                    return
                request = urllib.request.Request(  # noqa: S310 - the test's own anvil
                    provider.upstream, body, {"content-type": "application/json"}
                )
                with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                    answer = response.read()
                provider.forwarded += 1
                self._answer(200, answer)

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}{self.path}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> RpcProvider:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def rpc_provider() -> Iterator[RpcProvider]:
    anvil, anvil_url = start_anvil()
    try:
        with RpcProvider(anvil_url, RPC_KEY) as provider:
            yield provider
    finally:
        anvil.terminate()
        anvil.wait(timeout=10)


class Haystack:
    """Everything the run let out, by where it came from."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}

    def add(self, where: str, text: str) -> None:
        self.texts[where] = self.texts.get(where, "") + "\n" + text

    def cli(self, env: dict[str, str], *args: str, timeout: float = 300) -> Any:
        result = fleet(env, *args, timeout=timeout)
        self.add(f"fleet {' '.join(args)}", result.stdout + result.stderr)
        return result

    def http(self, where: str, response: httpx.Response) -> None:
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        decoded = ""
        for name in ("payment-response", "x-payment-response", "payment-required"):
            if name in response.headers:
                decoded += base64.b64decode(response.headers[name]).decode(errors="replace")
        self.add(f"HTTP {where}", f"{response.status_code}\n{headers}\n{decoded}\n{response.text}")

    def holding(self, secret: str) -> list[str]:
        return [where for where, text in self.texts.items() if secret in text]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError as exc:  # nothing listens there
        return 0, str(exc)


async def _opened(node: Any, codec: AESGCMCodec) -> list[str]:
    """The plaintext of every encrypted payload in ``node`` (a history or description as JSON),
    as an operator with the key sees it."""
    found: list[str] = []
    ours = base64.b64encode(ENCODING).decode()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            metadata = item.get("metadata")
            if isinstance(metadata, dict) and metadata.get("encoding") == ours:
                [plain] = await codec.decode([json_format.ParseDict(item, Payload())])
                found.append(plain.data.decode(errors="replace"))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


async def _temporal_texts(env: dict[str, str], key: str, haystack: Haystack) -> int:
    """Every history of the namespace, running workflows' descriptions (pending activities and
    their last failures) and schedules, raw and opened with the payload key."""
    client = await Client.connect(f"127.0.0.1:{env['FLEET_TEMPORAL_PORT']}")
    codec = AESGCMCodec(parse_key(key), accept_plaintext=True)
    count = 0
    async for execution in client.list_workflows():
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        history = json.loads((await handle.fetch_history()).to_json())
        haystack.add("histories (raw)", json.dumps(history))
        haystack.add("histories (opened)", "\n".join(await _opened(history, codec)))
        if execution.status is None or execution.status.name == "RUNNING":
            described = json_format.MessageToDict((await handle.describe()).raw_description)
            haystack.add("running workflows (raw)", json.dumps(described))
            haystack.add("running workflows (opened)", "\n".join(await _opened(described, codec)))
        count += 1
    async for listed in await client.list_schedules():
        described = json_format.MessageToDict(
            (await client.get_schedule_handle(listed.id).describe()).raw_description
        )
        haystack.add("schedules", json.dumps(described))
        haystack.add("schedules (opened)", "\n".join(await _opened(described, codec)))
    return count


async def _paid_call_during_outage(
    env: dict[str, str], haystack: Haystack
) -> tuple[str | None, str]:
    """forecaster-2's skill bought over HTTP by an outside buyer with the official x402 SDK
    while the RPC fails; the saga's id (if the gateway started one) and the gateway's URL."""
    from x402 import x402Client
    from x402.http.clients.httpx import x402AsyncTransport
    from x402.mechanisms.evm import EthAccountSigner
    from x402.mechanisms.evm.exact import ExactEvmClientScheme

    from agentfleet.chain.deployment.manifest import load_deployment
    from agentfleet.settings import Settings

    gateway = f"http://127.0.0.1:{env['FLEET_HTTP_PORT']}"
    deployment = load_deployment(Settings(home=env["FLEET_HOME"]))
    assert deployment is not None
    asset = deployment.address("FleetUSD")
    sdk = x402Client()
    sdk.register("eip155:*", ExactEvmClientScheme(EthAccountSigner(dev_account(9))))
    sdk.set_spend_controls({"allowed_assets": [{"network": "eip155:31337", "asset": asset}]})
    transport = x402AsyncTransport(sdk, transport=httpx.AsyncHTTPTransport())
    path = "/bots/forecaster-2/skills/forecast"
    async with httpx.AsyncClient(base_url=gateway, timeout=60) as plain:
        haystack.http("402 offer", await plain.post(path, json={"symbol": "BTCUSDT"}))
    async with httpx.AsyncClient(transport=transport, base_url=gateway, timeout=60) as paying:
        answer = await paying.post(path, json={"symbol": "BTCUSDT"})
    haystack.http("paid call during the outage", answer)
    payment_id = None
    if answer.status_code == 202:
        payment_id = str(answer.json().get("payment_id") or "") or None
    elif "payment-" in answer.text:
        match = re.search(r"payment-[0-9A-Za-z_-]+", answer.text)
        payment_id = match.group(0) if match else None
    return payment_id, gateway


def test_a_demo_run_with_secrets_and_a_failing_rpc_leaks_none_of_them(
    stack_env: dict[str, str], rpc_provider: RpcProvider
) -> None:
    keystore_secret = secrets.token_hex(32)
    payload_key = base64.b64encode(os.urandom(32)).decode()
    env = dict(
        stack_env,
        FLEET_RPC_URL=rpc_provider.url,
        FLEET_OPENAI_BASE_URL=f"http://127.0.0.1:{stack_env['FLEET_SANDBOX_PORT']}/openai/v1",
        FLEET_OPENAI_API_KEY=OPENAI_KEY,
        FLEET_TELEGRAM_BOT_TOKEN=BOT_TOKEN,
        FLEET_KEYSTORE_SECRET=keystore_secret,
        FLEET_PAYLOAD_KEY=payload_key,
        FLEET_CODEC_PORT=str(free_port()),
        FLEET_PAYMENT_WAIT_S="5",
    )
    haystack = Haystack()

    up = haystack.cli(env, "up", "--detach", "--json", timeout=600)
    assert up.returncode == 0, up.stderr[-3000:]
    started = json.loads(up.stdout)
    assert any("forecaster-1 paid forecaster-2" in line for line in started["demo"]), started
    assert rpc_provider.forwarded > 0  # the fleet reached its chain through the keyed URL
    # The command center polls the sandbox's Bot API, which accepts only the configured token.
    assert {c["name"]: c["up"] for c in started["components"]}["telegram"] is True

    # The RPC provider fails for a while: chain work in the worker, the gateway and the CLI
    # meets errors that carry its URL.
    rpc_provider.failing = True
    pay = subprocess.Popen(
        [
            FLEET,
            "pay",
            "--from",
            "forecaster-1",
            "--to",
            "forecaster-3",
            "--skill",
            "forecast",
            "--json",
        ],
        env=env,
        cwd=env["FLEET_HOME"].rsplit("/", 1)[0],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    haystack.cli(env, "chain", "status", "--json")
    haystack.cli(env, "bot", "create", "leak-check", "--kind", "forecaster", "--no-wait", "--json")
    haystack.cli(env, "schedule", "trigger", "fleet-health", "--json")
    payment_id, gateway = asyncio.run(_paid_call_during_outage(env, haystack))
    # The outage lasts until 30 calls were refused and a step in the worker has failed on it (its
    # message is then in Temporal): on a loaded machine the CLI and the gateway alone can make
    # the 30 before the worker's first chain call.
    worker_log = Path(env["FLEET_HOME"]) / "logs" / "worker.log"
    endpoint = f"127.0.0.1:{rpc_provider.server.server_port}/v3/"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (
        rpc_provider.refused < 30 or endpoint not in worker_log.read_text(errors="replace")
    ):
        time.sleep(1)
    assert rpc_provider.refused >= 30, rpc_provider.refused
    assert endpoint in worker_log.read_text(errors="replace"), "no step failed on the outage"
    rpc_provider.failing = False

    out, err = pay.communicate(timeout=600)
    haystack.add("fleet pay (during the outage)", out + err)
    deadline = time.monotonic() + 240
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        shown = haystack.cli(env, "bot", "show", "leak-check", "--json")
        status = json.loads(shown.stdout) if shown.returncode == 0 else {}
        if status.get("status") == "active":
            break
        time.sleep(2)
    assert status.get("status") == "active", status
    if payment_id is not None:
        for _ in range(60):
            code, text = _get(f"{gateway}/payments/{payment_id}")
            haystack.add(f"HTTP GET /payments/{payment_id}", f"{code}\n{text}")
            if code == 200 and json.loads(text).get("final"):
                break
            time.sleep(1)
    for url in (
        f"{gateway}/healthz",
        f"{gateway}/bots/forecaster-2/registration.json",
        f"{gateway}/payments/payment-unknown",
        f"http://127.0.0.1:{env['FLEET_CODEC_PORT']}/healthz",
    ):
        code, text = _get(url)
        haystack.add(f"HTTP GET {url}", f"{code}\n{text}")
    haystack.cli(env, "status", "--json")
    haystack.cli(env, "config", "show", "--json")
    haystack.cli(env, "payments", "list", "--json")
    haystack.cli(env, "alerts", "list", "--json")
    for channel in ("demo-alerts", "demo-hooks"):
        haystack.cli(env, "channel", "inbox", channel, "--json")

    histories = asyncio.run(_temporal_texts(env, payload_key, haystack))
    assert histories > 20, histories
    _, metrics = _get(f"http://127.0.0.1:{env['FLEET_METRICS_PORT']}/metrics")
    haystack.add("worker /metrics", metrics)
    logs = sorted((Path(env["FLEET_HOME"]) / "logs").glob("*.log"))
    assert {p.stem for p in logs} >= {"supervisor", "worker", "http", "codec", "telegram"}
    for path in logs:
        haystack.add(f"log {path.name}", path.read_text(errors="replace"))
    haystack.add("stack.json", (Path(env["FLEET_HOME"]) / "stack.json").read_text())

    # The failures did happen and their messages did name the endpoint.
    naming = haystack.holding(endpoint)
    # In a history once a failed step has ended; while it still retries, in the pending
    # activity's last failure that `describe` shows (Temporal stores both).
    assert any(where.startswith(("histories", "running workflows")) for where in naming), naming
    assert any(where.startswith("log ") for where in naming), naming

    secrets_by_name = {
        "RPC API key": RPC_KEY,
        "OpenAI API key": OPENAI_KEY,
        "Telegram bot token": BOT_TOKEN.split(":", 1)[1],
        "keystore secret": keystore_secret,
        "payload key": payload_key,
        "payload key (hex)": base64.b64decode(payload_key).hex(),
    }
    leaks = {name: haystack.holding(value) for name, value in secrets_by_name.items()}
    assert not any(leaks.values()), {name: where for name, where in leaks.items() if where}
    assert haystack.holding(f"{endpoint}***"), "the endpoint shows with its key masked"
    assert fleet(env, "down").returncode == 0
