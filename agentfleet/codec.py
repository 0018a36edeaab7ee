"""What Temporal stores: AES-GCM payloads with ``FLEET_PAYLOAD_KEY`` set, and failures whose
messages and stack traces are redacted (and, with a key, encrypted too).

The Web UI shows decoded payloads through the codec endpoint (``starters/codec``, its own app on
loopback behind :func:`codec_token`), which uses this same class.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.converter import DefaultFailureConverter, PayloadCodec, PayloadConverter

from agentfleet import redaction, secretfile
from agentfleet.errors import FleetError

if TYPE_CHECKING:
    from agentfleet.settings import Settings

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
    import hashlib

    return hashlib.sha256(key).hexdigest()[:8]


class PlaintextRefused(ValueError):
    """A payload reached a codec that accepts only payloads encrypted with the fleet's key."""


class AESGCMCodec(PayloadCodec):
    """Encrypts every payload with AES-256-GCM; decode refuses payloads that are not encrypted
    (:class:`PlaintextRefused`), unless ``accept_plaintext`` (a fleet migrating from no key),
    so a client without the key cannot hand the fleet inputs of its own making.

    Older keys may be listed in ``previous`` so that histories written before a key rotation still
    decode.
    """

    def __init__(
        self, key: bytes, previous: Iterable[bytes] = (), *, accept_plaintext: bool = False
    ) -> None:
        self.accept_plaintext = accept_plaintext
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
            if self.accept_plaintext:
                return payload
            encoding = payload.metadata.get("encoding", b"").decode(errors="replace")[:40]
            raise PlaintextRefused(
                f"refused a payload that is not encrypted (encoding {encoding or 'none'!r}): "
                "this fleet accepts only payloads encrypted with FLEET_PAYLOAD_KEY "
                "(FLEET_PAYLOAD_ACCEPT_PLAINTEXT=true accepts them while migrating)"
            )
        kid = payload.metadata.get(KEY_ID_FIELD, b"").decode()
        aead = self._keys.get(kid)
        if aead is None:
            raise ValueError(f"payload encrypted with unknown key id {kid!r}")
        data = payload.data
        plain = aead.decrypt(data[:NONCE_SIZE], data[NONCE_SIZE:], None)
        decoded = Payload()
        decoded.ParseFromString(plain)
        return decoded


def codec(settings: Settings) -> AESGCMCodec | None:
    """The fleet's payload codec, or None without ``FLEET_PAYLOAD_KEY``."""
    if settings.payload_key is None:
        return None
    return AESGCMCodec(
        parse_key(settings.payload_key.get_secret_value()),
        accept_plaintext=settings.payload_accept_plaintext,
    )


TOKEN_FILE = "codec.token"  # noqa: S105 - a file name


def codec_token(settings: Settings) -> str:
    """The token the codec endpoint requires: ``FLEET_CODEC_TOKEN``, else one generated once
    under ``FLEET_HOME`` (0600, race-free)."""
    if settings.codec_token is not None:
        token = settings.codec_token.get_secret_value().strip()
    else:
        token = secretfile.read_or_create(
            settings.home / TOKEN_FILE, lambda: secrets.token_urlsafe(32)
        )
    redaction.register(token)
    return token


def ui_codec_endpoint(settings: Settings) -> str:
    """The codec endpoint as the Web UI is given it: the token as a path capability (the UI
    can send no header of its own)."""
    return f"{settings.codec_url}/t/{codec_token(settings)}"


def _redact_chain(failure: Failure) -> None:
    while True:
        failure.message = redaction.redact(failure.message)
        failure.stack_trace = redaction.redact(failure.stack_trace)
        if not failure.HasField("cause"):
            return
        failure = failure.cause


class RedactingFailureConverter(DefaultFailureConverter):
    """Failures as Temporal stores them, with every message and stack trace of the chain passed
    through :func:`agentfleet.redaction.redact` (an RPC URL's key, a bot token)."""

    def __init__(self, *, encode_common_attributes: bool = False) -> None:
        super().__init__(encode_common_attributes=False)
        self._encode = encode_common_attributes

    def to_failure(
        self, exception: BaseException, payload_converter: PayloadConverter, failure: Failure
    ) -> None:
        super().to_failure(exception, payload_converter, failure)
        _redact_chain(failure)
        if self._encode:
            _encode_chain(failure, payload_converter)


ENCODED_MESSAGE = "Encoded failure"
"""The message Temporal's SDKs put in place of one moved into ``encoded_attributes``."""


def _encode_chain(failure: Failure, payload_converter: PayloadConverter) -> None:
    """Move each message and stack trace of the chain into ``encoded_attributes`` (a payload,
    so the codec encrypts it), as Temporal's ``encode_common_attributes`` does for the top level.
    A level copied from a failure decoded earlier carries its message in clear again, next to
    the old attributes: it is encoded afresh."""
    while True:
        if failure.message != ENCODED_MESSAGE or failure.stack_trace:
            failure.encoded_attributes.CopyFrom(
                payload_converter.to_payloads(
                    [{"message": failure.message, "stack_trace": failure.stack_trace}]
                )[0]
            )
            failure.message = ENCODED_MESSAGE
            failure.stack_trace = ""
        if not failure.HasField("cause"):
            return
        failure = failure.cause


class EncodedRedactingFailureConverter(RedactingFailureConverter):
    """:class:`RedactingFailureConverter` that also moves messages and stack traces into encoded
    attributes, so with a payload key the server stores only their ciphertext."""

    def __init__(self) -> None:
        super().__init__(encode_common_attributes=True)
