"""The `fleet up` supervisor when components die: restarts with growing delays while the rest
keeps running, a crash loop in `fleet status` and in the alerts, payments settled exactly once
while the worker is SIGKILLed every 3 s, and no child outliving a SIGKILLed supervisor."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from sqlmodel import select
from web3 import Web3
from x402 import x402Client
from x402.http.clients.httpx import x402AsyncTransport
from x402.mechanisms.evm.exact import ExactEvmClientScheme

from agentfleet import db
from agentfleet.chain.accounts import dev_account
from agentfleet.models import ChainTransaction, PaymentRecord
from agentfleet.settings import Settings
from starters.stack.state import StackFiles, port_open
from tests.fixtures.stack import fleet, wait_gone
from tests.test_payment_chaos import add_seller, fusd

pytestmark = pytest.mark.stack

PRICE = 10_000
"""What a forecast costs (fUSD units)."""
ROUNDS = 8
"""Of 3 s each: a payment starts and the worker is SIGKILLed (if up) in each."""
MIN_KILLS = 3
"""Kills the test must have made while payments were in flight."""


def component(env: dict[str, str], name: str) -> dict[str, Any]:
    """The component as ``stack.json`` has it right now (what `fleet status` reads)."""
    state = StackFiles(Path(env["FLEET_HOME"])).read()
    assert state is not None
    found = state.component(name)
    assert found is not None, name
    return found.model_dump()


def status_of(env: dict[str, str]) -> dict[str, Any]:
    result = fleet(env, "status", "--json")
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def wait_until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


def alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_a_crash_looping_component_backs_off_alone_is_alerted_and_dies_with_the_supervisor(
    stack_env: dict[str, str],
) -> None:
    stack_env.update(FLEET_ALERT_WINDOW_S="1", FLEET_RESTART_STABLE_S="5")
    up = fleet(stack_env, "up", "--detach", "--no-demo", "--json")
    assert up.returncode == 0, up.stderr
    started = {c["name"]: c["pid"] for c in json.loads(up.stdout)["components"]}
    others = {name: pid for name, pid in started.items() if name not in ("mcp", "database")}
    port = int(stack_env["FLEET_MCP_PORT"])

    # SIGKILL the MCP server as soon as each new process shows; after the third exit, take its
    # port so the restarts fail by themselves with a real error line.
    gaps: list[tuple[float, float]] = []
    blocker: socket.socket | None = None
    pid = started["mcp"]
    try:
        for _ in range(3):
            wait_until(lambda p=pid: alive(p), 5, "the MCP server running")
            os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            if len(gaps) == 2:
                blocker = hold_port(port)
            new = wait_until(lambda old=pid: restarted(stack_env, old), 30, "a restart")
            gaps.append((new["restarts"], time.monotonic() - killed))
            pid = new["pid"]
        # The next starts fail on the port by themselves: delays of 4 s, then 8 s, and the
        # error line of the failed start.
        failed = wait_until(
            lambda: (c := component(stack_env, "mcp"))["failures"] == 4 and c, 60, "4th exit"
        )
        assert failed["crash_loop"] is True and failed["backoff_s"] == 4
        assert "address already in use" in (failed["last_error"] or ""), failed
        wait_until(lambda: component(stack_env, "mcp")["failures"] == 5, 60, "5th exit")
        shown = status_of(stack_env)
        [mcp] = [c for c in shown["components"] if c["name"] == "mcp"]
        assert shown["crash_looping"] == ["mcp"] and shown["healthy"] is False
        assert shown["status"] == "ready" and shown["running"] is True
        assert (mcp["up"], mcp["restarts"], mcp["failures"], mcp["backoff_s"]) == (False, 4, 5, 8)
        assert 0 < mcp["restart_in_s"] <= 8 and mcp["next_restart_at"]
        assert "address already in use" in mcp["last_error"] and "\n" not in mcp["last_error"]
        assert mcp["last_exit"] == "exit code 3", mcp  # uvicorn: could not bind
        panel = fleet(stack_env, "status").stdout
        # "crash loop", or "was crash-looping" when the next (failing) start came first
        assert "crash loop" in panel or "crash-looping" in panel, panel
        assert "address already in use" in panel, panel
        secret = (Path(stack_env["FLEET_HOME"]) / "keystore.secret").read_text().strip()
        assert secret and secret not in json.dumps(shown) + panel
        # the others ran on, untouched
        assert {c["name"]: c["pid"] for c in shown["components"] if c["name"] in others} == others
        assert all(c["up"] for c in shown["components"] if c["name"] != "mcp"), shown
    finally:
        if blocker is not None:
            blocker.close()

    # the delays grew: 0.5 s, 1 s, 2 s between an exit and the next start
    assert [restarts for restarts, _ in gaps] == [1, 2, 3]
    for (_, gap), delay in zip(gaps, (0.5, 1, 2), strict=True):
        assert delay <= gap < delay + 3, gaps
    assert gaps[0][1] < gaps[1][1] < gaps[2][1], gaps

    alerts = wait_until(
        lambda: json.loads(
            fleet(stack_env, "alerts", "list", "--kind", "component_crash_loop", "--json").stdout
        ),
        60,
        "the crash-loop alert recorded",
    )
    assert [a["keys"] for a in alerts] == [["mcp"]] and alerts[0]["severity"] == "critical"
    assert "3 times in a row" in alerts[0]["text"]
    assert component(stack_env, "mcp")["alert"] == "raised"

    # the port is free again: the MCP server comes back, and once it stayed up the loop is over
    recovered = wait_until(
        lambda: (s := status_of(stack_env))["healthy"] and not s["crash_looping"] and s, 60, "ok"
    )
    [mcp] = [c for c in recovered["components"] if c["name"] == "mcp"]
    assert mcp["failures"] == 0 and mcp["crash_loop"] is False and mcp["restarts"] >= 5

    # The Temporal server crash-looping: no alert can go through it; logged and shown instead.
    pid = started["temporal"]
    for _ in range(3):
        wait_until(lambda p=pid: alive(p), 5, "the Temporal server running")
        os.kill(pid, signal.SIGKILL)
        pid = wait_until(lambda old=pid: restarted(stack_env, old, "temporal"), 30, "restart")[
            "pid"
        ]
    temporal = component(stack_env, "temporal")
    assert temporal["crash_loop"] is True
    assert temporal["alert"] == "not raised: the Temporal server itself is crash-looping"
    log = (Path(stack_env["FLEET_HOME"]) / "logs" / "supervisor.log").read_text()
    assert "crash loop: Temporal dev server exited 3 times in a row" in log
    back = wait_until(
        lambda: (s := status_of(stack_env))["healthy"] and not s["crash_looping"] and s, 60, "ok"
    )
    assert {c["name"]: c["pid"] for c in back["components"] if c["name"] in ("anvil", "http")} == {
        "anvil": started["anvil"],
        "http": started["http"],
    }

    # SIGKILL the supervisor: every process it started goes with it
    state = StackFiles(Path(stack_env["FLEET_HOME"])).read()
    assert state is not None
    supervisor = psutil.Process(state.supervisor_pid)
    children = [p.pid for p in supervisor.children(recursive=True)]
    assert len(children) >= len(others) + 1, children
    supervisor.kill()
    assert wait_gone([state.supervisor_pid, *children]) == []
    assert status_of(stack_env)["running"] is False


def hold_port(port: int) -> socket.socket:
    """Listen on ``port`` as soon as it is free (within 1.5 s)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    deadline = time.monotonic() + 1.5
    while True:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            if time.monotonic() > deadline:
                sock.close()
                raise
            time.sleep(0.02)
        else:
            sock.listen()
            return sock


