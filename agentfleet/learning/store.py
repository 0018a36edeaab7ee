"""Content-addressed store of model weights: workflows pass ``sha256:<hex>`` refs, never arrays.

A ref is the sha256 of the artifact's bytes, so the same weights always get the same ref (the
serialisation is canonical: sorted keys, C order, fixed zip timestamps) and a stored file can be
checked against its own name. Files live at ``root/ab/abcdef....npz`` (the first two hex digits
fan the folder out) and are readable with plain ``numpy.load``. Writes go to a temporary file in
the same folder and are renamed into place, so a reader never sees half an artifact and a crash
leaves no file under a ref's name.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from agentfleet.errors import FleetError

REF_PATTERN = re.compile(r"^sha256:([0-9a-f]{64})$")
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class ArtifactError(FleetError):
    """An artifact that cannot be read as asked; a retry will not fix it."""


class ArtifactMissing(ArtifactError):
    """No artifact is stored under the ref."""


class ArtifactCorrupted(ArtifactError):
    """The stored bytes no longer hash to the ref (or do not parse)."""


def serialize(weights: Mapping[str, NDArray[Any]]) -> bytes:
    """The canonical bytes of ``weights``: an ``.npz`` (zip, stored) of the arrays by sorted key.

    Equal arrays (same keys, dtypes, shapes and values) give equal bytes in every process;
    object arrays are refused (they would need pickle). ValueError for a bad key or array.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for key in sorted(weights):
            if not KEY_PATTERN.match(key):
                raise ValueError(f"weight name {key!r} must be 1-100 letters, digits, '_.-'")
            array = np.ascontiguousarray(weights[key])
            if array.dtype.hasobject:
                raise ValueError(f"weight {key!r} has dtype object; store numeric arrays only")
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_TIME)
            with archive.open(info, "w") as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
    return buffer.getvalue()


def deserialize(data: bytes) -> dict[str, NDArray[Any]]:
    """The arrays of :func:`serialize`'s bytes (ValueError/OSError when they do not parse)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def ref_of(data: bytes) -> str:
    """The ref of an artifact's bytes."""
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _digest(ref: str) -> str:
    match = REF_PATTERN.match(ref)
    if match is None:
        raise ValueError(f"artifact ref {ref!r} is not sha256:<64 lowercase hex digits>")
    return match[1]


class ArtifactStore:
    """Weights by ref under ``root`` (default: ``<settings.home>/models``).

    ``put`` is idempotent and atomic; ``get`` verifies the hash on every read, so a ref that
    reads at all reads the exact weights that were put. Safe for concurrent writers of the same
    ref (each renames a complete file over the same name).
    """

    def __init__(self, root: Path | None = None) -> None:
        if root is None:
            from agentfleet.settings import get_settings  # read env on use

            root = get_settings().home / "models"
        self.root = Path(root)

    def path(self, ref: str) -> Path:
        """Where the artifact of ``ref`` lives (whether or not it exists)."""
        digest = _digest(ref)
        return self.root / digest[:2] / f"{digest}.npz"

    def put(self, weights: Mapping[str, NDArray[Any]]) -> str:
        """Store ``weights`` and return their ref; storing the same weights again writes nothing
        (unless the stored copy is corrupted, which is then replaced)."""
        data = serialize(weights)
        ref = ref_of(data)
        target = self.path(ref)
        if self.verify(ref):
            return ref
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return ref

    def get(self, ref: str) -> dict[str, NDArray[Any]]:
        """The weights stored under ``ref``; :class:`ArtifactMissing` or
        :class:`ArtifactCorrupted` (one line each) when they cannot be returned intact."""
        path = self.path(ref)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ArtifactMissing(f"artifact {ref} is not in {self.root}") from None
        actual = ref_of(data)
        if actual != ref:
            raise ArtifactCorrupted(
                f"artifact {ref} is corrupted: {path} hashes to {actual} ({len(data)} bytes)"
            )
        try:
            return deserialize(data)
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            raise ArtifactCorrupted(f"artifact {ref} does not parse: {exc}") from None

    def exists(self, ref: str) -> bool:
        """True when a file is stored under ``ref`` (not checked: see :meth:`verify`)."""
        return self.path(ref).is_file()

    def verify(self, ref: str) -> bool:
        """True when the artifact exists and its bytes hash to ``ref``."""
        try:
            data = self.path(ref).read_bytes()
        except FileNotFoundError:
            return False
        return ref_of(data) == ref
