"""Payments benchmark: x402 purchases through the gateway and its saga, vs the same-shape skeleton
and vs the official SDK's FastAPI middleware, with instant mining and with real block times.

    python bench/payments.py [--purchases 30] [--concurrent 50] [--sdk-burst N] [--relayers 1,4]
                             [--block-times 0,1,2] [--warmup 3] [--quick] [--json]

Everything runs in this process on a private anvil, a private dev server (set up as ``fleet up``
sets one up) and a SQLite database in a temporary folder, all stopped and removed at the end. A
purchase is what a buyer sees: the official SDK client (``x402Client`` + ``ExactEvmClientScheme``
over ``x402AsyncTransport``) POSTs a forecaster's ``forecast`` skill, gets the 402, signs an
EIP-3009 authorization for 0.01 fUSD, sends it again and gets the 200 with ``PAYMENT-RESPONSE``.
``--purchases`` one at a time give p50 / p95; ``--concurrent`` at once give payments per second
(and the latency inside that burst); ``--sdk-burst`` sets the SDK's burst apart (it settles about
one payment a block). Every purchase that does not end in a settled 200 counts as a failure of
its row (none ends the run). Benchmarks report, they never assert timings.

One set of rows per block time (``--block-times``; 0 is instant mining): anvil's mining mode is
switched on the running chain (``evm_setIntervalMining``, the mode ``anvil --block-time`` starts
with; ``evm_setAutomine`` for instant), so all rows share one fleet, one deployment and one dev
server. With block times, each sequential purchase starts after a random, seeded pause of up to
one block time (:class:`BlockPhase`): sent back to back, purchases would lock onto the blocks and
every path would measure the block time. Rows, all measured in the same run:

- **skeleton**: the payment saga's shape with no-op activities: 3 activities (verify, the skill,
  the settlement), a local activity (record): 4 workflow tasks, on the saga's queue layout
  (workflow, skill and verify + settlement each on a queue of their own, as on
  ``fleet-workflows``, ``fleet-llm`` and ``fleet-chain``; on one queue the server would hand the
  activities to the workflow's worker eagerly, ~4 ms less here). What it lacks: the settlement's
  nonce update to its relayer and the outcome signalled back. It touches no chain: its rows at
  each block time differ only by the machine's noise.
- **gateway via N relayers**: our ``POST /bots/{name}/skills/forecast`` (``create_app`` over
  ``httpx.ASGITransport``) with the fleet's workers in this process: ``PaymentSagaWorkflow``
  (verify, skill, a ``send_with_relayer`` settlement with its nonce from a relayer entity, ledger
  row), settled on anvil; with 1 relayer account, then with more (``--relayers``).
- **x402 SDK middleware**: what a user would pick instead: the SDK's ``payment_middleware`` with
  its in-process, non-durable ``x402Facilitator`` (``FacilitatorWeb3Signer``, its own funded key)
  settling on the same anvil and the same FleetUSD, in front of a route that runs the same
  forecast skill. Run after the fleet's workers stopped, so it has the process to itself.

Each figure of ours is also given as a ratio to the skeleton (Temporal's floor for that shape)
and to the SDK (the non-durable path) of the same block time. Under the tables, per block time,
a **floor** (the skeleton plus the SDK's own verify and settle: the chain calls any path must
make, so the least a durable saga of this shape can take on this machine) and the issue's aims
as checks, each met or not: with instant mining our p50 at most 15 ms over the floor; at 1 s
blocks the burst all settled, at least 0.7x the skeleton's throughput and a p50 at most 0.75x
the SDK's; more relayers settle more per second. A second table shows where a purchase's time
goes, from the sagas' histories, an activity interceptor (local activities leave no timing in a
history) and the settlement's transaction row (gateway), and from timing the SDK facilitator's
calls (medians of the sequential purchases; ``--json`` adds their p95). Before each gateway row
every relayer starts (one transaction each) and re-checks its earlier settlements
(``recheck_now``), so that a row pays for neither. Every row also counts the transactions
mined while it ran that reverted (``reverted``): a settlement the chain refuses costs its
relayer gas for nothing, and the gateway's saga never broadcasts one (0 expected).

The SDK's facilitator signs and sends with synchronous web3 on the event loop: during its burst
the loop is blocked most of the time (``facilitator_share_of_burst``), purchases wait for each
other's RPCs and receipts (one settlement a block), and web3's receipt wait sleeps 0.1 s,
blocking, whenever the receipt is not there at the first look (its p95 with instant mining).
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python bench/payments.py` puts bench/ on the path, not the repository root.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import asyncio
import base64
import json
import random
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from rich.table import Table
from sqlmodel import col, select
from temporalio import activity
from temporalio import client as temporal_client
from temporalio.client import Client
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor
from web3 import Web3
from x402 import x402Client, x402Facilitator, x402ResourceServer
from x402.http import PaymentOption, RouteConfig
from x402.http.clients.httpx import x402AsyncTransport
from x402.http.middleware.fastapi import payment_middleware
from x402.mechanisms.evm import EthAccountSigner, FacilitatorWeb3Signer
from x402.mechanisms.evm.exact import (
    ExactEvmClientScheme,
    ExactEvmServerScheme,
    register_exact_evm_facilitator,
)
from x402.schemas import (
    AssetAmount,
    SettleResponse,
    VerifyResponse,
)

from activities.skills import SkillActivities
from agentfleet import db, keystore
from agentfleet.bots.model import BotKind, BotRef, BotStatus, Skill, SkillCall
from agentfleet.chain.accounts import dev_account
from agentfleet.chain.deployment.manifest import load_deployment
from agentfleet.chain.relayers import relayers
from agentfleet.chain.transactions import relayer_id
from agentfleet.messages import (
    TxRequest,
    TxStatus,
)
from agentfleet.models import ChainTransaction, PaymentRecord
from agentfleet.payments.terms import EIP712_NAME, EIP712_VERSION
from agentfleet.settings import Settings
from bench.harness import (
    BurstClock,
    Figures,
    Options,
    Run,
    Sizes,
    add_bots,
    at_least,
    figures_from,
    int_list,
    measure,
    medians,
    milliseconds,
    percentile,
    ratios,
    report_console,
    scratch_fleet,
    times,
)
from bench.shapes import (
    SkeletonStep,
    activity_spans,
    counts_by_type,
    event_time,
    history_counts,
    history_events,
    steps_skeleton,
)
from clients.transactions import send_transaction
from starters.http.app import create_app
from starters.stack.devchain import funded_account, prepare_fleet, rpc
from workers.main import running_workers
from workflows.relayer import RelayerWorkflow

T = TypeVar("T")

CHAIN_ID = 31337
NETWORK = f"eip155:{CHAIN_ID}"
PRICE = 10_000
"""0.01 fUSD: the default price of ``forecast`` (both paths charge it)."""
SELLER = "bench-seller"
SELLER_PARAMS: dict[str, Any] = {"symbol": "BTCUSDT", "alpha": 0.2}
SKILL_ARGS: dict[str, Any] = {"symbol": "ETHUSDT", "horizon": "4h"}
GATEWAY_BUYER = 7
SDK_BUYER = 8
"""Dev accounts that hold fUSD once the contracts are deployed (one buyer per path)."""
SDK_MAX_TIMEOUT_S = 1800
"""The SDK's authorizations stay valid this long: its burst at 2 s blocks takes minutes, and a
purchase that expires while it queues would measure the setting, not the SDK."""
PAYMENT_WAIT_S = 120.0
"""The gateway's wait for settlement before it answers 202: long enough for any burst here."""
SHAPE = "3 + local"
ACTIVITIES = 4
PHASE_SEED = 402
QUICK = {"purchases": 2, "concurrent": 3, "warmup": 1, "block_times": [0, 1]}

