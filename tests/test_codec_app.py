"""The codec endpoint (its own app, behind a token), spoken exactly as the Temporal Web UI and
CLI speak it; and the public HTTP app, which no longer serves it and redacts its error answers."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import HTTPException
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from agentfleet import redaction
from agentfleet.codec import AESGCMCodec
from agentfleet.settings import Settings
from starters.codec.app import create_app
from starters.http.app import create_app as create_public_app

KEY = bytes(range(32))
RPC_KEY = "rpcKey0123456789abcdefXYZ"
SECRET_URL = f"https://rpc.example/v2/{RPC_KEY}"
OTHER_KEY = bytes(range(200, 232))
UI_PORT = 18233
EXTRA_ORIGIN = "https://ui.example.org"
TOKEN = "codec-token-" + "t0k" * 10
WRONG_TOKEN = "codec-token-" + "w0k" * 10
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


# What the Web UI posts: protobuf JSON, bytes as base64 in metadata values and data.
UI_BODY: dict[str, Any] = {
    "payloads": [
        {
            "metadata": {"encoding": _b64(b"json/plain")},
            "data": _b64(b'{"text":"hello from the ui"}'),
        },
        {"metadata": {"encoding": _b64(b"binary/null")}},
    ]
}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No FLEET_* variables or .env from the developer's shell leak into the settings."""
    for name in list(os.environ):
        if name.startswith("FLEET_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield


def _settings(key: bytes | None = KEY, **extra: Any) -> Settings:
    return Settings(
        payload_key=_b64(key) if key is not None else None,
        ui_port=UI_PORT,
        codec_cors_origins=[EXTRA_ORIGIN],
        codec_token=TOKEN,
        **extra,
    )


def _client(settings: Settings) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(settings), raise_app_exceptions=False)
    return httpx.AsyncClient(
        transport=transport, base_url="http://codec.test", headers={"x-namespace": "default"}
    )


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """The codec app as the Web UI calls it: the token in the path."""
    async with _client(_settings()) as client:
        client.base_url = httpx.URL(f"http://codec.test/t/{TOKEN}")
        yield client


@pytest.fixture
async def anonymous() -> AsyncIterator[httpx.AsyncClient]:
    async with _client(_settings()) as client:
        yield client


@pytest.fixture
async def http_without_key() -> AsyncIterator[httpx.AsyncClient]:
    async with _client(_settings(key=None)) as client:
        yield client


async def test_healthz_reports_ok_and_whether_a_codec_is_configured(
    anonymous: httpx.AsyncClient, http_without_key: httpx.AsyncClient
) -> None:
    response = await anonymous.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"ok": True, "codec": True}
    assert (await http_without_key.get("/healthz")).json() == {"ok": True, "codec": False}


# --- who may use it -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/encode", "/decode"])
async def test_the_token_as_a_bearer_header_opens_the_codec(
    anonymous: httpx.AsyncClient, path: str
) -> None:
    sealed = await AESGCMCodec(KEY).encode([Payload(data=b'"x"')])
    body = UI_BODY if path == "/encode" else json_format.MessageToDict(Payloads(payloads=sealed))
    response = await anonymous.post(path, json=body, headers=BEARER)
    assert response.status_code == 200
    assert len(response.json()["payloads"]) == len(body["payloads"])


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": f"Bearer {WRONG_TOKEN}"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
    ],
    ids=["none", "wrong", "truncated", "basic", "no-scheme"],
)
@pytest.mark.parametrize("path", ["/encode", "/decode"])
async def test_without_the_token_the_codec_answers_401_and_decodes_nothing(
    anonymous: httpx.AsyncClient, path: str, headers: dict[str, str]
) -> None:
    sealed = await AESGCMCodec(KEY).encode([Payload(data=b'"the plaintext"')])
    body = json_format.MessageToDict(Payloads(payloads=sealed))
    response = await anonymous.post(path, json=body, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "the plaintext" not in response.text
    assert "payloads" not in response.json()


@pytest.mark.parametrize(
    "path",
    [
        f"/t/{WRONG_TOKEN}/decode",
        f"/t/{TOKEN}x/decode",
        "/t//decode",
        "decode",
        f"/codec/t/{TOKEN}/decode",
    ],
)
async def test_a_wrong_path_token_is_refused(anonymous: httpx.AsyncClient, path: str) -> None:
    response = await anonymous.post(path, json=UI_BODY)
    assert response.status_code in {401, 404}
    assert "payloads" not in response.text


async def test_without_a_key_the_token_is_still_required(
    http_without_key: httpx.AsyncClient,
) -> None:
    assert (await http_without_key.post("/decode", json=UI_BODY)).status_code == 401


def test_a_token_is_generated_once_under_fleet_home_with_mode_600(tmp_path: Path) -> None:
    from agentfleet.codec import codec_token, ui_codec_endpoint

    settings = Settings(home=tmp_path, payload_key=_b64(KEY), codec_port=18330)
    token = codec_token(settings)
    assert len(token) >= 40
    assert (tmp_path / "codec.token").stat().st_mode & 0o777 == 0o600
    assert codec_token(settings) == token
    assert ui_codec_endpoint(settings) == f"http://127.0.0.1:18330/t/{token}"
    assert codec_token(Settings(home=tmp_path, codec_token=TOKEN)) == TOKEN


def test_a_short_codec_token_is_a_settings_error() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="at least 32 characters"):
        Settings(codec_token="short")


