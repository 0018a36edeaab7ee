"""What model tokens cost: fUSD per million input and output tokens, by model
(``FLEET_MODEL_PRICES``). Kept apart from :mod:`agentfleet.agents.model` so the settings, which
every process reads first, import nothing more than pydantic for it."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class ModelPrice(BaseModel):
    """fUSD per million tokens."""

    model_config = ConfigDict(extra="forbid")

    input: Annotated[Decimal, Field(ge=0, le=1000)]
    output: Annotated[Decimal, Field(ge=0, le=1000)]

    def units(self, input_tokens: int, output_tokens: int) -> int:
        """Cost in token units (micro-fUSD), rounded up: a call never costs nothing."""
        micro = self.input * input_tokens + self.output * output_tokens  # fUSD/M * tokens
        # fUSD/M-tokens * tokens = micro-fUSD exactly (10^6 units per fUSD, 10^6 tokens per M).
        whole = int(micro)
        return whole + (1 if micro > whole else 0)


DEFAULT_MODEL_PRICES: dict[str, ModelPrice] = {
    "gpt-4o-mini": ModelPrice(input=Decimal("0.15"), output=Decimal("0.60")),
    "gpt-4o": ModelPrice(input=Decimal("2.50"), output=Decimal("10.00")),
    "gpt-4.1-mini": ModelPrice(input=Decimal("0.40"), output=Decimal("1.60")),
    "gemma3-270m": ModelPrice(input=Decimal("0"), output=Decimal("0")),
}
