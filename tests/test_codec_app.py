"""The HTTP app's remote codec endpoints, spoken exactly as the Temporal Web UI speaks them."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from agentfleet.codec import AESGCMCodec
from agentfleet.settings import Settings
from starters.http.app import create_app

KEY = bytes(range(32))
OTHER_KEY = bytes(range(200, 232))
UI_PORT = 18233
EXTRA_ORIGIN = "https://ui.example.org"


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


def _settings(key: bytes | None = KEY) -> Settings:
    return Settings(
        payload_key=_b64(key) if key is not None else None,
        ui_port=UI_PORT,
        codec_cors_origins=[EXTRA_ORIGIN],
    )


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(_settings()))
    async with httpx.AsyncClient(transport=transport, base_url="http://fleet.test") as client:
        yield client


@pytest.fixture
async def http_without_key() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(_settings(key=None)))
    async with httpx.AsyncClient(transport=transport, base_url="http://fleet.test") as client:
        yield client


async def test_healthz_reports_ok_and_whether_a_codec_is_configured(
    http: httpx.AsyncClient, http_without_key: httpx.AsyncClient
) -> None:
    response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"ok": True, "codec": True}
    assert (await http_without_key.get("/healthz")).json() == {"ok": True, "codec": False}


async def test_encode_then_decode_round_trips_the_web_ui_json_exactly(
    http: httpx.AsyncClient,
) -> None:
    encoded = await http.post("/codec/encode", json=UI_BODY)
    assert encoded.status_code == 200
    sealed = encoded.json()["payloads"]
    assert len(sealed) == 2
    for payload in sealed:
        assert base64.b64decode(payload["metadata"]["encoding"]) == b"binary/encrypted"
    assert "hello from the ui" not in base64.b64decode(sealed[0]["data"]).decode("latin-1")

    decoded = await http.post(
        "/codec/decode", json=encoded.json(), headers={"x-namespace": "default"}
    )
    assert decoded.status_code == 200
    assert decoded.json() == UI_BODY


async def test_decode_returns_the_original_of_a_payload_sealed_by_the_codec(
    http: httpx.AsyncClient,
) -> None:
    original = Payload(metadata={"encoding": b"json/plain"}, data=b'{"answer":42}')
    sealed = await AESGCMCodec(KEY).encode([original])
    body = json_format.MessageToDict(Payloads(payloads=sealed))

    response = await http.post("/codec/decode", json=body)

    assert response.status_code == 200
    decoded = json_format.ParseDict(response.json(), Payloads())
    assert list(decoded.payloads) == [original]


async def test_decode_passes_payloads_it_did_not_encrypt_through(http: httpx.AsyncClient) -> None:
    response = await http.post("/codec/decode", json=UI_BODY)
    assert response.status_code == 200
    assert response.json() == UI_BODY


async def test_empty_payload_list_gives_an_empty_list(http: httpx.AsyncClient) -> None:
    response = await http.post("/codec/decode", json={"payloads": []})
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
        "/codec/decode",
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
        "/codec/decode",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert response.status_code >= 400
    assert response.headers.get("access-control-allow-origin") != origin
    # A simple request from that origin gets no CORS grant either, so the browser hides the body.
    posted = await http.post("/codec/decode", json=UI_BODY, headers={"Origin": origin})
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
@pytest.mark.parametrize("path", ["/codec/encode", "/codec/decode"])
async def test_malformed_body_is_a_400(http: httpx.AsyncClient, path: str, content: bytes) -> None:
    transport = httpx.ASGITransport(app=create_app(_settings()), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://fleet.test") as client:
        response = await client.post(
            path, content=content, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    assert "Payloads JSON" in response.json()["detail"]


@pytest.mark.parametrize("path", ["/codec/encode", "/codec/decode"])
async def test_without_a_payload_key_the_codec_is_404_saying_what_to_set(
    http_without_key: httpx.AsyncClient, path: str
) -> None:
    response = await http_without_key.post(path, json=UI_BODY)
    assert response.status_code == 404
    assert "FLEET_PAYLOAD_KEY" in response.json()["detail"]


async def test_payload_sealed_with_another_key_is_a_400_without_key_material(
    http: httpx.AsyncClient,
) -> None:
    original = Payload(metadata={"encoding": b"json/plain"}, data=b'"secret plaintext"')
    sealed = await AESGCMCodec(OTHER_KEY).encode([original])
    body = json_format.MessageToDict(Payloads(payloads=sealed))

    response = await http.post("/codec/decode", json=body)

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

    response = await http.post("/codec/decode", json=body)

    assert response.status_code == 400