# --- the public HTTP app ------------------------------------------------------------------------


@pytest.fixture
async def public() -> AsyncIterator[httpx.AsyncClient]:
    app = create_public_app(_settings(rpc_url=f"https://rpc.example/v2/{RPC_KEY}"))

    @app.get("/test-only/refused")
    async def refused() -> None:
        raise HTTPException(503, f"payments are unavailable: 503 for url {SECRET_URL}")

    @app.get("/test-only/crashed")
    async def crashed() -> None:
        raise ConnectionError(f"Cannot connect: 503, url='{SECRET_URL}'")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://fleet.test") as client:
        yield client
    redaction.reset()


@pytest.mark.parametrize("path", ["encode", "decode", "/encode", "/decode"])
async def test_the_public_app_serves_no_codec(public: httpx.AsyncClient, path: str) -> None:
    sealed = await AESGCMCodec(KEY).encode([Payload(data=b'"the plaintext"')])
    body = json_format.MessageToDict(Payloads(payloads=sealed))
    response = await public.post(path, json=body, headers={"Origin": f"http://127.0.0.1:{UI_PORT}"})
    assert response.status_code in {404, 405}
    assert "the plaintext" not in response.text
    assert "access-control-allow-origin" not in response.headers


async def test_the_public_healthz_still_says_whether_payloads_are_encrypted(
    public: httpx.AsyncClient,
) -> None:
    assert (await public.get("/healthz")).json() == {"ok": True, "codec": True}


async def test_public_error_answers_are_redacted(public: httpx.AsyncClient) -> None:
    refused = await public.get("/test-only/refused")
    assert refused.status_code == 503
    assert refused.json() == {
        "detail": "payments are unavailable: 503 for url https://rpc.example/v2/***"
    }
    crashed = await public.get("/test-only/crashed")
    assert crashed.status_code == 500
    assert crashed.json() == {
        "detail": "internal error: ConnectionError: Cannot connect: 503, "
        "url='https://rpc.example/v2/***'"
    }
    assert RPC_KEY not in refused.text + crashed.text


async def test_encode_then_decode_round_trips_the_web_ui_json_exactly(
    http: httpx.AsyncClient,
) -> None:
    encoded = await http.post("encode", json=UI_BODY)
    assert encoded.status_code == 200
    sealed = encoded.json()["payloads"]
    assert len(sealed) == 2
    for payload in sealed:
        assert base64.b64decode(payload["metadata"]["encoding"]) == b"binary/encrypted"
    assert "hello from the ui" not in base64.b64decode(sealed[0]["data"]).decode("latin-1")

    decoded = await http.post("decode", json=encoded.json(), headers={"x-namespace": "default"})
    assert decoded.status_code == 200
    assert decoded.json() == UI_BODY


async def test_decode_returns_the_original_of_a_payload_sealed_by_the_codec(
    http: httpx.AsyncClient,
) -> None:
    original = Payload(metadata={"encoding": b"json/plain"}, data=b'{"answer":42}')
    sealed = await AESGCMCodec(KEY).encode([original])
    body = json_format.MessageToDict(Payloads(payloads=sealed))

    response = await http.post("decode", json=body)

    assert response.status_code == 200
    decoded = json_format.ParseDict(response.json(), Payloads())
    assert list(decoded.payloads) == [original]


