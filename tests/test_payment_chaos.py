"""SIGKILL the worker process at every step boundary of a payment saga: after a restart the
payment is settled exactly once (balances and ``authorizationState`` checked on chain), with
exactly one ledger row and one settlement transaction, and the buyer gets the skill's answer."""

from __future__ import annotations

import asyncio
import base64
import json
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
from agentfleet.payments.payload import decode_header
from agentfleet.settings import Settings
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
