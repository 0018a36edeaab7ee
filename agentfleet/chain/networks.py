"""Chain profiles: which EVM network ``FLEET_NETWORK`` names and how carefully to treat it.

=========  ========  =============  =====================================================
profile    chain id  confirmations  why
=========  ========  =============  =====================================================
local      31337     0              anvil mines each transaction at once and never reorgs
polygon    137       64             ~2 min of 2 s blocks: deeper than the reorgs Polygon PoS
                                    has shown before milestone finality; real money moves
amoy       80002     5              Polygon's testnet: a shallow reorg costs nothing real,
                                    a short wait keeps tests and demos quick
fuji       43113     2              Avalanche (Snowman) blocks are final once accepted; one
                                    more block covers RPC nodes behind a load balancer
=========  ========  =============  =====================================================

Gas policies cap what a transaction may pay (``max_fee_gwei``), tip validators (Polygon enforces a
minimum tip of 25-30 gwei; Avalanche needs little), and say when a pending transaction counts as
stuck and is replaced with fees raised by ``bump_percent`` (nodes accept a replacement only at 10 %
or more above the original).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from agentfleet.errors import FleetError
from agentfleet.messages import GasPolicy
from agentfleet.settings import LOOPBACK, NETWORK_CHAIN_IDS, Settings


class ChainProfile(BaseModel):
    """Everything agentfleet needs to know about one EVM network besides its RPC URL."""

    model_config = ConfigDict(frozen=True)

    name: str
    chain_id: int = Field(gt=0)
    confirmations: int = Field(ge=0)
    gas: GasPolicy
    native_symbol: str = "ETH"
    is_dev: bool = False

    @property
    def caip2(self) -> str:
        """The CAIP-2 id (``eip155:<chain id>``) x402 and agent cards use for this network."""
        return f"eip155:{self.chain_id}"


PROFILES: dict[str, ChainProfile] = {
    p.name: p
    for p in (
        ChainProfile(
            name="local",
            chain_id=NETWORK_CHAIN_IDS["local"],
            confirmations=0,
            gas=GasPolicy(
                max_fee_gwei=100.0,
                priority_fee_gwei=1.0,
                bump_percent=15,
                stuck_after_s=5.0,
                receipt_timeout_s=30.0,
            ),
            is_dev=True,
        ),
        ChainProfile(
            name="polygon",
            chain_id=NETWORK_CHAIN_IDS["polygon"],
            confirmations=64,
            gas=GasPolicy(
                max_fee_gwei=1000.0,
                priority_fee_gwei=30.0,
                bump_percent=15,
                stuck_after_s=30.0,
                receipt_timeout_s=300.0,
            ),
            native_symbol="POL",
        ),
        ChainProfile(
            name="amoy",
            chain_id=NETWORK_CHAIN_IDS["amoy"],
            confirmations=5,
            gas=GasPolicy(
                max_fee_gwei=500.0,
                priority_fee_gwei=30.0,
                bump_percent=15,
                stuck_after_s=30.0,
                receipt_timeout_s=300.0,
            ),
            native_symbol="POL",
        ),
        ChainProfile(
            name="fuji",
            chain_id=NETWORK_CHAIN_IDS["fuji"],
            confirmations=2,
            gas=GasPolicy(
                max_fee_gwei=200.0,
                priority_fee_gwei=2.0,
                bump_percent=15,
                stuck_after_s=10.0,
                receipt_timeout_s=120.0,
            ),
            native_symbol="AVAX",
        ),
    )
}


def profile(name: str) -> ChainProfile:
    """The profile called ``name``; a one-line FleetError naming the valid ones otherwise."""
    try:
        return PROFILES[name.strip().lower()].model_copy(deep=True)
    except KeyError:
        raise FleetError(
            f"unknown network {name!r}; choose one of: {', '.join(PROFILES)}"
        ) from None


def active_profile(settings: Settings) -> ChainProfile:
    """The profile ``FLEET_NETWORK`` selects (its receipt timeout ``FLEET_RECEIPT_TIMEOUT_S``
    when set)."""
    chosen = profile(settings.network)
    if settings.receipt_timeout_s is not None:
        gas = chosen.gas.model_copy(update={"receipt_timeout_s": settings.receipt_timeout_s})
        chosen = chosen.model_copy(update={"gas": gas})
    return chosen


def expected_chain_id(settings: Settings, chain: ChainProfile) -> int:
    """The chain id the RPC must report: the profile's, or ``FLEET_CHAIN_ID`` on the local anvil."""
    return settings.chain_id if chain.is_dev else chain.chain_id


def effective_confirmations(settings: Settings, chain: ChainProfile | None = None) -> int:
    """``FLEET_CONFIRMATIONS`` when set, else the profile's depth."""
    if settings.confirmations is not None:
        return settings.confirmations
    return (chain or active_profile(settings)).confirmations


def rpc_url(settings: Settings, chain: ChainProfile | None = None) -> str:
    """The RPC URL for ``chain``: ``FLEET_RPC_URL`` (the one every fleet process uses), else the
    embedded anvil for the local profile; FleetError otherwise."""
    chain = chain or active_profile(settings)
    if settings.rpc_url:
        return settings.rpc_url
    if chain.is_dev:
        return f"http://{LOOPBACK}:{settings.anvil_port}"
    raise FleetError(f"no RPC URL for {chain.name}: set FLEET_RPC_URL (or pass --rpc-url)")


def display_url(url: str) -> str:
    """``scheme://host:port`` of an RPC URL, with ``/...`` for a path: hosted RPC URLs often
    carry an API key in their path or query, which must not reach logs or terminals."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return "<invalid URL>"
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    rest = "/..." if parts.path.strip("/") or parts.query else ""
    return f"{parts.scheme}://{host}{rest}"
