"""A dev chain of one's own: private anvils, funded throwaway accounts, raw JSON-RPC.

For tests and benchmarks (``anvil_setBalance`` exists on dev chains only).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from agentfleet import binaries
from agentfleet.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def prepare_fleet(settings: Settings, anvil_url: str) -> None:
    """A dev chain ready for bots: our contracts deployed by the settings' deployer, and a
    funded relayer (``relayer-0``) holding fUSD to fund bots from. Tests and benchmarks."""
    if settings.deployer_key is None:
        raise ValueError("settings.deployer_key is required")
    from web3 import Web3  # noqa: PLC0415

    from agentfleet import keystore  # noqa: PLC0415
    from agentfleet.chain import artifacts  # noqa: PLC0415
    from agentfleet.chain.networks import profile  # noqa: PLC0415
    from agentfleet.deployment import ensure  # noqa: PLC0415

    deployer = Account.from_key(settings.deployer_key.get_secret_value())
    deployment = ensure(settings, profile("local")).deployment
    relayer = funded_account(anvil_url)
    keystore.store_key(settings, "relayer-0", relayer.key)
    w3 = Web3(Web3.HTTPProvider(anvil_url))
    token = w3.eth.contract(
        address=Web3.to_checksum_address(deployment.address("FleetUSD")),
        abi=artifacts.load("FleetUSD").abi,
    )
    mint = token.functions.mint(relayer.address, 10**12).build_transaction(
        {"from": deployer.address, "nonce": w3.eth.get_transaction_count(deployer.address)}
    )
    sent = w3.eth.send_raw_transaction(deployer.sign_transaction(mint).raw_transaction)
    if w3.eth.wait_for_transaction_receipt(sent)["status"] != 1:
        raise RuntimeError("minting fUSD for the relayer failed")
