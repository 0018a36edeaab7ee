"""Chain benchmark: transactions through the durable path on anvil, vs the same-shape skeleton.

    python bench/chain.py [--runs 20] [--burst 100] [--relayers 1,4] [--json]

A transaction here is a ``TransactionWorkflow`` (simulate, reserve a nonce from the relayer by
signal, sign + record + broadcast + wait for the receipt) sending 1 wei to a fresh address. Its
same-shape skeleton is a workflow with two regular activities, measured on the same dev server in
the same run. Rows: latency one at a time (p50 / p95: request to final outcome, receipt included),
and burst throughput with ``--burst`` transactions at once through 1 and through 4 relayer
accounts. Benchmarks report; they never assert timings.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eth_account import Account
from rich.console import Console

from agentfleet import db, keystore
from agentfleet.chain.transactions import pick_relayer
from agentfleet.messages import TxRequest, TxStatus
from agentfleet.settings import Settings
from bench.cli import at_least, int_list, scratch_home
from bench.skeleton import (
    Figures,
    bench_server,
    dump_json,
    measure,
    measure_skeleton,
    print_table,
    skeleton_worker,
)
from clients.transactions import send_transaction
from starters.stack.devchain import funded_account, private_anvil
from workers.main import running_workers

ACTIVITIES = 2


async def bench(runs: int, burst: int, relayer_counts: list[int], quiet: bool) -> list[Figures]:
    err = Console(stderr=True, quiet=quiet)
    with scratch_home("chain") as (home, _url):
        with private_anvil() as rpc_url:
            settings = Settings(home=home, rpc_url=rpc_url)
            db.upgrade_database(settings.effective_database_url)
            relayers = [
                keystore.store_key(settings, f"bench-relayer-{i}", funded_account(rpc_url).key)
                for i in range(max(relayer_counts))
            ]
            async with bench_server() as client:
                err.print("measuring the skeleton (2 regular activities)")
                queue = f"bench-skeleton-{uuid.uuid4().hex[:6]}"
                async with skeleton_worker(client, queue):
                    skeleton = await measure_skeleton(
                        client,
                        activities=ACTIVITIES,
                        local=False,
                        runs=runs,
                        burst=burst,
                        task_queue=queue,
                    )
                rows = [skeleton]
                async with running_workers(client, settings):
                    for count in relayer_counts:
                        accounts = relayers[:count]
                        tag = uuid.uuid4().hex[:6]

                        async def one(
                            key: str, accounts: list[str] = accounts, tag: str = tag
                        ) -> None:
                            request_id = f"bench-{tag}-{key}"
                            outcome = await send_transaction(
                                client,
                                chain_id=31337,
                                sender=pick_relayer(accounts, request_id),
                                request=TxRequest(
                                    request_id=request_id, to=Account.create().address, value=1
                                ),
                                reorg_window_s=0,
                            )
                            if outcome.status is not TxStatus.CONFIRMED:
                                raise RuntimeError(f"{request_id}: {outcome.error}")

                        err.print(f"measuring transactions through {count} relayer(s)")
                        rows.append(
                            await measure(
                                f"tx via {count} relayer{'s' if count > 1 else ''}",
                                one,
                                shape="regular",
                                activities=ACTIVITIES,
                                runs=runs,
                                burst=burst,
                            )
                        )
        return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=at_least(1), default=20, help="sequential runs for latency")
    parser.add_argument(
        "--burst", type=at_least(1), default=100, help="transactions started at once"
    )
    parser.add_argument(
        "--relayers",
        type=int_list("relayer counts", 1, 16),
        default=[1, 4],
        help="relayer account counts, e.g. 1,4",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    rows = asyncio.run(bench(args.runs, args.burst, args.relayers, quiet=args.json))
    skeleton = rows[0]
    if args.json:
        print(dump_json(rows, baseline=skeleton, benchmark="chain"))
    else:
        print_table(rows, baseline=skeleton, title="Transactions on anvil vs the skeleton")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
