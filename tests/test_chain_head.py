"""Transactions waiting for receipts share one poll of the chain's head: a waiter wakes when a
block is mined, at once when the head moved since it last looked, and after its wait otherwise."""

from __future__ import annotations

import time

from agentfleet.chain.rpc import Web3Connection
from agentfleet.chain.sender import ChainHead, chain_head
from starters.stack.devchain import private_anvil, rpc


async def test_waiters_wake_when_a_block_is_mined_and_share_one_head() -> None:
    with private_anvil() as url:
        connection = Web3Connection(url)
        try:
            w3 = connection.get()
            head = chain_head(w3)
            assert chain_head(w3) is head, "one head per connection"

            await head.moved(None, 30)  # the first poll tells the head
            seen = head.number
            assert seen is not None
            started = time.monotonic()
            await head.moved(seen, 0.3)
            assert head.number == seen, "no block mined: the wait ran out"
            assert time.monotonic() - started >= 0.25

            rpc(url, "evm_setIntervalMining", 1)
            started = time.monotonic()
            await head.moved(seen, 30)
            assert head.number is not None and head.number > seen
            assert time.monotonic() - started < 15, "woken by the block, not by the 30 s wait"

            started = time.monotonic()
            await head.moved(seen, 30)
            assert time.monotonic() - started < 1, "the head moved since: no wait"
        finally:
            await connection.close()


async def test_a_head_survives_rpc_errors_and_its_waiters_still_return() -> None:
    connection = Web3Connection("http://127.0.0.1:9")  # nothing listens: every poll fails
    try:
        head = ChainHead(connection.get())
        await head.moved(None, 0.3)
        assert head.number is None
    finally:
        await connection.close()
