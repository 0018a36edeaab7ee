"""Chain activities (web3.py async API). Signing activities arrive with the chain layer."""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError
from web3 import AsyncHTTPProvider, AsyncWeb3

from agentfleet.messages import ChainHead, ChainHeadRequest
from agentfleet.settings import Settings


class ChainActivities:
    def __init__(self, settings: Settings) -> None:
        self._rpc_url = settings.effective_rpc_url
        self._expected_chain_id = settings.chain_id

    @activity.defn(name="chain_head")
    async def chain_head(self, _request: ChainHeadRequest) -> ChainHead:
        """The chain id and latest block; a chain id other than the configured one cannot heal."""
        provider = AsyncHTTPProvider(self._rpc_url, request_kwargs={"timeout": 10})
        w3 = AsyncWeb3(provider)
        try:
            chain_id = await w3.eth.chain_id
            if chain_id != self._expected_chain_id:
                raise ApplicationError(
                    f"RPC at {self._rpc_url} serves chain {chain_id}, "
                    f"expected {self._expected_chain_id}",
                    type="WrongChain",
                    non_retryable=True,
                )
            return ChainHead(chain_id=chain_id, block_number=await w3.eth.block_number)
        finally:
            await provider.disconnect()