OPTIONS = Options(__file__, __doc__, quick=QUICK)
OPTIONS.count("--purchases", 30, "purchases one at a time (latency)")
OPTIONS.count("--concurrent", 50, "purchases at once (throughput)")
OPTIONS.add_argument(
    "--relayers",
    type=int_list("relayer counts", 1, 16),
    default=[1, 4],
    metavar="N,N,...",
    help="relayer accounts the gateway settles with, one row each (default: 1,4)",
)
OPTIONS.count("--warmup", 3, "discarded purchases per row")
OPTIONS.add_argument(
    "--block-times",
    type=int_list("block times", 0, 12),
    default=[0, 1, 2],
    metavar="S,S,...",
    help="anvil block times in seconds, one set of rows each; 0 is instant mining (default: 0,1,2)",
)
OPTIONS.add_argument(
    "--sdk-burst",
    type=at_least(1),
    default=None,
    metavar="N",
    help="the SDK's burst (default: --concurrent); it settles about one payment a block, so a "
    "burst of 200 at 2 s blocks takes 400 s",
)


# -- purchases ------------------------------------------------------------------------------------


def buyer_http(app: Any, buyer: LocalAccount, asset: str) -> httpx.AsyncClient:
    """The official SDK's buyer: pays every 402 of ``app`` in FleetUSD, in process."""
    sdk = x402Client()
    sdk.register("eip155:*", ExactEvmClientScheme(EthAccountSigner(buyer)))
    sdk.set_spend_controls({"allowed_assets": [{"network": NETWORK, "asset": asset}]})
    transport = x402AsyncTransport(sdk, transport=httpx.ASGITransport(app=app))
    return httpx.AsyncClient(
        transport=transport, base_url="http://bench", timeout=SDK_MAX_TIMEOUT_S
    )


