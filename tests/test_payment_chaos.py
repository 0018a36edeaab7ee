"""SIGKILL the worker process at every step boundary of a payment saga, or the gateway process
while paid calls wait: after a restart the payment is settled exactly once (balances and
``authorizationState`` checked on chain), with exactly one ledger row and one settlement
transaction, and the buyer gets the skill's answer."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from eth_account import Account
from pydantic import SecretStr
from sqlmodel import select
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from web3 import Web3
from x402 import x402Client
from x402.http.clients.httpx import x402AsyncTransport
from x402.mechanisms.evm.exact import ExactEvmClientScheme

from agentfleet import binaries, db, search_attributes
from agentfleet.bots.model import BotKind, BotStatus
from agentfleet.chain import artifacts
from agentfleet.chain.accounts import dev_account
from agentfleet.chain.deployment.manifest import load_deployment
from agentfleet.models import BotRecord, ChainTransaction, PaymentRecord
from agentfleet.payments import facilitator_keys, payer_proof
from agentfleet.payments.facilitator_keys import ANY
from agentfleet.payments.model import PaymentStatus
from agentfleet.payments.payload import decode_header
from agentfleet.settings import Settings
from clients.payments import saga_handle
from starters.http.app import create_app
from starters.stack.components import DEV_SERVER_ARGS
from starters.stack.devchain import free_port, funded_account, prepare_fleet, start_anvil
from tests.fixtures.worker import WorkerProcess, worker_env
from tests.test_payments import payment_header, requirements
from workers.main import running_workers

PRICE = 10_000
POINTS = [
    "before_verify@payment-",
    "after_verify@payment-",
    "after_skill@",
    pytest.param("after_reserve@payment-", marks=pytest.mark.extended),
    "after_sign@payment-",
    "after_broadcast@payment-",
    "after_confirmation@payment-",
    "before_record@payment-",
]


def chaos_settings(
    home: Path, database_url: str, rpc_url: str, temporal: str, wait_s: float = 120
) -> Settings:
    return Settings(
        home=home,
        database_url=database_url,
        rpc_url=rpc_url,
        deployer_key=SecretStr(funded_account(rpc_url).key.hex()),
        temporal_address=temporal,
        payment_wait_s=wait_s,
    )


def add_seller(database_url: str, prefix: str) -> tuple[str, str]:
    """An active forecaster selling skills: (its name, its wallet)."""
    seller, address = f"{prefix}-{uuid.uuid4().hex[:6]}", Account.create().address
    with db.session_scope(database_url) as session:
        session.add(
            BotRecord(
                name=seller,
                kind=BotKind.FORECASTER.value,
                status=BotStatus.ACTIVE.value,
                owner="desk-9",
                address=address,
                params={},
            )
        )
        session.commit()
    return seller, address


def fusd(settings: Settings, rpc_url: str) -> Any:
    """The deployed FleetUSD contract (web3, synchronous)."""
    deployment = load_deployment(settings)
    assert deployment is not None
    return Web3(Web3.HTTPProvider(rpc_url)).eth.contract(
        address=deployment.address("FleetUSD"), abi=artifacts.load("FleetUSD").abi
    )


@pytest_asyncio.fixture(loop_scope="session")
async def chaos_market(
    dev_env: WorkflowEnvironment,
    dev_client: Client,
    chaos_worker: tuple[WorkerProcess, Path],
    migrated_database_url: str,
    anvil_url: str,
    tmp_path: Path,
) -> tuple[Settings, WorkerProcess, Path, str]:
    """Contracts deployed through an in-process worker (stopped again), a seller bot, and the
    worker process the test arms and kills."""
    temporal = dev_env.client.service_client.config.target_host
    settings = chaos_settings(tmp_path, migrated_database_url, anvil_url, temporal)
    async with running_workers(dev_client, settings):
        await prepare_fleet(dev_client, settings, anvil_url)
    seller, _ = add_seller(migrated_database_url, "chaos-seller")
    worker, chaos_dir = chaos_worker
    return settings, worker, chaos_dir, seller


@pytest.mark.parametrize("point", POINTS)
async def test_worker_killed_at_a_saga_step_still_settles_exactly_once(
    chaos_market: tuple[Settings, WorkerProcess, Path, str], anvil_url: str, point: str
) -> None:
    settings, worker, chaos_dir, seller = chaos_market
    token = fusd(settings, anvil_url)
    buyer = dev_account(6)
    with db.session_scope(settings.effective_database_url) as session:
        seller_address = session.get(BotRecord, seller).address  # type: ignore[union-attr]
    before = int(token.functions.balanceOf(buyer.address).call())
    if point.startswith("after_skill"):
        point += seller
    (chaos_dir / point).touch()
    worker.start()

    sdk = x402Client()
    sdk.register("eip155:*", ExactEvmClientScheme(buyer))
    sdk.set_spend_controls(False)
    transport = x402AsyncTransport(sdk, transport=httpx.ASGITransport(app=create_app(settings)))
    async with httpx.AsyncClient(
        transport=transport, base_url=settings.http_url, timeout=180
    ) as http:
        call = asyncio.create_task(http.post(f"/bots/{seller}/skills/forecast", json={}))
        assert await worker.wait_killed() == -9, f"{point} was not reached"
        worker.start()
        response = await call

    assert response.status_code == 200, response.text
    assert response.json()["bot"] == seller
    settled = json.loads(base64.b64decode(response.headers["PAYMENT-RESPONSE"]))
    assert settled["success"] is True
    assert int(token.functions.balanceOf(buyer.address).call()) == before - PRICE
    assert int(token.functions.balanceOf(seller_address).call()) == PRICE
    with db.session_scope(settings.effective_database_url) as session:
        [row] = session.exec(select(PaymentRecord)).all()
        [settlement] = session.exec(
            select(ChainTransaction).where(ChainTransaction.request_id == row.payment_id)
        ).all()
    assert (row.status, row.tx_hash) == ("settled", settled["transaction"])
    assert settlement.tx_hash == settled["transaction"]
    # The relayer's first nonce, kept across the crash: no second nonce, no gap, no filler.
    assert (settlement.sender, settlement.nonce) == (row.relayer, 0)
    assert [a["hash"] for a in settlement.attempts] == [settlement.tx_hash]
    assert token.w3.eth.get_transaction_count(row.relayer) == 1
    state = token.functions.authorizationState(buyer.address, bytes.fromhex(row.nonce[2:]))
    assert state.call() is True
    assert not list(chaos_dir.iterdir()), "the armed point fired"


async def test_temporal_restarted_mid_saga_the_same_payment_settles_once(
    migrated_database_url: str, anvil_url: str, tmp_path: Path
) -> None:
    """A dev server of this test's own with its state on disk: the worker dies after verify,
    the server is stopped while the buyer's call waits, which answers 503 (never a 402); the
    server starts again (same port, same file) and the worker comes back; sending the same
    payment again settles it once."""
    port = free_port()
    server_db = tmp_path / "temporal.db"

    async def start_server() -> WorkflowEnvironment:
        return await WorkflowEnvironment.start_local(
            port=port,
            dev_server_existing_path=str(binaries.temporal_cli()),
            dev_server_database_filename=str(server_db),
            data_converter=pydantic_data_converter,
            search_attributes=list(search_attributes.ALL),
            dev_server_extra_args=list(DEV_SERVER_ARGS),
            dev_server_log_level="error",
        )

    server = await start_server()
    chaos_dir = tmp_path / "chaos"
    chaos_dir.mkdir()
    settings = chaos_settings(
        tmp_path, migrated_database_url, anvil_url, f"127.0.0.1:{port}", wait_s=60
    )
    worker = WorkerProcess(
        worker_env(server, migrated_database_url, anvil_url, tmp_path, chaos_dir),
        tmp_path / "worker.log",
    )
    try:
        async with running_workers(server.client, settings):
            await prepare_fleet(server.client, settings, anvil_url)
        seller, seller_address = add_seller(migrated_database_url, "restart-seller")
        token = fusd(settings, anvil_url)
        buyer = dev_account(3)
        before = int(token.functions.balanceOf(buyer.address).call())
        (chaos_dir / "after_verify@payment-").touch()
        worker.start()
        path = f"/bots/{seller}/skills/forecast"
        transport = httpx.ASGITransport(app=create_app(settings))
        async with httpx.AsyncClient(
            transport=transport, base_url=settings.http_url, timeout=120
        ) as http:
            [accepted] = requirements(await http.post(path, json={}))["accepts"]
            header, nonce = payment_header(buyer, accepted)
            first = asyncio.create_task(
                http.post(path, json={}, headers={"PAYMENT-SIGNATURE": header})
            )
            assert await worker.wait_killed() == -9
            await server.shutdown()
            lost = await first  # the saga cannot move without its worker: the call still waits
            assert lost.status_code == 503, lost.text
            assert "send the same payment again" in lost.json()["detail"]
            server = await start_server()
            worker.start()
            # Sent again once settled, the payment is public: the buyer proves it paid.
            payment_id = decode_header(header).payment_id
            proof = payer_proof.sign(buyer.key, 31337, payment_id, settings.http_url)
            answer = await http.post(
                path,
                json={},
                headers={"PAYMENT-SIGNATURE": header, payer_proof.HEADER: proof},
            )
        assert answer.status_code == 200, answer.text
        assert int(token.functions.balanceOf(buyer.address).call()) == before - PRICE
        assert int(token.functions.balanceOf(seller_address).call()) == PRICE
        assert token.functions.authorizationState(buyer.address, bytes.fromhex(nonce[2:])).call()
        with db.session_scope(migrated_database_url) as session:
            [row] = session.exec(select(PaymentRecord)).all()
        assert row.status == "settled"
    finally:
        worker.stop()
        await server.shutdown()


async def test_anvil_restarted_mid_saga_the_payment_settles_once(
    dev_env: WorkflowEnvironment,
    dev_client: Client,
    chaos_worker: tuple[WorkerProcess, Path],
    migrated_database_url: str,
    tmp_path: Path,
) -> None:
    """A chain of this test's own with its state on disk: the worker dies right after the skill
    ran, the chain is stopped, the worker comes back and finds no chain (its settlement retries,
    the buyer waits), the chain starts again (same port, same state): the payment settles
    once, with one settlement transaction and one ledger row, and the buyer is never told to
    pay again. A second buyer pays while the chain is down: 202 with a status URL (never a
    402), and its payment settles once the chain is back."""
    port = free_port()
    state = tmp_path / "anvil-state.json"
    chain, anvil_url = start_anvil("--state", str(state), port=port)
    worker, chaos_dir = chaos_worker
    worker.env["FLEET_RPC_URL"] = anvil_url
    try:
        temporal = dev_env.client.service_client.config.target_host
        settings = chaos_settings(tmp_path, migrated_database_url, anvil_url, temporal)
        async with running_workers(dev_client, settings):
            await prepare_fleet(dev_client, settings, anvil_url)
        seller, seller_address = add_seller(migrated_database_url, "anvil-seller")
        token = fusd(settings, anvil_url)
        buyer, second = dev_account(4), dev_account(5)
        before = int(token.functions.balanceOf(buyer.address).call())
        second_before = int(token.functions.balanceOf(second.address).call())
        (chaos_dir / f"after_skill@{seller}").touch()
        worker.start()
        path = f"/bots/{seller}/skills/forecast"
        transport = httpx.ASGITransport(app=create_app(settings))
        async with httpx.AsyncClient(
            transport=transport, base_url=settings.http_url, timeout=180
        ) as http:
            [accepted] = requirements(await http.post(path, json={}))["accepts"]
            header, nonce = payment_header(buyer, accepted)
            call = asyncio.create_task(
                http.post(path, json={}, headers={"PAYMENT-SIGNATURE": header})
            )
            assert await worker.wait_killed() == -9
            chain.terminate()
            chain.wait(timeout=10)
            worker.start()
            first_id = decode_header(header).payment_id
            for _ in range(240):  # the new worker ran the skill again: it polls the queues
                steps = (await http.get(f"/payments/{first_id}")).json()["steps"]
                if "executed" in steps:
                    break
                await asyncio.sleep(0.25)
            assert "executed" in steps, steps
            short = settings.model_copy(update={"payment_wait_s": 3.0})
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=create_app(short)), base_url=short.http_url
            ) as during:
                second_header, second_nonce = payment_header(second, accepted)
                pending = await during.post(
                    path, json={}, headers={"PAYMENT-SIGNATURE": second_header}
                )
            assert pending.status_code == 202, pending.text  # its saga waits for the chain
            # A facilitator client asks to verify meanwhile: our trouble, so a 503 (not a 500)
            # in one line that says what is wrong.
            key, _ = facilitator_keys.add_key(migrated_database_url, "outage", pay_to=[ANY])
            third_header, _ = payment_header(dev_account(7), accepted)
            refused = await http.post(
                "/verify",
                json={
                    "x402Version": 2,
                    "paymentPayload": json.loads(base64.b64decode(third_header)),
                    "paymentRequirements": accepted,
                },
                headers={"Authorization": f"Bearer {key}"},
            )
            assert refused.status_code == 503, refused.text
            [detail] = refused.json()["detail"].splitlines()
            assert detail.startswith("the chain cannot be reached"), detail
            assert not call.done()
            chain, _ = start_anvil("--state", str(state), port=port)
            answer = await call
            token_header = {"Authorization": f"Bearer {pending.json()['token']}"}
            for _ in range(240):
                status = (await http.get(pending.json()["status_url"], headers=token_header)).json()
                if status["final"]:
                    break
                await asyncio.sleep(0.25)
        assert answer.status_code == 200, answer.text
        assert answer.json()["bot"] == seller
        assert status["status"] == "settled", status
        assert int(token.functions.balanceOf(buyer.address).call()) == before - PRICE
        assert int(token.functions.balanceOf(second.address).call()) == second_before - PRICE
        assert int(token.functions.balanceOf(seller_address).call()) == 2 * PRICE
        assert token.functions.authorizationState(
            second.address, bytes.fromhex(second_nonce[2:])
        ).call()
        assert token.functions.authorizationState(buyer.address, bytes.fromhex(nonce[2:])).call()
        with db.session_scope(migrated_database_url) as session:
            rows = session.exec(select(PaymentRecord)).all()
            [settlement] = session.exec(
                select(ChainTransaction).where(ChainTransaction.request_id == first_id)
            ).all()
        assert {(r.payment_id == first_id, r.status) for r in rows} == {
            (True, "settled"),
            (False, "settled"),
        }
        [row] = [r for r in rows if r.payment_id == first_id]
        assert len(rows) == 2 and settlement.tx_hash == row.tx_hash
    finally:
        chain.terminate()
        chain.wait(timeout=10)


class GatewayProcess(WorkerProcess):
    """`python -m starters.http`: the HTTP app with the x402 gateway, as `fleet up` runs it."""

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "starters.http"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def ready(self, url: str) -> None:
        assert self.proc is not None
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            for _ in range(600):
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/healthz")).status_code == 200:
                        return
                if self.proc.poll() is not None:
                    break
                await asyncio.sleep(0.1)
        raise AssertionError(f"the gateway did not start; log:\n{self.log.read_text()}")


def settlement(response: httpx.Response) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.b64decode(response.headers["PAYMENT-RESPONSE"]))
    return decoded


@pytest.mark.extended
async def test_gateway_killed_while_paid_calls_wait_the_same_payment_sent_again_pays_once(
    chaos_market: tuple[Settings, WorkerProcess, Path, str],
    dev_client: Client,
    anvil_url: str,
    tmp_path: Path,
) -> None:
    """The gateway process is SIGKILLed right after it started a payment's saga, while that
    call and another payer's call wait (both fail with no HTTP answer at all). Each payer sends
    the same payment again to the restarted gateway. Sent while its saga has not broadcast yet:
    it joins the saga and gets 200 with the skill's data. Sent once its saga settled: 403 with
    the settlement in PAYMENT-RESPONSE (the payment is public by then), and 200 with the data
    once the payer proves itself. Each payment is settled once."""
    settings, worker, chaos_dir, seller = chaos_market
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    gateway = GatewayProcess(
        {**worker.env, "FLEET_HTTP_PORT": str(port), "FLEET_PAYMENT_WAIT_S": "120"},
        tmp_path / "gateway.log",
    )
    token = fusd(settings, anvil_url)
    with db.session_scope(settings.effective_database_url) as session:
        seller_address = session.get(BotRecord, seller).address  # type: ignore[union-attr]
    early, late = dev_account(8), dev_account(9)
    before = {a.address: int(token.functions.balanceOf(a.address).call()) for a in (early, late)}
    path = f"/bots/{seller}/skills/forecast"

    def pay(http: httpx.AsyncClient, header: str, **headers: str) -> Any:
        return http.post(path, json={}, headers={"PAYMENT-SIGNATURE": header, **headers})

    try:
        gateway.start()
        await gateway.ready(base)
        async with httpx.AsyncClient(base_url=base, timeout=180) as http:
            [accepted] = requirements(await http.post(path, json={}))["accepts"]
            late_header, late_nonce = payment_header(late, accepted)
            early_header, early_nonce = payment_header(early, accepted)
            late_id = decode_header(late_header).payment_id
            early_id = decode_header(early_header).payment_id
            # No worker yet: both sagas wait at verify.
            waiting = asyncio.create_task(pay(http, late_header))
            late_saga = saga_handle(dev_client, late_id)
            for _ in range(600):
                with contextlib.suppress(RPCError):
                    await late_saga.describe()
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"the gateway started no saga {late_id}")
            (chaos_dir / f"after_join@{early_id}").touch()
            with pytest.raises(httpx.RemoteProtocolError):  # no status: the process is gone
                await pay(http, early_header)
            assert await gateway.wait_killed() == -9, "after_join was not reached"
            with pytest.raises(httpx.RemoteProtocolError):
                await waiting
            gateway.start()
            await gateway.ready(base)

            again = asyncio.create_task(pay(http, early_header))
            worker.start()
            joined = await again
            assert joined.status_code == 200, joined.text
            assert joined.json()["bot"] == seller
            assert settlement(joined)["success"] is True

            done = await late_saga.result()
            assert done.status is PaymentStatus.SETTLED
            public = await pay(http, late_header)
            assert public.status_code == 403, public.text
            assert settlement(public)["success"] is True
            assert settlement(public)["transaction"] == done.tx_hash
            proof = payer_proof.sign(late.key, 31337, late_id, base)
            answer = await pay(http, late_header, **{payer_proof.HEADER: proof})
            assert answer.status_code == 200, answer.text
            assert answer.json()["bot"] == seller
    finally:
        gateway.stop()

    for payer, nonce in ((early, early_nonce), (late, late_nonce)):
        balance = int(token.functions.balanceOf(payer.address).call())
        assert balance == before[payer.address] - PRICE, payer.address
        assert token.functions.authorizationState(payer.address, bytes.fromhex(nonce[2:])).call()
    assert int(token.functions.balanceOf(seller_address).call()) == 2 * PRICE
    with db.session_scope(settings.effective_database_url) as session:
        rows = session.exec(select(PaymentRecord)).all()
        sent = session.exec(select(ChainTransaction)).all()
    assert sorted((r.payer.lower(), r.status) for r in rows) == sorted(
        (a.address.lower(), "settled") for a in (early, late)
    )
    settlements = [t for t in sent if t.request_id.startswith("payment-")]
    assert sorted(t.tx_hash or "" for t in settlements) == sorted(r.tx_hash or "" for r in rows)
    [relayer] = {r.relayer for r in rows}
    assert token.w3.eth.get_transaction_count(relayer) == 2
    assert not list(chaos_dir.iterdir()), "the armed point fired"