def restarted(env: dict[str, str], old_pid: int, name: str = "mcp") -> dict[str, Any] | None:
    """The component's state once a process other than ``old_pid`` is recorded."""
    state = component(env, name)
    return state if state["pid"] != old_pid else None


async def test_payments_settle_exactly_once_while_the_worker_is_sigkilled_every_3_seconds(
    stack_env: dict[str, str], postgresql_url: str
) -> None:
    """The issue's test, shortened: every 3 s for 24 s (not a minute: the suite's time) the
    worker is SIGKILLed if it is up (it takes ~5 s to start; killing it while it imports Python
    tests nothing), while a payment starts every 3 s; on PostgreSQL, restarts capped at 2 s."""
    stack_env.update(
        FLEET_DATABASE_URL=postgresql_url,
        FLEET_RESTART_BACKOFF_MAX_S="2",
        FLEET_PAYMENT_WAIT_S="120",
    )
    up = await asyncio.to_thread(fleet, stack_env, "up", "--detach", "--no-demo", "--json")
    assert up.returncode == 0, up.stderr
    settings = Settings(
        home=Path(stack_env["FLEET_HOME"]),
        database_url=postgresql_url,
        anvil_port=int(stack_env["FLEET_ANVIL_PORT"]),
        http_port=int(stack_env["FLEET_HTTP_PORT"]),
    )
    seller, seller_address = add_seller(postgresql_url, "loop-seller")
    token = fusd(settings, settings.effective_rpc_url)
    buyer = dev_account(7)
    before = int(token.functions.balanceOf(buyer.address).call())

    sdk = x402Client()
    sdk.register("eip155:*", ExactEvmClientScheme(buyer))
    sdk.set_spend_controls(False)
    kills: list[int] = []

    calls: list[asyncio.Task[httpx.Response]] = []

    async def kill_the_worker_every_3_s() -> None:
        # ROUNDS ticks; then, on a loaded machine where the worker took longer than 3 s to come
        # back, on until it has been killed MIN_KILLS times or every paid call has its answer.
        tick = 0
        deadline = time.monotonic() + 120
        while tick < ROUNDS or (
            len(kills) < MIN_KILLS
            and not all(c.done() for c in calls)
            and time.monotonic() < deadline
        ):
            tick += 1
            await asyncio.sleep(3)
            worker = component(stack_env, "worker")
            if alive(worker["pid"]) and port_open(worker["ports"]["metrics"]):
                os.kill(worker["pid"], signal.SIGKILL)
                kills.append(worker["pid"])

    async with httpx.AsyncClient(
        transport=x402AsyncTransport(sdk), base_url=settings.http_url, timeout=180
    ) as http:
        killer = asyncio.create_task(kill_the_worker_every_3_s())
        for _ in range(ROUNDS):
            calls.append(asyncio.create_task(http.post(f"/bots/{seller}/skills/forecast", json={})))
            await asyncio.sleep(3)
        await killer
        responses = await asyncio.wait_for(asyncio.gather(*calls), 150)

    assert len(kills) >= MIN_KILLS, kills
    for response in responses:
        assert response.status_code == 200, response.text
        assert response.json()["bot"] == seller
    settled = [json.loads(base64.b64decode(r.headers["PAYMENT-RESPONSE"])) for r in responses]
    assert all(s["success"] for s in settled), settled
    hashes = {s["transaction"] for s in settled}
    assert len(hashes) == ROUNDS

    # the ledger: one settled row and one settlement transaction per payment
    with db.session_scope(postgresql_url) as session:
        rows = session.exec(select(PaymentRecord).where(PaymentRecord.seller == seller)).all()
        sent = {
            row.payment_id: session.exec(
                select(ChainTransaction).where(ChainTransaction.request_id == row.payment_id)
            ).all()
            for row in rows
        }
    assert sorted(r.status for r in rows) == ["settled"] * ROUNDS
    assert {r.tx_hash for r in rows} == hashes
    assert all(len(txs) == 1 for txs in sent.values()), sent
    # the chain: each transaction succeeded, the money moved once per payment
    w3 = Web3(Web3.HTTPProvider(settings.effective_rpc_url))
    assert all(w3.eth.get_transaction_receipt(h)["status"] == 1 for h in hashes)  # type: ignore[arg-type]
    assert int(token.functions.balanceOf(seller_address).call()) == ROUNDS * PRICE
    assert int(token.functions.balanceOf(buyer.address).call()) == before - ROUNDS * PRICE
    for row in rows:
        nonce = bytes.fromhex(row.nonce[2:])
        assert token.functions.authorizationState(buyer.address, nonce).call() is True

    # and the stack answers: the worker is back, everything up
    status = await asyncio.to_thread(
        wait_until, lambda: (s := status_of(stack_env))["healthy"] and s, 60, "healthy"
    )
    [worker] = [c for c in status["components"] if c["name"] == "worker"]
    assert worker["restarts"] == len(kills)
