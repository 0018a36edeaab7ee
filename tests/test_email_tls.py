"""Email through a relay that demands STARTTLS and a login, as company relays do: a real aiosmtpd
server with a certificate from a CA of its own (``FLEET_SMTP_CA_FILE``), refusing AUTH before TLS.
The password goes only over the encrypted session, a wrong one is a one-line refusal that never
quotes it, and a certificate the fleet does not trust stops the send before any login."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agentfleet.channels import NotSent, Refused, send
from agentfleet.content.model import (
    MAX_LENGTH,
    ChannelConfig,
    ChannelKind,
    OutboundMessage,
    default_limit,
)
from agentfleet.settings import Settings
from sandbox import free_port

LOGIN, PASSWORD = "herald", "relay-password-7f3e"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[str, ec.EllipticCurvePrivateKey]
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer[0]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def make_ca(folder: Path, name: str) -> tuple[Path, tuple[str, ec.EllipticCurvePrivateKey]]:
    """A self-signed CA: its PEM file and what signs with it."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _certificate(name, key, (name, key))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = folder / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, (name, key)


def server_context(folder: Path, ca: tuple[str, ec.EllipticCurvePrivateKey]) -> ssl.SSLContext:
    """The relay's TLS context: a certificate for 127.0.0.1 signed by ``ca``."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _certificate("relay.test", key, ca)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca[1], hashes.SHA256())
    )
    cert_path, key_path = folder / "relay.pem", folder / "relay.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context


@dataclass
class Relay:
    """What the relay saw: logins tried (with whether TLS was on) and mails accepted."""

    port: int
    logins: list[tuple[str, bool, bool]] = field(default_factory=list)
    mails: list[tuple[str, bool, str | None]] = field(default_factory=list)

    def authenticate(
        self, server: SMTPServer, session: Session, _envelope: Envelope, _mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        ok = (data.login, data.password) == (LOGIN.encode(), PASSWORD.encode())
        self.logins.append((data.login.decode(), session.ssl is not None, ok))
        return AuthResult(success=ok, handled=False, auth_data=data)

    async def handle_DATA(self, _server: SMTPServer, session: Session, envelope: Envelope) -> str:
        auth = session.auth_data
        login = auth.login.decode() if isinstance(auth, LoginPassword) else None
        self.mails.append((",".join(envelope.rcpt_tos), session.ssl is not None, login))
        return "250 OK"


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[Relay, Path]]:
    """A STARTTLS-only relay that wants a login; yields it and the PEM file of its CA."""
    ca_file, ca = make_ca(tmp_path, "relay-ca")
    relay = Relay(port=free_port())
    controller = Controller(
        relay,
        hostname="127.0.0.1",
        port=relay.port,
        tls_context=server_context(tmp_path, ca),
        require_starttls=True,
        authenticator=relay.authenticate,
        auth_required=True,
        auth_require_tls=True,
    )
    controller.start()
    try:
        yield relay, ca_file
    finally:
        controller.stop()


def settings_for(relay: Relay, home: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "home": home,
        "smtp_host": "127.0.0.1",
        "smtp_port": relay.port,
        "smtp_starttls": True,
        "smtp_username": LOGIN,
        "smtp_password": PASSWORD,
        "smtp_from": "herald@fleet.test",
        "channel_timeout_s": 5.0,
    }
    return Settings(**(values | overrides))


CHANNEL = ChannelConfig(
    name="news-mail",
    kind=ChannelKind.EMAIL,
    target="reader@example.com",
    limit=default_limit(ChannelKind.EMAIL, "reader@example.com"),
    max_length=MAX_LENGTH[ChannelKind.EMAIL],
)
MESSAGE = OutboundMessage(
    content_id="item-tls",
    bot="herald-bot",
    text="Release 2.0 is out.",
    idempotency_key="item-tls:news-mail",
)


async def test_starttls_then_login_delivers_over_the_encrypted_session(
    relay: tuple[Relay, Path], tmp_path: Path
) -> None:
    server, ca_file = relay
    receipt = await send(CHANNEL, MESSAGE, settings_for(server, tmp_path, smtp_ca_file=ca_file))

    assert receipt.detail == {"to": "reader@example.com", "server": f"127.0.0.1:{server.port}"}
    assert server.logins == [(LOGIN, True, True)]  # one login, after STARTTLS, accepted
    assert server.mails == [("reader@example.com", True, LOGIN)]


async def test_a_wrong_password_is_refused_in_one_line_that_never_quotes_it(
    relay: tuple[Relay, Path], tmp_path: Path
) -> None:
    server, ca_file = relay
    wrong = "not-the-relay-password"
    settings = settings_for(server, tmp_path, smtp_ca_file=ca_file, smtp_password=wrong)

    with pytest.raises(Refused, match="535") as refused:
        await send(CHANNEL, MESSAGE, settings)

    assert "\n" not in str(refused.value) and wrong not in str(refused.value)
    assert server.logins, "no login was tried"
    assert all(tls and not ok for _, tls, ok in server.logins) and server.mails == []


async def test_a_relay_certificate_the_fleet_does_not_trust_stops_the_send_before_any_login(
    relay: tuple[Relay, Path], tmp_path: Path
) -> None:
    server, _ = relay
    other_ca, _ = make_ca(tmp_path, "someone-else")

    for settings in (
        settings_for(server, tmp_path),  # the system's CAs do not know the relay's
        settings_for(server, tmp_path, smtp_ca_file=other_ca),
    ):
        with pytest.raises(NotSent, match="TLS certificate is not trusted") as stopped:
            await send(CHANNEL, MESSAGE, settings)
        assert "FLEET_SMTP_CA_FILE" in str(stopped.value)
        assert "\n" not in str(stopped.value) and PASSWORD not in str(stopped.value)

    assert server.logins == [] and server.mails == []


async def test_without_starttls_no_password_crosses_in_clear_and_the_error_says_why(
    relay: tuple[Relay, Path], tmp_path: Path
) -> None:
    server, _ = relay

    with pytest.raises(NotSent, match="AUTH extension is not supported.*STARTTLS") as stopped:
        await send(CHANNEL, MESSAGE, settings_for(server, tmp_path, smtp_starttls=False))
    assert PASSWORD not in str(stopped.value)

    assert server.logins == [] and server.mails == []
