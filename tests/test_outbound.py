"""The outbound guard (agentfleet/netguard.py) on the calls that reach it: remote bots' skills,
their agent cards' endpoints, redirects, buyers' calls to sellers, and the edges that register a
remote bot.

Every target that must not be called is a real listener on loopback that counts accepted
connections: a refusal means zero connections, not merely an error. Nothing here sends a packet
anywhere but loopback (private and link-local addresses are only ever refused before a connect).
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import ActivityEnvironment
from typer.testing import CliRunner

from activities.purchases import PurchaseActivities
from activities.skills import SkillActivities
from agentfleet import db
from agentfleet.bots.model import BotKind, BotRef, BotSpec, BotStatus, Skill, SkillCall, SkillResult
from agentfleet.errors import FleetError
from agentfleet.models import BotRecord
from agentfleet.netguard import ANY_FLEET, OutboundRefused, UrlRule, outbound_client
from agentfleet.payments.purchases import PaidCall, PurchaseRequest
from agentfleet.payments.terms import A2A_X402_EXTENSION
from agentfleet.settings import Settings
from clients.bots import create_bot
from starters.cli.main import app

Route = Callable[[str, bytes], tuple[int, dict[str, str], Any]]
"""``(method, body) -> (status, headers, JSON body)``."""


class Listener:
    """An HTTP(S) server on a loopback address that counts every connection it accepts and
    answers ``routes`` by path (404 otherwise)."""

    def __init__(
        self,
        routes: dict[str, Route] | None = None,
        host: str = "127.0.0.1",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.routes = routes or {}
        self.connections = 0
        self.requests: list[str] = []
        listener = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> tuple[Any, Any]:
                sock, address = super().get_request()
                listener.connections += 1
                if tls is not None:
                    sock = tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                return sock, address

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                size = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(size) if size else b""
                listener.requests.append(f"{self.command} {self.path}")
                route = listener.routes.get(self.path)
                status, headers, payload = route(self.command, body) if route else (404, {}, {})
                data = json.dumps(payload).encode()
                self.send_response(status)
                for key, value in {**headers, "content-type": "application/json"}.items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = Server((host, 0), Handler)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listen() -> Iterator[Callable[..., Listener]]:
    started: list[Listener] = []

    def start(*args: Any, **kwargs: Any) -> Listener:
        started.append(Listener(*args, **kwargs))
        return started[-1]

    yield start
    for listener in started:
        listener.close()


def card(url: str = "/a2a", **extra: Any) -> Route:
    body = {"name": "t", "url": url, "skills": [{"id": "status"}], **extra}
    return lambda _method, _body: (200, {}, body)


def answer(_method: str, _body: bytes) -> tuple[int, dict[str, str], Any]:
    data = {"bot": "t", "answered": True}
    result = {"kind": "message", "parts": [{"kind": "data", "data": data}]}
    return 200, {}, {"jsonrpc": "2.0", "id": "1", "result": result}


def redirect(to: str) -> Route:
    return lambda _method, _body: (307, {"location": to}, {})


CARD = "/.well-known/agent-card.json"
LOCAL = {"home": Path("."), "database_url": "sqlite://"}


def remote(url: str) -> BotRef:
    return BotRef(name="r1", kind=BotKind.REMOTE, status=BotStatus.ACTIVE, params={"url": url})


async def status_of(settings: Settings, url: str) -> SkillResult:
    skills = SkillActivities(settings)
    try:
        result: SkillResult = await ActivityEnvironment().run(
            skills.run_skill, SkillCall(bot=remote(url), skill=Skill.STATUS)
        )
    finally:
        await skills.close()
    return result


def test_the_rule_refuses_what_no_fleet_may_call_and_loopback_off_the_local_stack() -> None:
    production, local = UrlRule(local=False), UrlRule(local=True)
    never = [
        "https://169.254.169.254/latest/meta-data/",
        "https://[fe80::1]/",
        "https://0.0.0.0/",
        "https://[::]/",
        "https://224.0.0.1/",
        "https://[::ffff:169.254.169.254]/",
        "https://2130706433/",
        "https://127.1/",
        "https://user:pass@bot.example.org/",
        "ftp://bot.example.org/",
        "file:///etc/passwd",
    ]
    for url in never:
        for rule in (production, local, ANY_FLEET):
            with pytest.raises(OutboundRefused, match="refused to call"):
                rule.check(url)
    private = [
        "https://10.0.0.7/",
        "https://192.168.1.1/",
        "https://100.64.0.1/",
        "https://[fd00::1]/",
    ]
    for url in private:
        for rule in (production, local):
            with pytest.raises(OutboundRefused):
                rule.check(url)
        assert ANY_FLEET.check(url) == url
    for url in ["http://127.0.0.1:8310", "https://localhost/", "https://[::1]/", "http://x.org/"]:
        assert local.check(url) == url
        with pytest.raises(OutboundRefused):
            production.check(url)
    assert (
        production.check("https://bot.example.org:8443/a2a") == "https://bot.example.org:8443/a2a"
    )

    assert UrlRule.of(Settings(**LOCAL)).local
    assert not UrlRule.of(Settings(**LOCAL, network="amoy")).local
    assert not UrlRule.of(Settings(**LOCAL, chain_id=80002)).local  # FLEET_NETWORK unset in compose
    allowed = UrlRule.of(Settings(**LOCAL, network="amoy", outbound_allow="10.1.2.0/24"))
    assert allowed.check("https://10.1.2.3/") == "https://10.1.2.3/"
    with pytest.raises(OutboundRefused):
        allowed.check("https://10.1.3.3/")
    for bad in ("169.254.0.0/16", "8.8.8.0/24", "not-a-network"):
        with pytest.raises(ValueError, match="FLEET_OUTBOUND_ALLOW|outbound_allow"):
            Settings(**LOCAL, outbound_allow=bad)


async def test_a_remote_bot_on_loopback_is_never_called_off_the_local_stack(
    listen: Callable[..., Listener],
) -> None:
    target = listen({CARD: card(), "/a2a": answer})
    port = target.url.rsplit(":", 1)[1]
    production = Settings(**LOCAL, network="amoy")
    for url in (
        target.url,
        f"https://127.0.0.1:{port}",
        f"https://localhost:{port}",
        f"https://[::ffff:127.0.0.1]:{port}",
    ):
        result = await status_of(production, url)
        assert not result.ok and "refused to call" in (result.error or ""), result
    assert target.connections == 0

    # The check is made where the socket opens: a name is refused for what it resolves to.
    async with outbound_client(UrlRule(local=False)) as http:
        for name in ("localhost", "0x7f000001"):
            with pytest.raises(OutboundRefused, match="127.0.0.1 is not permitted"):
                await http.get(f"https://{name}:{port}/")
    assert target.connections == 0

    on_the_dev_stack = await status_of(Settings(**LOCAL), target.url)
    assert on_the_dev_stack.ok and on_the_dev_stack.data["answered"] is True


@pytest.mark.parametrize(
    "declares",
    [
        {"url": "{other}/a2a"},
        {"url": "/a2a", "supportedInterfaces": [{"url": "{other}/rpc", "protocolBinding": "GRPC"}]},
        {"url": "/a2a", "additionalInterfaces": [{"url": "{other}/rpc", "transport": "JSONRPC"}]},
        {
            "url": "/a2a",
            "capabilities": {
                "extensions": [{"params": {"skills": {"x": {"endpoint": "{other}"}}}}]
            },
        },
        {"supportedInterfaces": [{"url": "{other}/rpc", "protocolBinding": "JSONRPC"}]},
    ],
)
async def test_an_endpoint_off_the_cards_origin_is_refused_and_never_called(
    declares: dict[str, Any], listen: Callable[..., Listener]
) -> None:
    other = listen({"/a2a": answer, "/rpc": answer})
    filled = json.loads(json.dumps(declares).replace("{other}", other.url))
    bot = listen(
        {
            CARD: lambda _m, _b: (200, {}, {"name": "t", "skills": [{"id": "status"}], **filled}),
            "/a2a": answer,
        }
    )
    result = await status_of(Settings(**LOCAL), bot.url)
    assert not result.ok
    assert f"refused to call {other.url}" in (result.error or "")
    assert "must stay on http://127.0.0.1:" in (result.error or "")
    assert other.connections == 0 and bot.requests == [f"GET {CARD}"]


async def test_a_card_speaking_a2a_1_0_is_called_on_its_own_origin(
    listen: Callable[..., Listener],
) -> None:
    bot = listen({"/a2a": answer})
    bot.routes[CARD] = lambda _m, _b: (
        200,
        {},
        {
            "name": "t",
            "skills": [{"id": "status"}],
            "supportedInterfaces": [{"url": f"{bot.url}/a2a", "protocolBinding": "JSONRPC"}],
        },
    )
    result = await status_of(Settings(**LOCAL), bot.url)
    assert result.ok, result.error


async def test_redirects_are_followed_within_the_origin_only(
    listen: Callable[..., Listener],
) -> None:
    elsewhere = listen({CARD: card(), "/a2a": answer})
    bot = listen(
        {
            "/moved" + CARD: redirect(CARD),
            CARD: card(),
            "/a2a": answer,
            "/away" + CARD: redirect(f"{elsewhere.url}{CARD}"),
        }
    )
    moved = await status_of(Settings(**LOCAL), f"{bot.url}/moved")
    assert moved.ok, moved.error
    away = await status_of(Settings(**LOCAL), f"{bot.url}/away")
    assert not away.ok
    assert f"refused to call {elsewhere.url}{CARD}: a redirect from {bot.url}/away" in (
        away.error or ""
    )
    assert elsewhere.connections == 0


@pytest.fixture
def tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """A server context for 127.0.0.2 from a test CA the client trusts (SSL_CERT_FILE)."""
    authority = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.2").configure_cert(context)
    return context


async def test_an_https_bot_on_an_allowed_network_answers_and_its_redirect_to_loopback_is_refused(
    listen: Callable[..., Listener], tls: ssl.SSLContext
) -> None:
    loopback = listen({CARD: card(), "/a2a": answer})
    bot = listen(
        {CARD: card(), "/a2a": answer, "/away" + CARD: redirect(f"{loopback.url}{CARD}")},
        host="127.0.0.2",
        tls=tls,
    )
    production = Settings(**LOCAL, network="amoy", outbound_allow="127.0.0.2/32")
    answered = await status_of(production, bot.url)
    assert answered.ok and answered.data["answered"] is True, answered.error
    away = await status_of(production, f"{bot.url}/away")
    assert not away.ok and f"refused to call {loopback.url}{CARD}" in (away.error or "")
    direct = await status_of(production, "https://127.0.0.1:" + loopback.url.rsplit(":", 1)[1])
    assert not direct.ok and "Loopback" in (direct.error or "")
    assert loopback.connections == 0


def seller_rows(url: str) -> None:
    with db.session_scope(url) as session:
        for name, agent in (("buyer-1", 1), ("seller-1", 2)):
            session.add(
                BotRecord(
                    name=name,
                    kind="forecaster",
                    owner="fleet",
                    status="active",
                    address="0x" + f"{agent:040x}",
                    agent_id=agent,
                )
            )
        session.commit()


async def test_a_buyer_calls_only_its_own_fleets_http_app(
    migrated_database_url: str, listen: Callable[..., Listener], tmp_path: Path
) -> None:
    elsewhere = listen()
    seller_card = {
        "name": "seller-1",
        "capabilities": {
            "extensions": [
                {
                    "uri": A2A_X402_EXTENSION,
                    "params": {"skills": {"forecast": {"endpoint": f"{elsewhere.url}/pay"}}},
                }
            ]
        },
    }
    settling = {"status_url": f"{elsewhere.url}/payments/p-1"}
    app_routes: dict[str, Route] = {
        "/bots/seller-1/.well-known/agent-card.json": lambda _m, _b: (200, {}, seller_card),
        "/bots/seller-1/skills/forecast": lambda _m, _b: (202, {}, settling),
    }
    own_app = listen(app_routes)
    seller_rows(migrated_database_url)
    settings = Settings(
        home=tmp_path,
        database_url=migrated_database_url,
        http_port=int(own_app.url.rsplit(":", 1)[1]),
    )
    purchases = PurchaseActivities(settings)
    env = ActivityEnvironment()
    try:
        with pytest.raises(ApplicationError) as offer:
            await env.run(
                purchases.discover_offer,
                PurchaseRequest(
                    purchase_id="purchase-t1",
                    buyer="buyer-1",
                    seller="seller-1",
                    skill=Skill.FORECAST,
                ),
            )
        assert offer.value.type == "OutboundRefused" and offer.value.non_retryable
        assert f"refused to call {elsewhere.url}/pay" in offer.value.message
        header = base64.b64encode(b"{}").decode()
        for endpoint, refused in (
            (f"{own_app.url}/bots/seller-1/skills/forecast", f"{elsewhere.url}/payments/p-1"),
            (f"{elsewhere.url}/pay", f"{elsewhere.url}/pay"),
        ):
            with pytest.raises(ApplicationError) as paid:
                await env.run(
                    purchases.call_paid_skill,
                    PaidCall(purchase_id="purchase-t1", endpoint=endpoint, header=header),
                )
            assert paid.value.type == "OutboundRefused" and paid.value.non_retryable
            assert f"refused to call {refused}" in paid.value.message
    finally:
        await purchases.close()
    assert elsewhere.connections == 0


async def never_started(client: Client, workflow_id: str) -> None:
    with pytest.raises(RPCError) as found:
        await client.get_workflow_handle(workflow_id).describe()
    assert found.value.status is RPCStatusCode.NOT_FOUND


async def test_registering_a_remote_bot_with_a_url_the_fleet_may_not_call_starts_nothing(
    dev_client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"r-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("FLEET_HOME", str(tmp_path))
    monkeypatch.setenv("FLEET_NETWORK", "amoy")
    monkeypatch.setenv("FLEET_TEMPORAL_ADDRESS", dev_client.service_client.config.target_host)
    argv = ["bot", "create", name, "--kind", "remote", "--param", "url=http://127.0.0.1:8310"]
    result = await asyncio.to_thread(CliRunner().invoke, app, [*argv, "--no-wait"])
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: invalid remote parameters: url: refused to call"), line
    assert "https to public addresses" in line

    production = UrlRule(local=False)
    for url in ("http://127.0.0.1:8310", "https://localhost:8310", "https://10.0.0.7/"):
        spec = BotSpec(name=name, kind=BotKind.REMOTE, params={"url": url})
        with pytest.raises(FleetError, match="invalid remote parameters: url: refused to call"):
            await create_bot(dev_client, spec, production)
    for url in ("https://169.254.169.254/", "https://[fe80::1]:8443/"):
        spec = BotSpec(name=name, kind=BotKind.REMOTE, params={"url": url})
        with pytest.raises(FleetError, match="refused to call"):
            await create_bot(dev_client, spec)
    await never_started(dev_client, f"bot-{name}")
