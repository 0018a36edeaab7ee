"""The wallets' master secret: never empty, never short off the local chain, created race-free,
and never silently replaced while keys are stored under it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from agentfleet import keystore, secretfile
from agentfleet.db import upgrade_database
from agentfleet.errors import FleetError
from agentfleet.settings import Settings

LONG_SECRET = "0123456789abcdef" * 4
DEV_KEY = "0x" + "11" * 32


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("FLEET_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("value", ["", "   ", "\n\t"])
def test_an_empty_keystore_secret_is_a_settings_error(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("FLEET_KEYSTORE_SECRET", value)
    with pytest.raises(ValidationError, match="set but empty"):
        Settings()


@pytest.mark.parametrize("network", ["amoy", "polygon", "fuji"])
def test_off_the_local_chain_the_secret_must_be_set(tmp_path: Path, network: str) -> None:
    settings = Settings(home=tmp_path, network=network)
    with pytest.raises(FleetError, match=f"FLEET_KEYSTORE_SECRET must be set on network {network}"):
        keystore.master_secret(settings)
    assert not (tmp_path / "keystore.secret").exists()


def test_off_the_local_chain_a_short_secret_is_refused_without_echoing_it(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path, network="amoy", keystore_secret="short-secret-31-bytes-long-xxxx"
    )
    with pytest.raises(FleetError, match="too short") as info:
        keystore.master_secret(settings)
    assert "short-secret" not in str(info.value)
    ok = Settings(home=tmp_path, network="amoy", keystore_secret=LONG_SECRET)
    assert keystore.master_secret(ok) == LONG_SECRET


def test_on_the_local_chain_a_secret_is_generated_once_with_mode_600(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    first = keystore.master_secret(settings)
    path = tmp_path / "home" / "keystore.secret"
    assert len(first) == 64
    assert path.stat().st_mode & 0o777 == 0o600
    assert keystore.master_secret(settings) == first
    assert [p.name for p in path.parent.iterdir()] == ["keystore.secret"]


def _first_calls_at_once(settings: Settings, count: int = 8) -> list[str]:
    barrier = threading.Barrier(count)
    seen: list[str] = []

    def first_call() -> None:
        barrier.wait()
        try:
            seen.append(keystore.master_secret(settings))
        except Exception as exc:  # noqa: BLE001 - the caller's assertion names it
            seen.append(repr(exc))

    threads = [threading.Thread(target=first_call) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return seen


def test_concurrent_first_calls_in_threads_agree_on_one_complete_secret(tmp_path: Path) -> None:
    for round_ in range(40):
        seen = _first_calls_at_once(Settings(home=tmp_path / f"home-{round_}"))
        assert len(set(seen)) == 1, seen
        assert len(seen[0]) == 64, seen


def test_concurrent_first_calls_in_processes_agree_on_one_secret(tmp_path: Path) -> None:
    home = tmp_path / "home"
    script = (
        "import sys\n"
        "from agentfleet import keystore\n"
        "from agentfleet.settings import Settings\n"
        "print(keystore.master_secret(Settings(home=sys.argv[1])))\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(home)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    secrets = {out.strip() for out, _ in outputs}
    assert len(secrets) == 1 and len(secrets.pop()) == 64, outputs


def test_secret_files_never_leave_temporary_files_behind(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "token"
    assert secretfile.read_or_create(path, lambda: "first-value") == "first-value"
    assert secretfile.read_or_create(path, lambda: "second-value") == "first-value"
    assert sorted(p.name for p in path.parent.iterdir()) == ["token"]


def test_secret_files_default_to_32_random_bytes_and_refuse_empty_or_shared_files(
    tmp_path: Path,
) -> None:
    from agentfleet import redaction

    path = tmp_path / "gateway.secret"
    value = secretfile.read_or_create(path)
    assert len(value) == 64 and int(value, 16) >= 0
    assert redaction.redact(f"secret {value}") == "secret ***"
    path.chmod(0o640)
    with pytest.raises(FleetError, match="readable by others"):
        secretfile.read_or_create(path)
    path.write_text("\n")
    path.chmod(0o600)
    with pytest.raises(FleetError, match="is empty"):
        secretfile.read_or_create(path)
    redaction.reset()


def test_an_empty_secret_file_is_an_error_not_an_empty_secret(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    path = tmp_path / "keystore.secret"
    path.touch(mode=0o600)
    with pytest.raises(FleetError, match="is empty"):
        keystore.master_secret(settings)


def test_a_secret_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    keystore.master_secret(settings)
    (tmp_path / "keystore.secret").chmod(0o644)
    with pytest.raises(FleetError, match="chmod 600"):
        keystore.master_secret(settings)


def test_a_lost_secret_file_with_stored_keys_fails_loudly_and_creates_nothing(
    tmp_path: Path, database_url: str
) -> None:
    upgrade_database(database_url)
    settings = Settings(home=tmp_path / "home", database_url=database_url)
    keystore.store_key(settings, "relayer-0", DEV_KEY)
    keystore.generate_key(settings, "bot:one")
    path = tmp_path / "home" / "keystore.secret"
    path.unlink()

    for check in (keystore.master_secret, keystore.verify_master_secret):
        with pytest.raises(FleetError) as info:
            check(settings)
        assert str(info.value).startswith(
            "the keystore secret is missing but 2 keys are stored encrypted; "
            f"restore {path} or set FLEET_KEYSTORE_SECRET"
        )
        assert not path.exists()
    with pytest.raises(FleetError, match="missing"):
        keystore.generate_key(settings, "bot:two")


def test_a_secret_that_does_not_open_the_stored_keys_fails_verification(
    tmp_path: Path, database_url: str
) -> None:
    upgrade_database(database_url)
    stored_under = Settings(home=tmp_path, database_url=database_url, keystore_secret=LONG_SECRET)
    keystore.store_key(stored_under, "relayer-0", DEV_KEY)
    assert keystore.verify_master_secret(stored_under) == 1

    wrong = Settings(home=tmp_path, database_url=database_url, keystore_secret="x" * 64)
    with pytest.raises(FleetError) as info:
        keystore.verify_master_secret(wrong)
    message = str(info.value)
    assert "FLEET_KEYSTORE_SECRET" in message and "does not open the 1 stored keys" in message
    assert "x" * 64 not in message


def test_verification_before_any_migration_or_key_passes(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    assert keystore.verify_master_secret(settings) == 0
    assert not (tmp_path / "home").exists()  # neither a database nor a secret was made