async def test_decode_refuses_payloads_that_are_not_encrypted(http: httpx.AsyncClient) -> None:
    response = await http.post("decode", json=UI_BODY)
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "not encrypted" in detail and "FLEET_PAYLOAD_ACCEPT_PLAINTEXT" in detail
    assert "payloads" not in response.json()


async def test_decode_passes_plaintext_through_while_migrating() -> None:
    async with _client(_settings(payload_accept_plaintext=True)) as client:
        response = await client.post("/decode", json=UI_BODY, headers=BEARER)
    assert response.status_code == 200
    assert response.json() == UI_BODY


async def test_empty_payload_list_gives_an_empty_list(http: httpx.AsyncClient) -> None:
    response = await http.post("decode", json={"payloads": []})
    assert response.status_code == 200
    assert response.json() == {"payloads": []}


@pytest.mark.parametrize(
    "origin",
    [f"http://127.0.0.1:{UI_PORT}", f"http://localhost:{UI_PORT}", EXTRA_ORIGIN],
)
async def test_cors_preflight_from_the_web_ui_origin_is_allowed(
    http: httpx.AsyncClient, origin: str
) -> None:
    response = await http.options(
        "decode",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == origin
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "x-namespace" in response.headers["access-control-allow-headers"].lower()


@pytest.mark.parametrize(
    "origin", ["http://evil.example", f"http://127.0.0.1:{UI_PORT + 1}", "null"]
)
async def test_cors_preflight_from_another_origin_is_refused(
    http: httpx.AsyncClient, origin: str
) -> None:
    response = await http.options(
        "decode",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert response.status_code >= 400
    assert response.headers.get("access-control-allow-origin") != origin
    # A simple request from that origin gets no CORS grant either, so the browser hides the body.
    posted = await http.post("decode", json=UI_BODY, headers={"Origin": origin})
    assert "access-control-allow-origin" not in posted.headers


@pytest.mark.parametrize(
    "content",
    [
        b"this is not json",
        b'{"payloads": "x"}',
        b'{"nope": 1}',
        b"[1, 2]",
        b'{"payloads": [{"metadata": {"encoding": 5}}]}',
        b"\xff\xfe",
        b"null",
        b"5",
    ],
)
@pytest.mark.parametrize("path", ["encode", "decode"])
async def test_malformed_body_is_a_400(http: httpx.AsyncClient, path: str, content: bytes) -> None:
    response = await http.post(path, content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "Payloads JSON" in response.json()["detail"]


@pytest.mark.parametrize("path", ["/encode", "/decode"])
async def test_without_a_payload_key_the_codec_is_404_saying_what_to_set(
    http_without_key: httpx.AsyncClient, path: str
) -> None:
    response = await http_without_key.post(path, json=UI_BODY, headers=BEARER)
    assert response.status_code == 404
    assert "FLEET_PAYLOAD_KEY" in response.json()["detail"]


async def test_payload_sealed_with_another_key_is_a_400_without_key_material(
    http: httpx.AsyncClient,
) -> None:
    original = Payload(metadata={"encoding": b"json/plain"}, data=b'"secret plaintext"')
    sealed = await AESGCMCodec(OTHER_KEY).encode([original])
    body = json_format.MessageToDict(Payloads(payloads=sealed))

    response = await http.post("decode", json=body)

    assert response.status_code == 400
    text = response.text
    assert "could not be decoded" in json.loads(text)["detail"]
    for key in (KEY, OTHER_KEY):
        for shown in (_b64(key), key.hex(), key.hex().upper(), repr(key)):
            assert shown not in text
    assert "secret plaintext" not in text


async def test_tampered_ciphertext_is_a_400(http: httpx.AsyncClient) -> None:
    [sealed] = await AESGCMCodec(KEY).encode([Payload(data=b"x")])
    body = json_format.MessageToDict(Payloads(payloads=[sealed]))
    data = bytearray(base64.b64decode(body["payloads"][0]["data"]))
    data[-1] ^= 0xFF
    body["payloads"][0]["data"] = _b64(bytes(data))

    response = await http.post("decode", json=body)

    assert response.status_code == 400
