"""One async web3 connection per activity object: opened on first use, closed with the worker."""

from __future__ import annotations

from typing import Any

from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.types import RPCEndpoint

RPC_TIMEOUT_S = 10


class Web3Connection:
    def __init__(self, url: str) -> None:
        self.url = url
        self._w3: AsyncWeb3[Any] | None = None

    def get(self) -> AsyncWeb3[Any]:
        if self._w3 is None:
            # web3's request validation asks eth_chainId before every call, estimate and send
            # (6 times a payment): the chain id of an endpoint does not change, so it is kept.
            provider = AsyncHTTPProvider(
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
