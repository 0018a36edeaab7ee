"""AES-GCM payload codec: with ``FLEET_PAYLOAD_KEY`` set, Temporal stores only ciphertext.

The Web UI shows decoded payloads through the codec endpoint of our HTTP app
(``starters/http``), which uses this same class.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
from collections.abc import Iterable, Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from agentfleet.errors import FleetError

ENCODING = b"binary/encrypted"
KEY_ID_FIELD = "encryption-key-id"
NONCE_SIZE = 12


def parse_key(raw: str) -> bytes:
    """Decode a 32-byte key given as base64 or hex; a clear error for anything else."""
    text = raw.strip()
    candidates: list[bytes] = []
    with contextlib.suppress(ValueError):
        candidates.append(bytes.fromhex(text.removeprefix("0x")))
    with contextlib.suppress(binascii.Error, ValueError):
        candidates.append(base64.b64decode(text, validate=True))
    for key in candidates:
        if len(key) == 32:
            return key
    raise FleetError(
        "FLEET_PAYLOAD_KEY must be 32 bytes as base64 or hex; make one with "
        "`python -c 'import os,base64;print(base64.b64encode(os.urandom(32)).decode())'`"
    )


def key_id(key: bytes) -> str:
    """A short public identifier of a key (first 8 hex digits of its SHA-256), never the key."""
    import hashlib  # noqa: PLC0415

    return hashlib.sha256(key).hexdigest()[:8]


class AESGCMCodec(PayloadCodec):
    """Encrypts every payload with AES-256-GCM; decodes payloads it did not encrypt unchanged.

    Older keys may be listed in ``previous`` so that histories written before a key rotation still
    decode.
    """

    def __init__(self, key: bytes, previous: Iterable[bytes] = ()) -> None:
        self._key_id = key_id(key)
        self._aead = AESGCM(key)
        self._keys = {self._key_id: self._aead}
        for old in previous:
            self._keys.setdefault(key_id(old), AESGCM(old))

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decrypt(p) for p in payloads]

    def _encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_SIZE)
        sealed = self._aead.encrypt(nonce, payload.SerializeToString(), None)
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID_FIELD: self._key_id.encode()},
            data=nonce + sealed,
        )

    def _decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        kid = payload.metadata.get(KEY_ID_FIELD, b"").decode()
        aead = self._keys.get(kid)
        if aead is None:
            raise ValueError(f"payload encrypted with unknown key id {kid!r}")
        data = payload.data
        plain = aead.decrypt(data[:NONCE_SIZE], data[NONCE_SIZE:], None)
        decoded = Payload()
        decoded.ParseFromString(plain)
        return decoded
