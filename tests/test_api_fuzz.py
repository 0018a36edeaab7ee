"""The HTTP app's OpenAPI document describes the API well enough for a schema-driven fuzzer:
schemathesis runs its coverage, fuzzing and stateful phases (a bounded number of examples per
operation) against the real stack, with a facilitator key, and finds no failure: no 5xx, no
status code, header or body the document does not promise, no invalid input accepted."""

from __future__ import annotations

import asyncio
import os
import sysconfig
from pathlib import Path

from agentfleet.payments import facilitator_keys
from tests.test_payments import Market, market, served

__all__ = ["market"]  # the fixture, imported to be used here

SCHEMATHESIS = str(Path(sysconfig.get_path("scripts")) / "schemathesis")
CONFIG = Path(__file__).parent / "schemathesis.toml"


async def test_a_schema_driven_fuzzer_finds_no_failure(market: Market, tmp_path: Path) -> None:
    key, _ = facilitator_keys.add_key(
        market.settings.effective_database_url, "fuzzer", pay_to=["*"]
    )
    config = tmp_path / "schemathesis.toml"
    # Calls name the market's seller, so they reach the payment path, not only "no such bot".
    config.write_text(CONFIG.read_text() + f'\n[parameters]\nname = "{market.seller}"\n')
    async with served(market.app) as url:
        fuzzer = await asyncio.create_subprocess_exec(
            SCHEMATHESIS,
            "--config-file",
            str(config),
            "run",
            f"{url}/openapi.json",
            "--header",
            f"Authorization: Bearer {key}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=tmp_path,
            env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""},
        )
        output, _ = await asyncio.wait_for(fuzzer.communicate(), timeout=600)
    report = output.decode(errors="replace")
    assert fuzzer.returncode == 0, report[-6000:]