async def purchase(http: httpx.AsyncClient, path: str) -> str:
    """One paid call; the settlement's transaction hash (anything but a settled 200 raises)."""
    response = await http.post(path, json=SKILL_ARGS)
    if response.status_code != 200:
        raise RuntimeError(f"purchase answered {response.status_code}: {response.text[:300]}")
    settled = json.loads(base64.b64decode(response.headers["PAYMENT-RESPONSE"]))
    if settled.get("success") is not True:
        raise RuntimeError(f"purchase not settled: {settled}")
    data = response.json()
    if data.get("symbol") != SKILL_ARGS["symbol"]:
        raise RuntimeError(f"not the forecast asked for: {data}")
    return str(settled["transaction"])


class BlockPhase:
    """Where in the block interval each sequential purchase starts. Purchases sent back to back
    lock onto the blocks (each starts just after the block that settled the one before, so it
    waits nearly a whole block time, on any path); a buyer's request comes at any moment. So with
    block times, each sequential purchase starts after a random pause of up to one block time
    (seeded: the same pauses in every run), and its latency is timed from its start."""

    def __init__(self, block_time_s: int, *, seed: int) -> None:
        self.block_time_s = block_time_s
        self.rng = random.Random(PHASE_SEED + 100 * block_time_s + seed)  # noqa: S311 - timing

    async def wait(self) -> None:
        if self.block_time_s:
            await asyncio.sleep(self.rng.uniform(0, self.block_time_s))


def with_latencies(row: Figures, latencies_s: Sequence[float]) -> Figures:
    """``row`` with its p50 / p95 / mean from ``latencies_s`` (the sequential purchases timed
    from their start, without the pause of :class:`BlockPhase` or a failed purchase)."""
    timed = figures_from(
        row.name,
        shape=row.shape,
        activities=row.activities,
        latencies_s=latencies_s,
        burst=row.burst,
        burst_wall_s=1.0,
    )
    return row.model_copy(
        update={
            "runs": timed.runs,
            "p50_ms": timed.p50_ms,
            "p95_ms": timed.p95_ms,
            "mean_ms": timed.mean_ms,
        }
    )


