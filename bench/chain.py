"""Chain benchmark: transactions through the durable path on anvil, vs the same-shape skeleton.

    python bench/chain.py [--runs 20] [--burst 100] [--relayers 1,4] [--quick] [--json]

A transaction here is a ``TransactionWorkflow`` (simulate, reserve a nonce from the relayer by
signal, sign + record + broadcast + wait for the receipt) sending 1 wei to a fresh address. Its
same-shape skeleton is a workflow with two regular activities, measured on the same dev server in
the same run. Rows: latency one at a time (p50 / p95: request to final outcome, receipt included),
and burst throughput with ``--burst`` transactions at once through 1 and through 4 relayer
accounts. Benchmarks report; they never assert timings.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python bench/chain.py` puts bench/ on the path, not the repository root.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import uuid
from collections.abc import Sequence

from eth_account import Account

from agentfleet import keystore
from agentfleet.chain.transactions import pick_relayer
from agentfleet.messages import TxRequest, TxStatus
from bench.harness import (
    Figures,
    Options,
    Run,
    Sizes,
    int_list,
    measure,
    print_table,
    scratch_fleet,
)
from bench.shapes import measure_skeleton
from clients.transactions import send_transaction
from starters.stack.devchain import funded_account
from workers.main import running_workers

ACTIVITIES = 2
QUICK = {"runs": 3, "burst": 5}

OPTIONS = Options(__file__, __doc__, quick=QUICK)
OPTIONS.count("--runs", 20, "sequential runs for latency")
OPTIONS.count("--burst", 100, "transactions started at once")
OPTIONS.add_argument(
    "--relayers",
    type=int_list("relayer counts", 1, 16),
    default=[1, 4],
    help="relayer account counts, e.g. 1,4",
)


async def measure_all(args: argparse.Namespace, run: Run) -> list[Figures]:
    """The skeleton, then transactions through each relayer count."""
    sizes = Sizes(args.runs, args.burst)
    async with scratch_fleet("chain", anvil=True) as fleet:
        client, settings = fleet.client, fleet.settings()
        run.report["server"] = fleet.server
        relayers = [
            keystore.store_key(settings, f"bench-relayer-{i}", funded_account(fleet.anvil_url).key)
            for i in range(max(args.relayers))
        ]
        run.err.print("measuring the skeleton (2 regular activities)")
        skeleton = await measure_skeleton(client, activities=ACTIVITIES, local=False, sizes=sizes)
        rows = [skeleton]
        async with running_workers(client, settings):

            async def send(sender: str, request_id: str) -> None:
                outcome = await send_transaction(
                    client,
                    chain_id=31337,
                    sender=sender,
                    request=TxRequest(request_id=request_id, to=Account.create().address, value=1),
                    reorg_window_s=0,
                )
                if outcome.status is not TxStatus.CONFIRMED:
                    raise RuntimeError(f"{request_id}: {outcome.error}")

            for count in args.relayers:
                accounts = relayers[:count]
                tag = uuid.uuid4().hex[:6]

                async def one(key: str, accounts: list[str] = accounts, tag: str = tag) -> None:
                    request_id = f"bench-{tag}-{key}"
                    await send(pick_relayer(accounts, request_id), request_id)

                # Every relayer of the row starts its entity before the row is timed (the
                # warm-up's picks may leave some relayers untouched).
                run.err.print(f"warming {count} relayer(s): one transaction each")
                for index, account in enumerate(accounts):
                    await send(account, f"bench-{tag}-warm-{index}")
                run.err.print(f"measuring transactions through {count} relayer(s)")
                rows.append(
                    await measure(
                        f"tx via {count} relayer{'s' if count > 1 else ''}",
                        one,
                        shape="regular",
                        activities=ACTIVITIES,
                        sizes=sizes,
                    )
                )
    return rows


async def amain(argv: Sequence[str] | None = None) -> int:
    """The benchmark in a running event loop; progress on stderr, the report on stdout."""
    args = OPTIONS.read(argv)
    run = Run("chain", args, quiet=args.json)
    rows = await measure_all(args, run)
    run.report.update(rows=rows, baseline=rows[0])
    title = "Transactions on anvil vs the skeleton"
    return run.finish(tables=lambda: print_table(rows, baseline=rows[0], title=title))


def main(argv: Sequence[str] | None = None) -> int:
    """``python bench/chain.py``: measure and print; returns the exit status."""
    return asyncio.run(amain(argv))


if __name__ == "__main__":
    sys.exit(main())
