"""Chain activities (web3.py async API): reads, and sending through the durable path.

Signing keys are loaded here from the encrypted keystore by address; payloads carry addresses and
hashes only. Errors a retry cannot fix are non-retryable ``ApplicationError`` types:
``WrongChain``, ``TransactionWouldRevert``, ``NonceTaken``, ``UnknownSender``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from web3 import AsyncWeb3
from web3.exceptions import ContractLogicError

from agentfleet import keystore, taskqueues
from agentfleet.chain.accounts import DEV_CHAIN_IDS
from agentfleet.chain.rpc import Web3Connection
from agentfleet.chain.sender import (
    NonceTakenError,
    TransactionSender,
    highest_recorded_nonce,
    orphan_recorded_from,
)
from agentfleet.errors import FleetError
from agentfleet.messages import (
    ChainHead,
    ChainHeadRequest,
    EnsureRelayer,
    NonceQuery,
    PreparedTx,
    PrepareTx,
    SendTx,
    TxFinished,
    TxOrder,
    TxOutcome,
)
from agentfleet.settings import Settings
from clients.relayers import NonceDesk, hand_to_relayer

GAS_HEADROOM_PERCENT = 20


class ChainActivities:
    task_queue = taskqueues.CHAIN

    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self._settings = settings
        self._client = client
        self._rpc_url = settings.effective_rpc_url
        self._expected_chain_id = settings.chain_id
        self._rpc = Web3Connection(settings.effective_rpc_url)
        self._verified_chain: int | None = None
        self._desks: dict[tuple[int, str], NonceDesk] = {}

    async def close(self) -> None:
        await self._rpc.close()

    async def _check_chain(self, chain_id: int | None = None) -> int:
        """The RPC's chain id must be the expected one (asked once per process, then cached)."""
        expected = chain_id if chain_id is not None else self._expected_chain_id
        if self._verified_chain == expected:
            return expected
        actual = await self._rpc.get().eth.chain_id
        if actual == expected:
            self._verified_chain = actual
        else:
            raise ApplicationError(
                f"RPC at {self._rpc_url} serves chain {actual}, expected {expected}",
                type="WrongChain",
                non_retryable=True,
            )
        return int(actual)

    @activity.defn(name="chain_head")
    async def chain_head(self, _request: ChainHeadRequest) -> ChainHead:
        """The chain id and latest block; a chain id other than the configured one cannot heal."""
        chain_id = await self._check_chain()
        return ChainHead(chain_id=chain_id, block_number=await self._rpc.get().eth.block_number)

    @activity.defn(name="read_account_nonce")
    async def read_account_nonce(self, query: NonceQuery) -> int:
        """The next nonce of ``sender``: the chain's pending count, or past what we recorded."""
        await self._check_chain(query.chain_id)
        pending = await self._rpc.get().eth.get_transaction_count(
            AsyncWeb3.to_checksum_address(query.sender), "pending"
        )
        if query.chain_only:
            if query.chain_id not in DEV_CHAIN_IDS:
                raise ApplicationError(
                    "a relayer re-reads its nonce from the chain alone on a dev chain only",
                    type="NotADevChain",
                    non_retryable=True,
                )
            await asyncio.to_thread(
                orphan_recorded_from,
                self._settings.effective_database_url,
                query.chain_id,
                AsyncWeb3.to_checksum_address(query.sender),
                int(pending),
            )
            return int(pending)
        recorded = await asyncio.to_thread(
            highest_recorded_nonce,
            self._settings.effective_database_url,
            query.chain_id,
            query.sender,
        )
        return max(int(pending), (recorded + 1) if recorded is not None else 0)

    @activity.defn(name="ensure_relayer")
    async def ensure_relayer(self, request: EnsureRelayer) -> None:
        """Start the sender's relayer entity if it is not running (idempotent)."""
        from clients.relayers import ensure_relayer

        await ensure_relayer(self._client or activity.client(), request.chain_id, request.sender)

    @activity.defn(name="prepare_transaction")
    async def prepare_transaction(self, order: PrepareTx) -> PreparedTx:
        """Simulate and estimate gas before a nonce is spent: a revert fails here, for good."""
        await self._check_chain(order.chain_id)
        request = order.request
        tx: dict[str, Any] = {
            "from": AsyncWeb3.to_checksum_address(order.sender),
            "value": request.value,
            "data": request.data,
        }
        if request.to is not None:
            tx["to"] = AsyncWeb3.to_checksum_address(request.to)
        try:
            estimate = await self._rpc.get().eth.estimate_gas(tx)  # type: ignore[arg-type]
        except ContractLogicError as exc:
            raise ApplicationError(
                f"transaction would revert: {exc.message or exc}",
                type="TransactionWouldRevert",
                non_retryable=True,
            ) from exc
        return PreparedTx(gas_limit=int(estimate) * (100 + GAS_HEADROOM_PERCENT) // 100)

    @activity.defn(name="send_transaction")
    async def send_transaction(self, order: SendTx) -> TxOutcome:
        """Sign (recorded before broadcast), broadcast, wait for the receipt and the depth."""
        await self._check_chain(order.chain_id)
        sender = await self._sender(order.sender)
        try:
            return await sender.send(order, activity.heartbeat)
        except NonceTakenError as exc:
            raise ApplicationError(str(exc), type="NonceTaken", non_retryable=True) from exc

    @activity.defn(name="send_with_relayer")
    async def send_with_relayer(self, order: TxOrder) -> TxOutcome:
        """A whole transaction in one activity (``workflows.transactions.send_by_activity``): the
        simulation when no gas limit is given (a revert spends no nonce), the request's nonce
        from the relayer entity, then sign (recorded before broadcast), broadcast, confirm, and
        the outcome handed to the relayer. A retry gets the same nonce and the recorded bytes."""
        await self._check_chain(order.chain_id)
        request = order.request
        if request.gas_limit is None:
            prepared = await self.prepare_transaction(
                PrepareTx(chain_id=order.chain_id, sender=order.sender, request=request)
            )
            request = request.model_copy(update={"gas_limit": prepared.gas_limit})
        client = self._client or activity.client()
        nonce = await self._desk(client, order.chain_id, order.sender).reserve(request.request_id)
        sender = await self._sender(order.sender)
        try:
            outcome = await sender.send(order.to_send(nonce, request), activity.heartbeat)
        except NonceTakenError as exc:
            raise ApplicationError(str(exc), type="NonceTaken", non_retryable=True) from exc
        await hand_to_relayer(
            client, TxFinished(order=order.model_copy(update={"request": request}), outcome=outcome)
        )
        return outcome

    @activity.defn(name="verify_transaction")
    async def verify_transaction(self, order: SendTx) -> TxOutcome | None:
        """Is a finished transaction still in the canonical chain? None if a reorg dropped it."""
        await self._check_chain(order.chain_id)
        return await (await self._sender(order.sender)).verify(order)

    def _desk(self, client: Client, chain_id: int, sender: str) -> NonceDesk:
        """This process's line to the relayer of ``sender`` (reservations batched per update)."""
        key = (chain_id, sender.lower())
        desk = self._desks.get(key)
        if desk is None:
            desk = self._desks[key] = NonceDesk(client, chain_id, sender)
        return desk

    async def _sender(self, address: str) -> TransactionSender:
        """The key is read from the database and decrypted (scrypt) off the event loop: this
        loop also runs every other chain activity's I/O."""
        try:
            account = await asyncio.to_thread(keystore.load_account, self._settings, address)
        except FleetError as exc:
            raise ApplicationError(str(exc), type="UnknownSender", non_retryable=True) from exc
        return TransactionSender(self._rpc.get(), self._settings.effective_database_url, account)
