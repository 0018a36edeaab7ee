"""One async web3 connection per activity object: opened on first use, closed with the worker."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import ClientSession, TCPConnector
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.types import RPCEndpoint

RPC_TIMEOUT_S = 10
KEEPALIVE_S = 10.0
"""Idle connections to the node are kept this long (anvil keeps them longer)."""


class KeepAliveHTTPProvider(AsyncHTTPProvider):
    """web3's own aiohttp session closes the TCP connection after every request; a payment
    makes about seven RPCs, so this one keeps connections to the node open (per event loop:
    web3 replaces a session whose loop has closed)."""

    _installed_on: asyncio.AbstractEventLoop | None = None

    async def _make_request(self, method: RPCEndpoint, request_data: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        if self._installed_on is not loop:
            self._installed_on = loop
            await self.cache_async_session(
                ClientSession(
                    raise_for_status=True,
                    connector=TCPConnector(keepalive_timeout=KEEPALIVE_S),
                )
            )
        return await super()._make_request(method, request_data)


class Web3Connection:
    def __init__(self, url: str) -> None:
        self.url = url
        self._w3: AsyncWeb3[Any] | None = None

    def get(self) -> AsyncWeb3[Any]:
        if self._w3 is None:
            # web3's request validation asks eth_chainId before every call, estimate and send
            # (6 times a payment): the chain id of an endpoint does not change, so it is kept.
            provider = KeepAliveHTTPProvider(
                self.url,
                request_kwargs={"timeout": RPC_TIMEOUT_S},
                cache_allowed_requests=True,
                cacheable_requests={RPCEndpoint("eth_chainId")},
                request_cache_validation_threshold=None,  # else each store re-asks the id
            )
            self._w3 = AsyncWeb3(provider)
        return self._w3

    async def close(self) -> None:
        if self._w3 is not None:
            await self._w3.provider.disconnect()
            self._w3 = None
