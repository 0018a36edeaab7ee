"""The one way out to URLs the fleet does not own: a remote bot's ``url`` and the endpoints its
agent card declares (docs/outbound.md says what is allowed and why).

A :class:`UrlRule` decides. Off the local dev stack a URL must be ``https`` and its host must
resolve only to public addresses; on the local dev stack (``FLEET_NETWORK=local`` on a dev chain)
``http`` and loopback are allowed too, so the demo's reference remote bot works; networks an
operator lists in ``FLEET_OUTBOUND_ALLOW`` (their own bots on a private network) are allowed
everywhere. Never: link-local (cloud metadata), unspecified, multicast, reserved or documentation
addresses, credentials in the URL, encoded address forms (``2130706433``, ``127.1``), or an IPv6
wrapper around a refused IPv4 address.

:func:`outbound_client` enforces the rule where the socket is opened (ssrfguard): the host is
resolved once, every answer is checked, and the connection goes to the checked address, so a DNS
answer that changes between check and connect has no gap to slip through; TLS still verifies the
hostname. It follows a redirect only within the same origin. :meth:`UrlRule.check` is the same
rule without I/O, for the edges (CLI, update validators, Telegram), which refuse at once.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import cache
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import httpx
from pydantic import BaseModel, Field, field_validator
from ssrfguard import BlockedURLError, Policy, SSRFGuardError
from ssrfguard.httpx import AsyncClient

from agentfleet.errors import FleetError


class FleetNetwork(Protocol):
    """What the guard reads of the fleet's settings (:class:`agentfleet.settings.Settings`; a
    protocol, since the settings validate ``FLEET_OUTBOUND_ALLOW`` with this module)."""

    @property
    def network(self) -> str: ...
    @property
    def chain_id(self) -> int: ...
    @property
    def outbound_allow(self) -> list[str]: ...


REFUSED = "OutboundRefused"
"""The non-retryable ``ApplicationError`` type of a call the guard refused."""
ALL_PORTS = frozenset(range(1, 65536))
LOOPBACK = ("127.0.0.0/8", "::1/128")
PRIVATE = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
ALLOWABLE = (*LOOPBACK, *PRIVATE)
"""What ``FLEET_OUTBOUND_ALLOW`` may open: loopback, private, shared (CGNAT) and unique-local
ranges. Link-local (where cloud metadata lives) and the rest stay closed whatever it says."""
MAX_REDIRECTS = 3


class OutboundRefused(FleetError):
    """A URL the guard does not call; the message names it and the rule."""


def allowed_networks(values: Iterable[str]) -> list[str]:
    """CIDRs for ``FLEET_OUTBOUND_ALLOW``, normalised; ValueError for one that is not inside
    :data:`ALLOWABLE`."""
    found: list[str] = []
    for value in values:
        try:
            network = ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            raise ValueError(f"{value!r} is not a network (e.g. 10.1.2.0/24)") from None
        if not any(_inside(network, ipaddress.ip_network(outer)) for outer in ALLOWABLE):
            raise ValueError(
                f"{network} is not inside a loopback, private, shared or unique-local range; "
                "only those can be allowed"
            )
        found.append(str(network))
    return found


def _inside(
    inner: ipaddress.IPv4Network | ipaddress.IPv6Network,
    outer: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> bool:
    if isinstance(inner, ipaddress.IPv4Network) and isinstance(outer, ipaddress.IPv4Network):
        return inner.subnet_of(outer)
    if isinstance(inner, ipaddress.IPv6Network) and isinstance(outer, ipaddress.IPv6Network):
        return inner.subnet_of(outer)
    return False


class UrlRule(BaseModel):
    """Which URLs outside the fleet it may call."""

    local: bool = False
    """The local dev stack: ``http`` and loopback allowed."""
    allowed: list[str] = Field(default_factory=list)
    """Networks allowed although not public (``FLEET_OUTBOUND_ALLOW``)."""

    @field_validator("allowed")
    @classmethod
    def _allowable(cls, value: list[str]) -> list[str]:
        return allowed_networks(value)

    @classmethod
    def of(cls, settings: FleetNetwork) -> UrlRule:
        """The rule of the fleet ``settings`` describe."""
        from agentfleet.chain.accounts import DEV_CHAIN_IDS

        local = settings.network == "local" and settings.chain_id in DEV_CHAIN_IDS
        return cls(local=local, allowed=list(settings.outbound_allow))

    def policy(self) -> Policy:
        return _policy(self.local, tuple(self.allowed))

    def check(self, url: str) -> str:
        """``url`` if the rule may call it as written (no DNS lookup: a host name is checked
        again where the connection is made); OutboundRefused with one line otherwise."""
        try:
            target = self.policy().check_url(url)
        except SSRFGuardError as exc:
            raise self.refusal(url, exc) from None
        host = target.host.lower().rstrip(".")
        if not self.local and (host == "localhost" or host.endswith(".localhost")):
            raise OutboundRefused(f"refused to call {url}: {host} is loopback; {self.summary()}")
        return url

    def refusal(self, url: str, exc: SSRFGuardError) -> OutboundRefused:
        # A URL refusal's own text repeats the URL; the others name the address or hops.
        reason = exc.reason if isinstance(exc, BlockedURLError) else str(exc)
        return OutboundRefused(f"refused to call {url}: {reason}; {self.summary()}")

    def summary(self) -> str:
        if self.local:
            return "bot URLs must reach public or loopback addresses, or FLEET_OUTBOUND_ALLOW"
        return (
            "bot URLs must be https to public addresses or FLEET_OUTBOUND_ALLOW (http and "
            "loopback only on the local dev stack)"
        )


ANY_FLEET = UrlRule(local=True, allowed=list(PRIVATE))
"""The widest rule any fleet can have: for a check that does not know which fleet it is in
(a bot entity's update validator given no rule). It still refuses what no fleet may call."""


@cache
def _policy(local: bool, allowed: tuple[str, ...]) -> Policy:
    return Policy(
        allowed_schemes=frozenset({"http", "https"} if local else {"https"}),
        allowed_networks=tuple(
            ipaddress.ip_network(cidr) for cidr in (*(LOOPBACK if local else ()), *allowed)
        ),
        allowed_ports=ALL_PORTS,
        max_redirects=MAX_REDIRECTS,
    )


def origin(url: str) -> str:
    """``scheme://host:port`` of an absolute URL (default ports spelled out)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    port = port or {"http": 80, "https": 443}.get(scheme)
    host = (parts.hostname or "").lower().rstrip(".")
    return f"{scheme}://{host}:{port}"


def on_origin(url: str, base: str, what: str) -> str:
    """``url`` (relative ones resolved against ``base``) if it shares ``base``'s scheme, host and
    port; OutboundRefused naming ``what`` otherwise."""
    absolute = urljoin(base, url)
    if origin(absolute) != origin(base):
        raise OutboundRefused(f"refused to call {absolute}: {what} must stay on {origin(base)}")
    return absolute


class GuardedClient(AsyncClient):
    """ssrfguard's client with our refusal: one OutboundRefused line naming the URL and rule."""

    def __init__(self, rule: UrlRule, **options: Any) -> None:
        super().__init__(policy=rule.policy(), **options)
        self.rule = rule

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        try:
            return await super().send(request, **kwargs)
        except SSRFGuardError as exc:
            raise self.rule.refusal(str(request.url), exc) from None


async def _same_origin_only(response: httpx.Response) -> None:
    if response.has_redirect_location:
        here = str(response.request.url)
        on_origin(response.headers["location"], here, f"a redirect from {here}")


def outbound_client(rule: UrlRule, **options: Any) -> GuardedClient:
    """An httpx client that calls only what ``rule`` allows, checked at connection time, and
    follows redirects within the same origin only. Its refusals raise OutboundRefused."""
    hooks = options.pop("event_hooks", {})
    return GuardedClient(
        rule,
        # Not from the environment: a proxy would resolve the host itself, past the check.
        trust_env=False,
        # SSL_CERT_FILE / SSL_CERT_DIR still name the trusted CAs, as for any httpx client.
        verify=httpx.create_ssl_context(trust_env=True),
        follow_redirects=True,
        event_hooks={**hooks, "response": [_same_origin_only, *hooks.get("response", [])]},
        **options,
    )
