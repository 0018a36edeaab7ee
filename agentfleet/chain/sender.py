"""Sending one transaction so that a crash at any point never sends it twice or loses it.

The order is the whole design: the signed raw transaction and its hash are written to the
database *before* broadcast, so a retry after a crash re-sends the very same bytes (or finds them
mined) instead of signing something new. A transaction not mined within ``stuck_after_s`` is
re-signed at the same nonce with bumped fees (both hashes recorded; whichever is mined wins).
After the receipt, the block must be ``confirmations`` deep and still canonical; a receipt that
disappears (a reorg) sends the recorded bytes again. Called from an activity, which heartbeats.

A transaction is simulated right before its first signature: one that would revert (an
authorization cancelled or spent since it was verified, a balance gone) is never broadcast.
Its nonce, already reserved, is filled by a no-op (a zero-value transfer to the sender itself)
so the account's later transactions are not stuck behind a gap; the outcome is ``failed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from sqlmodel import Session, select
from web3 import AsyncWeb3
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError

from agentfleet import db
from agentfleet.chaos import chaos_point
from agentfleet.messages import SendTx, TxOutcome, TxStatus
from agentfleet.models import ChainTransaction, utcnow

GWEI = 10**9
POLL_S = 0.1
HEAD_WAIT_S = 1.0
"""A transaction waiting for its receipt looks for it at least this often, head moved or not."""
FILLER_GAS = 21_000

Heartbeat = Callable[..., None]


def _row(session: Session, request_id: str) -> ChainTransaction:
    row = session.get(ChainTransaction, request_id)
    if row is None:
        raise LookupError(f"transaction {request_id} is not recorded")
    return row


class ChainHead:
    """The latest block number of one connection, polled every ``POLL_S`` by one task while
    anyone waits for it to move: every transaction waiting for its receipt shares that one
    ``eth_blockNumber`` poll and looks for its receipt once per new block."""

    def __init__(self, w3: AsyncWeb3[Any]) -> None:
        self.w3 = w3
        self.loop = asyncio.get_running_loop()
        self.number: int | None = None
        self._moved = asyncio.Event()
        self._waiting = 0
        self._task: asyncio.Task[None] | None = None

    async def moved(self, seen: int | None, within_s: float) -> None:
        """Return once the head is no longer ``seen`` (at once if it moved already), or after
        ``within_s`` seconds."""
        self._waiting += 1
        try:
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._poll())
            if self.number != seen:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._moved.wait(), within_s)
        finally:
            self._waiting -= 1

    async def _poll(self) -> None:
        while self._waiting:
            number = self.number
            with contextlib.suppress(Exception):  # the waiters look again once their wait is over
                number = int(await self.w3.eth.block_number)
            if number != self.number:
                self.number = number
                moved, self._moved = self._moved, asyncio.Event()
                moved.set()
            await asyncio.sleep(POLL_S)


_heads: dict[tuple[int, int], ChainHead] = {}


def chain_head(w3: AsyncWeb3[Any]) -> ChainHead:
    """The :class:`ChainHead` of ``w3`` on the running event loop (one per connection)."""
    loop = asyncio.get_running_loop()
    key = (id(w3), id(loop))
    head = _heads.get(key)
    if head is None or head.w3 is not w3 or head.loop is not loop:
        head = _heads[key] = ChainHead(w3)
    return head


class NonceTakenError(Exception):
    """The nonce was used by a transaction this system did not record: it cannot be re-sent."""


class TransactionSender:
    def __init__(self, w3: AsyncWeb3[Any], database_url: str, account: LocalAccount) -> None:
        self.w3 = w3
        self.url = database_url
        self.account = account

    async def send(self, order: SendTx, heartbeat: Heartbeat) -> TxOutcome:
        record = await asyncio.to_thread(self._load_or_create, order)
        if record.status == TxStatus.FAILED.value:
            return self._outcome(record, order)
        deadline = time.monotonic() + order.policy.receipt_timeout_s
        while True:
            fresh = not record.attempts
            if fresh:
                revert = await self._would_revert(record)
                record = await self._sign_attempt(record, order, bump=False, revert=revert)
            # A signature made just now cannot be mined yet: only a retry looks first.
            mined = None if fresh else await self._find_receipt(record)
            if mined is None:
                await self._broadcast(record)
                chaos_point("after_broadcast", record.request_id)
                mined = await self._wait_receipt(record, order, heartbeat, deadline)
            if mined is None:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"no receipt for {record.request_id} (nonce {record.nonce}) within "
                        f"{order.policy.receipt_timeout_s:.0f} s; hashes {self._hashes(record)}"
                    )
                record = await self._sign_attempt(record, order, bump=True)
                continue
            final = await self._confirm(record, order, mined, heartbeat)
            if final is not None:
                chaos_point("after_confirmation", record.request_id)
                return self._outcome(final, order)
            record = await asyncio.to_thread(self._reload, record.request_id)

    def _load_or_create(self, order: SendTx) -> ChainTransaction:
        with db.session_scope(self.url) as session:
            record = session.get(ChainTransaction, order.request.request_id)
            if record is not None:
                if record.nonce != order.nonce or record.sender != order.sender:
                    raise ValueError(
                        f"{record.request_id} is recorded with nonce {record.nonce} from "
                        f"{record.sender}, not nonce {order.nonce} from {order.sender}"
                    )
                return record
            request = order.request
            record = ChainTransaction(
                request_id=request.request_id,
                chain_id=order.chain_id,
                sender=order.sender,
                nonce=order.nonce,
                to=request.to,
                value=str(request.value),
                data=request.data,
                gas_limit=request.gas_limit or 0,
                status="prepared",
            )
            session.add(record)
            return record

    def _reload(self, request_id: str) -> ChainTransaction:
        with db.session_scope(self.url) as session:
            return _row(session, request_id)

    async def _fees(self, record: ChainTransaction, order: SendTx, bump: bool) -> tuple[int, int]:
        policy = order.policy
        cap = int(policy.max_fee_gwei * GWEI)
        if bump and record.attempts:
            last = record.attempts[-1]
            factor = 100 + policy.bump_percent
            priority = int(last["max_priority_fee"]) * factor // 100 + 1
            max_fee = int(last["max_fee"]) * factor // 100 + 1
        else:
            block = await self.w3.eth.get_block("latest")
            base = int(block.get("baseFeePerGas", 0) or 0)
            priority = int(policy.priority_fee_gwei * GWEI)
            max_fee = 2 * base + priority
        if max_fee > cap:
            max_fee = max(cap, priority)
        return min(priority, max_fee), max_fee

    async def _would_revert(self, record: ChainTransaction) -> str | None:
        """Why the transaction would revert if sent now (None: it would not)."""
        call: dict[str, Any] = {
            "from": record.sender,
            "value": int(record.value),
            "data": record.data,
        }
        if record.to is not None:
            call["to"] = AsyncWeb3.to_checksum_address(record.to)
        try:
            await self.w3.eth.call(call)  # type: ignore[arg-type]
        except ContractLogicError as exc:
            return str(exc.message or exc) or "execution reverted"
        return None

    async def _sign_attempt(
        self, record: ChainTransaction, order: SendTx, bump: bool, revert: str | None = None
    ) -> ChainTransaction:
        """Sign the next attempt: the transaction itself, or (``revert``, or a filler signed
        before) a no-op that fills its nonce."""
        filler = revert is not None or bool(record.attempts and record.attempts[-1].get("filler"))
        priority, max_fee = await self._fees(record, order, bump)
        tx: dict[str, Any] = {
            "chainId": order.chain_id,
            "nonce": record.nonce,
            "to": record.sender if filler else record.to,
            "value": 0 if filler else int(record.value),
            "data": "0x" if filler else record.data,
            "gas": FILLER_GAS if filler else record.gas_limit,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": priority,
            "type": 2,
        }
        if tx["to"] is None:
            del tx["to"]
        signed = self.account.sign_transaction(tx)
        attempt: dict[str, Any] = {
            "hash": AsyncWeb3.to_hex(signed.hash),
            "raw": AsyncWeb3.to_hex(signed.raw_transaction),
            "max_fee": max_fee,
            "max_priority_fee": priority,
            "signed_at": utcnow().isoformat(),
        }
        if filler:
            attempt["filler"] = True

        def save() -> ChainTransaction:
            with db.session_scope(self.url) as session:
                row = _row(session, record.request_id)
                row.attempts = [*row.attempts, attempt]
                row.tx_hash = str(attempt["hash"])
                row.status = "signed"
                if revert is not None:
                    row.error = (
                        f"not sent: it would revert ({revert}); nonce {row.nonce} was filled "
                        "by a no-op transaction instead"
                    )
                row.updated_at = utcnow()
                session.add(row)
                return row

        saved = await asyncio.to_thread(save)
        chaos_point("after_sign", record.request_id)
        return saved

    async def _broadcast(self, record: ChainTransaction) -> None:
        raw = record.attempts[-1]["raw"]
        try:
            await self.w3.eth.send_raw_transaction(HexBytes(raw))
        except Web3RPCError as exc:
            message = str(exc).lower()
            if "already" in message or "known" in message or "underpriced" in message:
                return
            if "nonce too low" in message:
                if await self._find_receipt(record) is None:
                    chain_nonce = await self.w3.eth.get_transaction_count(self.account.address)
                    if chain_nonce > record.nonce:
                        raise NonceTakenError(
                            f"nonce {record.nonce} of {record.sender} was used by a transaction "
                            "agentfleet did not record"
                        ) from exc
                return
            raise
        await asyncio.to_thread(self._set_status, record.request_id, "broadcast")

    def _set_status(self, request_id: str, status: str, **fields: Any) -> ChainTransaction:
        with db.session_scope(self.url) as session:
            row = _row(session, request_id)
            row.status = status
            for name, value in fields.items():
                setattr(row, name, value)
            row.updated_at = utcnow()
            session.add(row)
            return row

    @staticmethod
    def _is_filler(record: ChainTransaction, tx_hash: str) -> bool:
        return any(a["hash"] == tx_hash and a.get("filler") for a in record.attempts)

    @staticmethod
    def _hashes(record: ChainTransaction) -> list[str]:
        return [str(a["hash"]) for a in record.attempts]

    async def _find_receipt(self, record: ChainTransaction) -> Any | None:
        for tx_hash in reversed(self._hashes(record)):
            try:
                receipt = await self.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
            except TransactionNotFound:
                continue
            if receipt is not None and receipt.get("blockNumber") is not None:
                return receipt
        return None

    async def _wait_receipt(
        self, record: ChainTransaction, order: SendTx, heartbeat: Heartbeat, deadline: float
    ) -> Any | None:
        """Look for a receipt at once (a dev chain mines at once), then each time the chain's
        head moves (:class:`ChainHead`), and at least every ``HEAD_WAIT_S``."""
        stuck_at = min(time.monotonic() + order.policy.stuck_after_s, deadline)
        head = chain_head(self.w3)
        while time.monotonic() < stuck_at:
            seen = head.number
            receipt = await self._find_receipt(record)
            if receipt is not None:
                return receipt
            heartbeat(record.tx_hash)
            await head.moved(seen, min(HEAD_WAIT_S, max(0.0, stuck_at - time.monotonic())))
        return None

    async def _confirm(
        self, record: ChainTransaction, order: SendTx, receipt: Any, heartbeat: Heartbeat
    ) -> ChainTransaction | None:
        """Wait for depth, then check the block is still canonical; None after a reorg."""
        block_number = int(receipt["blockNumber"])
        block_hash = AsyncWeb3.to_hex(receipt["blockHash"])
        tx_hash = AsyncWeb3.to_hex(receipt["transactionHash"])
        mined = {
            "tx_hash": tx_hash,
            "block_number": block_number,
            "block_hash": block_hash,
            "gas_used": int(receipt["gasUsed"]),
        }
        status = TxStatus.CONFIRMED if int(receipt["status"]) == 1 else TxStatus.FAILED
        error = None if status is TxStatus.CONFIRMED else "transaction reverted"
        if self._is_filler(record, tx_hash):
            status, error = TxStatus.FAILED, record.error or "filled by a no-op"
        if order.confirmations == 0:
            # Depth 0: final now, one write (the relayer's reorg window checks it later).
            return await asyncio.to_thread(
                self._set_status, record.request_id, status.value, error=error, **mined
            )
        await asyncio.to_thread(self._set_status, record.request_id, "mined", **mined)
        while order.confirmations and (
            await self.w3.eth.block_number < block_number + order.confirmations
        ):
            heartbeat(tx_hash)
            await asyncio.sleep(POLL_S)
        again = await self._find_receipt(record)
        canonical = await self._block_hash(block_number)
        if (
            again is None
            or AsyncWeb3.to_hex(again["blockHash"]) != block_hash
            or (canonical != block_hash)
        ):
            await self._mark_reorged(record)
            return None
        return await asyncio.to_thread(
            self._set_status, record.request_id, status.value, error=error
        )

    async def _mark_reorged(self, record: ChainTransaction) -> None:
        """The mined block left the canonical chain: forget it, count it, send again."""
        await asyncio.to_thread(
            self._set_status,
            record.request_id,
            "reorged",
            reorgs=record.reorgs + 1,
            block_number=None,
            block_hash=None,
        )

    async def _block_hash(self, number: int) -> str | None:
        try:
            block = await self.w3.eth.get_block(number)
        except Exception:  # noqa: BLE001 - a block that vanished is what we are checking for
            return None
        block_hash = block.get("hash")
        return AsyncWeb3.to_hex(block_hash) if block_hash is not None else None

    async def verify(self, order: SendTx) -> TxOutcome | None:
        """Re-check a finished transaction: its outcome, or None if a reorg dropped it."""
        record = await asyncio.to_thread(self._reload, order.request.request_id)
        if record.status != TxStatus.CONFIRMED.value or record.block_number is None:
            return None
        canonical = await self._block_hash(record.block_number)
        receipt = await self._find_receipt(record)
        if (
            receipt is not None
            and canonical == record.block_hash
            and (AsyncWeb3.to_hex(receipt["blockHash"]) == record.block_hash)
        ):
            return self._outcome(record, order)
        await self._mark_reorged(record)
        return None

    def _outcome(self, record: ChainTransaction, order: SendTx) -> TxOutcome:
        return TxOutcome(
            request_id=record.request_id,
            status=TxStatus(record.status),
            sender=record.sender,
            nonce=record.nonce,
            tx_hash=record.tx_hash,
            block_number=record.block_number,
            block_hash=record.block_hash,
            gas_used=record.gas_used,
            confirmations=order.confirmations,
            reorgs=record.reorgs,
            error=record.error,
        )


def recorded(database_url: str, request_id: str) -> ChainTransaction | None:
    with db.session_scope(database_url) as session:
        return session.exec(
            select(ChainTransaction).where(ChainTransaction.request_id == request_id)
        ).first()


def highest_recorded_nonce(database_url: str, chain_id: int, sender: str) -> int | None:
    from sqlalchemy import func

    with db.session_scope(database_url) as session:
        value = session.exec(
            select(func.max(ChainTransaction.nonce)).where(
                ChainTransaction.chain_id == chain_id, ChainTransaction.sender == sender
            )
        ).first()
        return int(value) if value is not None else None


ORPHANED = "orphaned"


def orphan_recorded_from(database_url: str, chain_id: int, sender: str, nonce: int) -> int:
    """A dev chain was reset: the recorded transactions of ``sender`` from ``nonce`` on exist on
    no chain any more. They are kept (status ``orphaned``, nonce stored as ``-1 - nonce``) so the
    nonces are free again. Returns how many. Never called for a real network."""
    from sqlalchemy import func

    with db.session_scope(database_url) as session:
        rows = session.exec(
            select(ChainTransaction).where(
                ChainTransaction.chain_id == chain_id,
                func.lower(ChainTransaction.sender) == sender.lower(),
                ChainTransaction.nonce >= nonce,
            )
        ).all()
        for row in rows:
            row.status = ORPHANED
            row.error = f"dev chain reset: nonce {row.nonce} no longer exists"
            row.nonce = -1 - row.nonce
            row.updated_at = utcnow()
            session.add(row)
        session.commit()
        return len(rows)
