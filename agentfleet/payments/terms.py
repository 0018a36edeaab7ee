"""What a seller asks for one call: the x402 terms (``PaymentRequirements`` of the exact EVM
scheme in FleetUSD), and the prices of the skills a bot sells.

A price is in fUSD (``"0.01"``); terms carry token units (10000, 6 decimals). A price of 0 means
free: the call is answered without payment.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agentfleet.bots.model import BotKind, Skill
from agentfleet.messages import GasPolicy

SCHEME = "exact"
X402_VERSION = 2
FUSD_DECIMALS = 6
EIP712_NAME = "FleetUSD"
EIP712_VERSION = "2"
A2A_X402_EXTENSION = "https://github.com/google-agentic-commerce/a2a-x402/blob/main/spec/v0.2"
"""The agent-card extension under which a bot lists its priced skills (a2a-x402 v0.2)."""
A2A_X402_EXTENSIONS = (
    A2A_X402_EXTENSION,
    "https://github.com/google-agentic-commerce/a2a-x402/blob/main/spec/v0.1",
    "https://google-a2a.github.io/A2A/extensions/payments/x402/v0.1",
)
"""Every URI the a2a-x402 extension has been declared under (v0.2, then v0.1's two): a card or a
request naming any of them means the same extension."""
SIGN_MAX_TIMEOUT_S = 300
"""``maxTimeoutSeconds`` assumed when a payload does not say."""
MAX_TIMEOUT_S = 3600
"""The longest ``maxTimeoutSeconds`` this fleet offers or settles for: an authorization valid
for longer is a standing order to pay, not a payment."""
SKILL_RUN_S = 15
"""Upper bound of a skill's run (the saga's activity timeout)."""
CONFIRMATION_S = 15
"""What one confirmation is assumed to take, when terms allow for the settlement's."""
TERMS_SLACK_S = 300
"""What a seller's terms allow beyond the skill's run and the settlement's."""

DEFAULT_PRICES: dict[Skill, Decimal] = {
    Skill.FORECAST: Decimal("0.01"),
    Skill.PERFORMANCE: Decimal("0.005"),
    Skill.SHARE_PATTERN: Decimal("0.005"),
    Skill.STATUS: Decimal("0"),
}
"""fUSD per call of each skill a bot sells over HTTP (a bot's ``prices`` parameter overrides);
0 means free: answered without payment."""
SELLABLE: dict[BotKind, tuple[Skill, ...]] = {
    BotKind.FORECASTER: (Skill.FORECAST, Skill.STATUS, Skill.PERFORMANCE, Skill.SHARE_PATTERN),
    BotKind.PUBLISHER: (Skill.STATUS, Skill.PERFORMANCE),
    BotKind.REMOTE: (),
    BotKind.AGENT: (Skill.STATUS, Skill.PERFORMANCE),
}
"""The skills each built-in kind answers over HTTP (the ones that only read); a remote bot
sells its own."""


class Terms(BaseModel):
    """What a seller asks for one call (x402 ``PaymentRequirements`` of the exact EVM scheme)."""

    model_config = ConfigDict(frozen=True)

    scheme: str = SCHEME
    network: str
    asset: str
    amount: int = Field(ge=0)
    pay_to: str
    max_timeout_seconds: int = Field(default=SIGN_MAX_TIMEOUT_S, gt=0, le=MAX_TIMEOUT_S)
    name: str = EIP712_NAME
    version: str = EIP712_VERSION

    @property
    def chain_id(self) -> int:
        return int(self.network.removeprefix("eip155:"))

    def requirements(self) -> dict[str, Any]:
        """The x402 wire form (camelCase; amounts as decimal strings)."""
        return {
            "scheme": self.scheme,
            "network": self.network,
            "asset": self.asset,
            "amount": str(self.amount),
            "payTo": self.pay_to,
            "maxTimeoutSeconds": self.max_timeout_seconds,
            "extra": {"name": self.name, "version": self.version},
        }


def to_units(amount: Decimal | str | int) -> int:
    """fUSD (``"0.01"``) to token units (10000); ValueError for more than 6 decimals."""
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        raise ValueError(f"not an amount: {amount!r}") from None
    units = value * 10**FUSD_DECIMALS
    if value < 0 or units != units.to_integral_value():
        raise ValueError(f"{amount} fUSD is not a non-negative amount with at most 6 decimals")
    return int(units)


def price_of(kind: BotKind, params: dict[str, Any], skill: Skill) -> int | None:
    """Token units a call of ``skill`` costs at a bot (None: the bot does not sell it)."""
    if skill not in SELLABLE[kind]:
        return None
    prices = params.get("prices") or {}
    return to_units(prices.get(skill.value, DEFAULT_PRICES[skill]))


def seller_terms(
    *, network: str, asset: str, amount: int, pay_to: str, gas: GasPolicy, confirmations: int
) -> Terms:
    """A seller's terms for one call: the authorization must stay valid through the skill's
    run, the settlement's receipt and its confirmations."""
    settle_s = gas.receipt_timeout_s + confirmations * CONFIRMATION_S
    return Terms(
        network=network,
        asset=asset,
        amount=amount,
        pay_to=pay_to,
        max_timeout_seconds=int(SKILL_RUN_S + settle_s + TERMS_SLACK_S),
    )
