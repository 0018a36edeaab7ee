"""A dev chain of one's own: private anvils, funded throwaway accounts, raw JSON-RPC.

For tests and benchmarks (``anvil_setBalance`` exists on dev chains only).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from temporalio.client import Client

from agentfleet import binaries
from agentfleet.ports import free_port as free_port  # where tests and benchmarks take it
from agentfleet.settings import Settings


def rpc(url: str, method: str, *params: Any) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    request = urllib.request.Request(url, body.encode(), {"content-type": "application/json"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        answer = json.load(response)
    if "error" in answer:
        raise RuntimeError(f"{method}: {answer['error']}")
    return answer["result"]


def start_anvil(*extra: str, port: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start an anvil (on ``port`` or a free one) and return it once it answers JSON-RPC."""
    port = port or free_port()
    proc = subprocess.Popen(  # noqa: S603 - our anvil binary, our arguments
        [str(binaries.anvil()), "--host", "127.0.0.1", "--port", str(port), "--silent", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            rpc(url, "eth_chainId")
            return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)


@contextmanager
def private_anvil(*extra: str) -> Iterator[str]:
    """An anvil of one's own (for tests that reorg or reset the chain)."""
    proc, url = start_anvil(*extra)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def funded_account(url: str, wei: int = 10**20) -> LocalAccount:
    account: LocalAccount = Account.create()
    rpc(url, "anvil_setBalance", account.address, hex(wei))
    return account


async def prepare_fleet(client: Client, settings: Settings, anvil_url: str) -> None:
    """A dev chain ready for bots: our contracts deployed by the settings' deployer, and a
    funded relayer (``relayer-0``) holding fUSD to fund bots from, every transaction through the
    durable path (a worker for the workflow and chain queues must run). Tests and benchmarks."""
    if settings.deployer_key is None:
        raise ValueError("settings.deployer_key is required")
    from web3 import Web3

    from agentfleet import keystore
    from agentfleet.chain import artifacts
    from agentfleet.chain.deployment.deployer import keep_deployer_key
    from agentfleet.chain.networks import profile
    from agentfleet.messages import TxRequest, TxStatus
    from clients.deployment import ensure
    from clients.transactions import send_transaction

    deployer: LocalAccount = Account.from_key(settings.deployer_key.get_secret_value())
    deployment = (await ensure(client, settings, profile("local"))).deployment
    keep_deployer_key(settings, deployer)
    relayer = funded_account(anvil_url)
    keystore.store_key(settings, "relayer-0", relayer.key)
    token = Web3().eth.contract(abi=artifacts.load("FleetUSD").abi)
    outcome = await send_transaction(
        client,
        chain_id=settings.chain_id,
        sender=deployer.address,
        request=TxRequest(
            request_id=f"fund-relayer-{relayer.address.lower()}",
            to=deployment.address("FleetUSD"),
            data=token.encode_abi("mint", args=[relayer.address, 10**12]),
        ),
        reorg_window_s=0,
    )
    if outcome.status is not TxStatus.CONFIRMED:
        raise RuntimeError(f"minting fUSD for the relayer failed: {outcome.error}")