def phase_figures(samples: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    """``phases_ms`` (medians) and ``phases_p95_ms`` of per-purchase phase timings."""
    keys = sorted({key for sample in samples for key in sample})
    return {
        "phases_ms": medians(samples, keys),
        "phases_p95_ms": {key: percentile([sample[key] for sample in samples], 95) for key in keys},
    }


# -- where a gateway purchase's time goes (from the saga's history) -------------------------------


@dataclass
class Ran:
    """One activity execution as its worker saw it (wall clock, so it compares with rows)."""

    started: datetime
    ended: datetime

    @property
    def ms(self) -> float:
        return milliseconds(self.started, self.ended)


class ActivityClock(temporal_client.Interceptor, Interceptor):
    """Times every activity the workers run, local ones included (their time is not in the
    history), by workflow id and activity type. A client interceptor the workers pick up."""

    def __init__(self) -> None:
        self.runs: dict[tuple[str, str], Ran] = {}

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        runs = self.runs

        class Timed(ActivityInboundInterceptor):
            async def execute_activity(self, input: ExecuteActivityInput) -> Any:
                started = datetime.now(UTC)
                try:
                    return await super().execute_activity(input)
                finally:
                    info = activity.info()
                    key = (info.workflow_id or "", info.activity_type)
                    runs[key] = Ran(started, datetime.now(UTC))

        return Timed(next)


def created_at(url: str, request_id: str) -> datetime:
    """When the settlement's transaction row was written: its nonce had just been reserved."""
    with db.session_scope(url) as session:
        row = session.get(ChainTransaction, request_id)
        if row is None:
            raise RuntimeError(f"no transaction recorded for {request_id}")
        return row.created_at


async def saga_phases(
    client: Client, clock: ActivityClock, url: str, payment_id: str
) -> dict[str, float]:
    """Milliseconds of each step of one finished saga: from its history (start to end, the
    regular activities' dispatch) and from the activity clock (local activities, and the
    settlement's nonce reservation until its transaction row was written)."""
    saga = await history_events(client, payment_id)
    spans = {name: runs[-1] for name, runs in activity_spans(saga).items()}
    ran = {kind: span for (wf, kind), span in clock.runs.items() if wf == payment_id}
    send = ran["send_with_relayer"]
    recorded = await asyncio.to_thread(created_at, url, payment_id)
    phases = {
        "saga": milliseconds(event_time(saga[0]), event_time(saga[-1])),
        "verify": ran["verify_payment"].ms,
        "skill": spans["run_skill"].ms,
        "settle": spans["send_with_relayer"].ms,
        "tx_nonce": milliseconds(send.started, recorded),
        "tx_send": milliseconds(recorded, send.ended),
        "record": ran["record_payment"].ms,
        "queued": sum(span.queued_ms for span in spans.values()),
    }
    steps = ("verify", "skill", "settle", "record")
    phases["workflow_tasks"] = phases["saga"] - sum(phases[step] for step in steps)
    return phases


def payment_ids(url: str, tx_hashes: Sequence[str]) -> dict[str, PaymentRecord]:
    with db.session_scope(url) as session:
        rows = session.exec(select(PaymentRecord).where(col(PaymentRecord.tx_hash).in_(tx_hashes)))
        return {str(row.tx_hash): row for row in rows}


# -- the parts ------------------------------------------------------------------------------------


async def skeleton_part(client: Client, sizes: Sizes) -> tuple[Figures, BurstClock]:
    """The saga's shape in no-ops: verify, the skill and the settlement (verify and settlement on
    one queue, the skill on another, as on ``fleet-chain`` and ``fleet-llm``), record (local)."""
    clock = BurstClock(sizes)
    async with steps_skeleton(client, "bench-payment-skeleton", ("skill", "settle")) as skeleton:
        steps = [
            SkeletonStep(task_queue=skeleton.queue_named("settle")),
            SkeletonStep(task_queue=skeleton.queue_named("skill")),
            SkeletonStep(task_queue=skeleton.queue_named("settle")),
            SkeletonStep(local=True),
        ]
        row = await measure(
            "skeleton",
            skeleton.runner(steps),
            shape=SHAPE,
            activities=ACTIVITIES,
            sizes=sizes,
            on_done=clock,
        )
    return row, clock


async def add_relayers(client: Client, settings: Settings, rpc_url: str, count: int) -> list[str]:
    """``count`` relayer accounts in the keystore, each with ETH for gas and one transaction
    sent already (its entity started, its key loaded), so the measurement sees steady relayers."""
    accounts = await asyncio.to_thread(relayers, settings)
    for index in range(len(accounts), count):
        key = funded_account(rpc_url).key
        await asyncio.to_thread(keystore.store_key, settings, f"relayer-{index}", key)
    accounts = await asyncio.to_thread(relayers, settings)

    async def warm(sender: str) -> None:
        outcome = await send_transaction(
            client,
            chain_id=CHAIN_ID,
            sender=sender,
            request=TxRequest(
                request_id=f"bench-warm-{sender.lower()}", to=Account.create().address, value=1
            ),
            reorg_window_s=0,
        )
        if outcome.status is not TxStatus.CONFIRMED:
            raise RuntimeError(f"warming relayer {sender}: {outcome.error}")

    await asyncio.gather(*(warm(sender) for sender in accounts))
    return accounts


async def quiet_relayers(client: Client, accounts: Sequence[str], limit_s: float = 60) -> None:
    """Have every relayer re-check its finished transactions now (each settlement is looked at
    again after its reorg window) and wait until none is in flight or pending: a row must not
    pay for the previous row's re-checks."""
    handles = [client.get_workflow_handle(relayer_id(CHAIN_ID, sender)) for sender in accounts]
    for handle in handles:
        await handle.signal(RelayerWorkflow.recheck_now)
    deadline = time.monotonic() + limit_s
    for handle in handles:
        while (status := await handle.query(RelayerWorkflow.status)).pending_recheck or (
            status.reserved
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"relayer {handle.id} still busy after {limit_s:g} s: {status}")
            await asyncio.sleep(0.2)


async def gateway_part(
    client: Client,
    activity_clock: ActivityClock,
    settings: Settings,
    app: Any,
    asset: str,
    count: int,
    sizes: Sizes,
    block_time_s: int,
) -> tuple[Figures, dict[str, Any]]:
    url = settings.effective_database_url
    phase = BlockPhase(block_time_s, seed=count)
    path = f"/bots/{SELLER}/skills/forecast"
    clock = BurstClock(sizes)
    sequential: dict[str, float] = {}
    in_burst: list[str] = []

    failures: list[str] = []
    async with buyer_http(app, dev_account(GATEWAY_BUYER), asset) as http:

        async def once(key: str) -> None:
            if key.startswith("r"):
                await phase.wait()
            started = time.perf_counter()
            try:
                tx_hash = await purchase(http, path)
            except Exception as err:
                failures.append(f"{key}: {err}")
                return
            if key.startswith("r"):
                sequential[tx_hash] = time.perf_counter() - started
            elif key.startswith("b"):
                in_burst.append(tx_hash)

        row = await measure(
            f"gateway via {count} relayer{'s' if count > 1 else ''}",
            once,
            shape=SHAPE,
            activities=ACTIVITIES,
            sizes=sizes,
            on_done=clock,
        )
    row = with_latencies(row, list(sequential.values()))
    records = await asyncio.to_thread(payment_ids, url, [*sequential, *in_burst])
    samples = []
    for tx_hash, seconds in sequential.items():
        phases = await saga_phases(client, activity_clock, url, records[tx_hash].payment_id)
        total = seconds * 1000
        samples.append({"total": total, "outside": total - phases["saga"], **phases})
    used = {records[tx_hash].relayer for tx_hash in in_burst}
    if not sequential:
        raise RuntimeError(f"every sequential purchase failed: {failures[:3]}")
    extra = {
        "kind": "gateway",
        "relayers": count,
        "relayers_used_in_burst": len(used),
        **failed(failures),
        **clock.percentiles(),
        **phase_figures(samples),
        "last_payment_id": records[next(reversed(sequential))].payment_id,
    }
    return row, extra


class TimedFacilitator(x402Facilitator):
    """The SDK's in-process facilitator, timing its verify and settle calls."""

    def __init__(self) -> None:
        super().__init__()
        self.verify_s: list[float] = []
        self.settle_s: list[float] = []

    async def verify(self, *args: Any, **kwargs: Any) -> VerifyResponse:
        return await _timed(super().verify(*args, **kwargs), self.verify_s)

    async def settle(self, *args: Any, **kwargs: Any) -> SettleResponse:
        return await _timed(super().settle(*args, **kwargs), self.settle_s)


async def _timed(call: Awaitable[T], seconds: list[float]) -> T:
    started = time.perf_counter()
    try:
        return await call
    finally:
        seconds.append(time.perf_counter() - started)


async def sdk_part(
    settings: Settings, rpc_url: str, asset: str, sizes: Sizes, block_time_s: int
) -> tuple[Figures, dict[str, Any]]:
    """The SDK's FastAPI middleware + in-process facilitator selling the same skill."""
    facilitator = TimedFacilitator()
    signer = FacilitatorWeb3Signer(private_key=funded_account(rpc_url).key.hex(), rpc_url=rpc_url)
    register_exact_evm_facilitator(facilitator, signer, networks=NETWORK)
    server = x402ResourceServer(facilitator)
    # The SDK's own server scheme: its __init__ is untyped and its ``payment_flows`` is a plain
    # dict where the protocol says Mapping[str, PaymentFlowConfig] (x402 2.25).
    server.register(NETWORK, ExactEvmServerScheme())  # type: ignore[no-untyped-call, arg-type]
    name = "sdk-seller"
    path = f"/bots/{name}/skills/forecast"
    routes = {
        f"POST {path}": RouteConfig(
            accepts=PaymentOption(
                scheme="exact",
                pay_to=Account.create().address,
                price=AssetAmount(
                    amount=str(PRICE),
                    asset=asset,
                    extra={"name": EIP712_NAME, "version": EIP712_VERSION},
                ),
                network=NETWORK,
                max_timeout_seconds=SDK_MAX_TIMEOUT_S,
            ),
            description=f"forecast of {name}",
            mime_type="application/json",
        )
    }
    skills = SkillActivities(settings)
    bot = BotRef(
        name=name,
        kind=BotKind.FORECASTER,
        status=BotStatus.ACTIVE,
        owner="bench",
        params=SELLER_PARAMS,
    )
    handler_s: list[float] = []
    app = FastAPI()
    app.middleware("http")(payment_middleware(routes, server))

    @app.post(path)
    async def forecast(request: Request) -> JSONResponse:
        started = time.perf_counter()
        call = SkillCall(bot=bot, skill=Skill.FORECAST, args=await request.json())
        result = await skills.run_skill(call)
        handler_s.append(time.perf_counter() - started)
        if not result.ok:
            return JSONResponse({"error": result.error}, status_code=502)
        return JSONResponse(result.data)

    clock = BurstClock(sizes)
    sequential: list[float] = []
    failures: list[str] = []
    phase = BlockPhase(block_time_s, seed=0)
    try:
        async with buyer_http(app, dev_account(SDK_BUYER), asset) as http:

            async def once(key: str) -> None:
                if key.startswith("r"):
                    await phase.wait()
                started = time.perf_counter()
                try:
                    await purchase(http, path)
                except Exception as err:
                    failures.append(f"{key}: {err}")
                    return
                if key.startswith("r"):
                    sequential.append(time.perf_counter() - started)

            row = await measure(
                "x402 SDK middleware",
                once,
                shape="SDK, in-process facilitator",
                activities=0,
                sizes=sizes,
                on_done=clock,
            )
    finally:
        await skills.close()
    if not sequential:
        raise RuntimeError(f"every sequential purchase failed: {failures[:3]}")
    row = with_latencies(row, sequential)
    runs = len(sequential)
    samples = []
    for total_s, verify_s, skill_s, settle_s in zip(
        sequential,
        facilitator.verify_s[-runs:],
        handler_s[-runs:],
        facilitator.settle_s[-runs:],
        strict=True,
    ):
        phases = {"verify": verify_s, "skill": skill_s, "settle": settle_s}
        total = total_s * 1000
        samples.append(
            {
                "total": total,
                "outside": total - 1000 * sum(phases.values()),
                **{key: 1000 * value for key, value in phases.items()},
            }
        )
    burst = slice(sizes.warmup, sizes.warmup + sizes.burst)
    blocked_s = sum(facilitator.verify_s[burst]) + sum(facilitator.settle_s[burst])
    extra = {
        "kind": "sdk",
        "relayers": 1,
        **failed(failures),
        **clock.percentiles(),
        **phase_figures(samples),
        "facilitator_share_of_burst": blocked_s * row.throughput_per_s / sizes.burst,
    }
    return row, extra


def failed(failures: Sequence[str]) -> dict[str, Any]:
    """``failures``: purchases of the row that did not end in a settled 200 (warm-up, burst and
    sequential), and the first few of them as ``failure_samples``."""
    return {"failures": len(failures), "failure_samples": list(failures[:3])}


def mine_every(rpc_url: str, block_time_s: int) -> None:
    """Anvil mines a block every ``block_time_s`` seconds from now on, or each transaction at
    once with 0: the mining mode ``anvil --block-time`` starts with, set on the running chain
    so that every block time's rows share one fleet, one deployment and one dev server."""
    if block_time_s:
        rpc(rpc_url, "evm_setIntervalMining", block_time_s)
    else:
        rpc(rpc_url, "evm_setAutomine", True)


def add_seller(url: str) -> str:
    """An active forecaster row selling ``forecast`` at the default price; its address."""
    address: str = Account.create().address
    add_bots(url, [SELLER], BotKind.FORECASTER, params=SELLER_PARAMS, address=address, agent_id=1)
    return address


def block_number(rpc_url: str) -> int:
    return int(Web3(Web3.HTTPProvider(rpc_url)).eth.block_number)


def reverted_between(rpc_url: str, first: int, last: int) -> int:
    """Transactions mined in blocks ``first``..``last`` that reverted (a settlement broadcast
    that should not have been: the relayer paid gas for nothing)."""
    w3 = Web3(Web3.HTTPProvider(rpc_url))
    reverted = 0
    for number in range(first, last + 1):
        for tx_hash in w3.eth.get_block(number)["transactions"]:
            receipt = w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            reverted += int(receipt["status"] == 0)
    return reverted


async def counting_reverts(
    rpc_url: str, part: Awaitable[tuple[Figures, dict[str, Any]]]
) -> tuple[Figures, dict[str, Any]]:
    """``part``'s row with ``reverted``: how many transactions mined while it ran reverted."""
    first = await asyncio.to_thread(block_number, rpc_url) + 1
    row, extra = await part
    last = await asyncio.to_thread(block_number, rpc_url)
    extra["reverted"] = await asyncio.to_thread(reverted_between, rpc_url, first, last)
    return row, extra


# -- report ---------------------------------------------------------------------------------------


KINDS = ("skeleton", "gateway", "sdk")
"""The order of a block time's rows in the report (gateway rows by relayer count)."""


def at(block_time_s: int) -> dict[str, int]:
    return {"block_time_s": block_time_s}


def block_label(block_time_s: int) -> str:
    return f"{block_time_s} s blocks" if block_time_s else "instant"


def report_rows(rows: Sequence[tuple[Figures, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every row as a dict with its ratios to the skeleton and to the SDK's row of its own block
    time (ours to both, the SDK to none)."""
    out: list[dict[str, Any]] = []
    for row, extra in rows:
        same = [(r, e["kind"]) for r, e in rows if e["block_time_s"] == extra["block_time_s"]]
        skeleton = next((r for r, kind in same if kind == "skeleton"), None)
        sdk = next((r for r, kind in same if kind == "sdk"), None)
        item: dict[str, Any] = {**row.model_dump(), **extra}
        if extra["kind"] == "gateway":
            item.update(ratios(row, skeleton, "skeleton"))
            item.update(ratios(row, sdk, "sdk"))
        elif extra["kind"] == "sdk":
            item.update(ratios(row, None, "skeleton"))
        out.append(item)
    return out


AIM_OVERHEAD_MS = 15.0
"""With instant mining: our p50 at most this far above the floor (skeleton + SDK chain work)."""
AIM_BLOCK_TIME_S = 1
AIM_THROUGHPUT_VS_SKELETON = 0.7
AIM_P50_VS_SDK = 0.75
"""At 1 s blocks: the burst all settled, at least 0.7x the skeleton's throughput, p50 at most
0.75x the SDK's."""


def aims(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per block time, the floor (the skeleton's p50 plus the SDK's median verify and settle:
    Temporal's work for the shape plus the chain calls every path makes, so no durable saga of
    this shape runs faster here) and the issue's aims as checks, each with its figure, its limit
    and whether this run met it. Block times without a skeleton and an SDK row are left out."""
    out: list[dict[str, Any]] = []
    for block_time_s in sorted({row["block_time_s"] for row in rows}):
        same = [row for row in rows if row["block_time_s"] == block_time_s]
        skeleton = next((row for row in same if row["kind"] == "skeleton"), None)
        sdk = next((row for row in same if row["kind"] == "sdk"), None)
        ours = sorted(
            (row for row in same if row["kind"] == "gateway"), key=lambda r: r["relayers"]
        )
        if skeleton is None or sdk is None or not ours:
            continue
        chain_ms = sdk["phases_ms"]["verify"] + sdk["phases_ms"]["settle"]
        floor_ms = skeleton["p50_ms"] + chain_ms
        checks: list[dict[str, Any]] = []
        if block_time_s == 0:
            for row in ours:
                checks.append(
                    _check(
                        f"overhead over the floor, {row['name']} (ms)",
                        row["p50_ms"] - floor_ms,
                        AIM_OVERHEAD_MS,
                    )
                )
        if block_time_s == AIM_BLOCK_TIME_S:
            for row in ours:
                checks += [
                    _check(f"failures, {row['name']}", row["failures"], 0),
                    _check(
                        f"throughput vs the skeleton, {row['name']}",
                        row["throughput_vs_skeleton"],
                        AIM_THROUGHPUT_VS_SKELETON,
                        at_least=True,
                    ),
                    _check(f"p50 vs the SDK, {row['name']}", row["p50_vs_sdk"], AIM_P50_VS_SDK),
                ]
        if len(ours) > 1:
            checks.append(
                _check(
                    f"throughput with {ours[-1]['relayers']} relayers vs 1",
                    ours[-1]["throughput_per_s"] / ours[0]["throughput_per_s"],
                    1.0,
                    at_least=True,
                )
            )
        out.append(
            {
                "block_time_s": block_time_s,
                "sdk_chain_ms": chain_ms,
                "floor_ms": floor_ms,
                "overhead_ms": {str(row["relayers"]): row["p50_ms"] - floor_ms for row in ours},
                "checks": checks,
            }
        )
    return out


def _check(
    aim: str, value: float | None, limit: float, *, at_least: bool = False
) -> dict[str, Any]:
    met = value is not None and (value >= limit if at_least else value <= limit)
    return {"aim": aim, "value": value, "limit": limit, "at_least": at_least, "met": met}


def aims_text(aim: dict[str, Any]) -> str:
    """One block time's floor and checks, in a few lines (see :func:`aims`)."""
    lines = [
        f"{block_label(aim['block_time_s'])}: floor of a durable saga of this shape (the skeleton "
        f"plus the SDK's own verify and settle, {aim['sdk_chain_ms']:.1f} ms): "
        f"{aim['floor_ms']:.1f} ms."
    ]
    for check in aim["checks"]:
        value = "-" if check["value"] is None else f"{check['value']:.2f}"
        bound = ">=" if check["at_least"] else "<="
        verdict = "met" if check["met"] else "NOT met"
        lines.append(f"  {check['aim']}: {value} (aim {bound} {check['limit']:g}): {verdict}")
    return "\n".join(lines)


PHASES = (
    ("total", "purchase, as the buyer sees it"),
    ("outside", "outside the saga / facilitator: 402 round trip, HTTP, gateway checks"),
    ("saga", "payment saga, start to result"),
    ("verify", "verify_payment (activity: checks, the payer's hold)"),
    ("skill", "forecast skill"),
    ("settle", "settlement (ours: send_with_relayer; SDK: send + receipt)"),
    ("tx_nonce", "  nonce from the relayer entity (an update)"),
    ("tx_send", "  sign, record, broadcast, receipt, outcome to the relayer"),
    ("record", "record_payment (ledger row, local activity)"),
    ("queued", "skill and settlement: scheduled to started (task queue dispatch)"),
    ("workflow_tasks", "saga's workflow tasks and queue hops between its steps"),
)


def print_report(report: dict[str, Any]) -> None:
    console = report_console(200)
    shape = report["per_payment"]
    table = Table(
        title=f"x402 purchases: {report['purchases']} one at a time, {report['concurrent']} at "
        f"once (the SDK: {report['sdk_burst']}) (a saga: {shape['local_activities']} local "
        f"activities, {shape['activities']} activities, {shape['workflow_tasks']} workflow "
        f"tasks; skeleton {SHAPE} no-op activities)"
    )
    table.add_column("blocks")
    table.add_column("path")
    for header in (
        "p50 ms",
        "p95 ms",
        "mean ms",
        "burst",
        "per s at once",
        "p50 ms in burst",
        "failed",
        "reverted",
    ):
        table.add_column(header, justify="right")
    for header in ("p50 × skeleton", "/s × skeleton", "p50 × SDK", "/s × SDK"):
        table.add_column(header, justify="right")
    for row in report["rows"]:
        table.add_row(
            block_label(row["block_time_s"]),
            row["name"],
            f"{row['p50_ms']:.1f}",
            f"{row['p95_ms']:.1f}",
            f"{row['mean_ms']:.1f}",
            str(row["burst"]),
            f"{row['throughput_per_s']:.1f}",
            f"{row['burst_p50_ms']:.0f}",
            "-" if row.get("failures") is None else str(row["failures"]),
            "-" if row.get("reverted") is None else str(row["reverted"]),
            times(row.get("p50_vs_skeleton")),
            times(row.get("throughput_vs_skeleton")),
            times(row.get("p50_vs_sdk")),
            times(row.get("throughput_vs_sdk")),
        )
    console.print(table)
    for block_time_s in report["block_times"]:
        phased = [
            row
            for row in report["rows"]
            if "phases_ms" in row and row["block_time_s"] == block_time_s
        ]
        phases = Table(
            title=f"Where a purchase's time goes, {block_label(block_time_s)} (ms, median of the "
            "sequential purchases)"
        )
        phases.add_column("phase")
        for row in phased:
            phases.add_column(row["name"], justify="right")
        for key, label in PHASES:
            cells = [row["phases_ms"].get(key) for row in phased]
            if any(cell is not None for cell in cells):
                phases.add_row(label, *("-" if cell is None else f"{cell:.1f}" for cell in cells))
        console.print(phases)
    for aim in report["aims"]:
        console.print(aims_text(aim), highlight=False)
    for row in report["rows"]:
        if "facilitator_share_of_burst" in row:
            console.print(
                f"{row['name']}, {block_label(row['block_time_s'])}: the facilitator's verify + "
                f"settle (sync web3 on the event loop) held the loop "
                f"{row['facilitator_share_of_burst']:.0%} of the burst's wall time.",
                highlight=False,
            )


async def amain(argv: Sequence[str] | None = None) -> int:
    """The benchmark in a running event loop; progress on stderr, the report on stdout."""
    args = OPTIONS.read(argv)
    sdk_burst = args.sdk_burst or args.concurrent
    meta = {
        "purchases": args.purchases,
        "concurrent": args.concurrent,
        "sdk_burst": sdk_burst,
        "warmup": args.warmup,
        "block_times": args.block_times,
    }
    run = Run("payments", args, **meta)
    sizes = Sizes(args.purchases, args.concurrent, args.warmup)
    sdk_sizes = Sizes(args.purchases, sdk_burst, args.warmup)
    report, err = run.report, run.err
    measured: list[tuple[Figures, dict[str, Any]]] = []
    activity_clock = ActivityClock()
    async with scratch_fleet("payments", anvil=True, interceptors=[activity_clock]) as fleet:
        client, rpc_url = fleet.client, fleet.anvil_url
        report["server"] = fleet.server
        settings = fleet.settings(deployer_key=fleet.funded_key(), payment_wait_s=PAYMENT_WAIT_S)
        async with running_workers(client, settings):
            err.print("deploying the contracts, funding a relayer and the dev accounts")
            await prepare_fleet(client, settings, rpc_url)
            deployment = load_deployment(settings)
            if deployment is None:
                raise RuntimeError("no deployment after prepare_fleet")
            asset = deployment.address("FleetUSD")
            await asyncio.to_thread(add_seller, fleet.url)
            for block_time_s in args.block_times:
                err.print(f"skeleton ({block_label(block_time_s)}): {SHAPE} no-op activities")
                skeleton, clock = await skeleton_part(client, sizes)
                measured.append(
                    (skeleton, {"kind": "skeleton", **clock.percentiles()} | at(block_time_s))
                )
            app = create_app(settings)
            async with app.router.lifespan_context(app):
                # Relayer counts outside, block times inside: the keystore's relayers only grow.
                for count in args.relayers:
                    accounts = await add_relayers(client, settings, rpc_url, count)
                    for block_time_s in args.block_times:
                        label = block_label(block_time_s)
                        await asyncio.to_thread(mine_every, rpc_url, block_time_s)
                        err.print(f"{label}: flushing the relayers' re-checks of earlier payments")
                        await quiet_relayers(client, accounts)
                        err.print(f"{label}: gateway: purchases settled through {count} relayer(s)")
                        row, extra = await counting_reverts(
                            rpc_url,
                            gateway_part(
                                client,
                                activity_clock,
                                settings,
                                app,
                                asset,
                                count,
                                sizes,
                                block_time_s,
                            ),
                        )
                        measured.append((row, extra | at(block_time_s)))
            last = measured[-1][1]["last_payment_id"]
            report["per_payment"] = counts_by_type(await history_counts(client, last))
        for block_time_s in args.block_times:
            label = block_label(block_time_s)
            await asyncio.to_thread(mine_every, rpc_url, block_time_s)
            err.print(f"{label}: x402 SDK: payment_middleware + in-process facilitator")
            row, extra = await counting_reverts(
                rpc_url, sdk_part(settings, rpc_url, asset, sdk_sizes, block_time_s)
            )
            measured.append((row, extra | at(block_time_s)))
    measured.sort(key=lambda item: (item[1]["block_time_s"], KINDS.index(item[1]["kind"])))
    report["rows"] = report_rows(measured)
    report["aims"] = aims(report["rows"])
    return run.finish(tables=lambda: print_report(report))


def main(argv: Sequence[str] | None = None) -> int:
    """``python bench/payments.py``: measure and print; returns the exit status."""
    return asyncio.run(amain(argv))


if __name__ == "__main__":
    sys.exit(main())
