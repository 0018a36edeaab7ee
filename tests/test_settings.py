"""Settings: defaults, FLEET_HOME, .env, validation, masking, and `fleet config show`."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from agentfleet.settings import DEMO_NAMES, Settings, mask_url, resolve_demos
from starters.cli.main import app
from starters.stack.state import StackFiles

PAYLOAD_KEY = base64.b64encode(bytes(range(32))).decode()
TEMPORAL_API_KEY = "tmprl-api-key-9d8c7b"
OPENAI_API_KEY = "sk-openai-secret-5e4f3a"
DB_PASSWORD = "s3cret"
DB_URL = f"postgresql+psycopg://u:{DB_PASSWORD}@h/db"
SECRETS = (PAYLOAD_KEY, TEMPORAL_API_KEY, OPENAI_API_KEY, DB_PASSWORD)


@pytest.fixture(autouse=True)
def cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A clean working directory and no FLEET_* variables from the developer's shell."""
    for name in list(os.environ):
        if name.startswith("FLEET_"):
            monkeypatch.delenv(name)
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "400")  # Rich must not wrap a value across lines
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work.resolve()


def _secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_PAYLOAD_KEY", PAYLOAD_KEY)
    monkeypatch.setenv("FLEET_TEMPORAL_API_KEY", TEMPORAL_API_KEY)
    monkeypatch.setenv("FLEET_OPENAI_API_KEY", OPENAI_API_KEY)
    monkeypatch.setenv("FLEET_DATABASE_URL", DB_URL)


def test_defaults_put_state_in_an_absolute_dot_fleet_under_cwd(cwd: Path) -> None:
    settings = Settings()
    assert settings.home.is_absolute()
    assert settings.home == cwd / ".fleet"
    assert settings.effective_database_url == f"sqlite:///{cwd / '.fleet' / 'fleet.db'}"
    assert settings.embedded_temporal_address == "127.0.0.1:7233"
    assert settings.uses_embedded_temporal
    assert settings.effective_rpc_url == "http://127.0.0.1:8545"
    assert settings.codec_url == "http://127.0.0.1:8330"
    assert settings.payload_accept_plaintext is False
    assert settings.payload_key is None
    assert settings.log_level == "INFO"


def test_fleet_home_moves_every_state_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cwd: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("FLEET_HOME", str(elsewhere))
    settings = Settings()
    assert settings.home == elsewhere.resolve()
    assert settings.effective_database_url == f"sqlite:///{elsewhere.resolve() / 'fleet.db'}"
    files = StackFiles(settings.home)
    for path in (files.state, files.lock, files.logs, files.temporal_db, files.anvil_state):
        assert path.is_relative_to(elsewhere.resolve())
        assert not path.is_relative_to(cwd)


def test_relative_and_tilde_fleet_home_become_absolute(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cwd: Path
) -> None:
    monkeypatch.setenv("FLEET_HOME", "state/dir")
    assert Settings().home == cwd / "state" / "dir"
    monkeypatch.setenv("HOME", str(tmp_path / "userhome"))
    monkeypatch.setenv("FLEET_HOME", "~/fleet-state")
    assert Settings().home == (tmp_path / "userhome" / "fleet-state").resolve()


def test_dotenv_in_cwd_is_read_and_the_environment_wins_over_it(
    monkeypatch: pytest.MonkeyPatch, cwd: Path
) -> None:
    (cwd / ".env").write_text(
        "FLEET_UI_PORT=9999\nFLEET_HOME=from-dotenv\n"
        f"FLEET_PAYLOAD_KEY={PAYLOAD_KEY}\nFLEET_LOG_LEVEL=debug\n"
    )
    settings = Settings()
    assert settings.ui_port == 9999
    assert settings.home == cwd / "from-dotenv"
    assert settings.payload_key is not None
    assert settings.payload_key.get_secret_value() == PAYLOAD_KEY
    assert settings.log_level == "DEBUG"

    monkeypatch.setenv("FLEET_UI_PORT", "9001")
    assert Settings().ui_port == 9001


@pytest.mark.parametrize(
    "field", ["temporal_port", "ui_port", "anvil_port", "metrics_port", "http_port"]
)
@pytest.mark.parametrize("port", [0, -1, 65536, 70000])
def test_invalid_port_is_a_validation_error(field: str, port: int) -> None:
    with pytest.raises(ValidationError, match="not a TCP port"):
        Settings.model_validate({field: port})


def test_invalid_port_from_the_environment_is_a_validation_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLEET_HTTP_PORT", "65536")
    with pytest.raises(ValidationError, match="http_port"):
        Settings()


def test_boundary_ports_are_valid() -> None:
    assert Settings(ui_port=1, http_port=65535).http_port == 65535


def test_masked_never_contains_secret_values(monkeypatch: pytest.MonkeyPatch) -> None:
    _secret_env(monkeypatch)
    settings = Settings()
    masked = settings.masked()
    dumped = json.dumps(masked)
    for secret in SECRETS:
        assert secret not in dumped
    for name in ("payload_key", "temporal_api_key", "openai_api_key"):
        assert masked[name] == "**********"
    assert masked["database_url"] == "postgresql+psycopg://u:***@h/db"
    # The real values are still there for the code that needs them.
    assert settings.temporal_api_key is not None
    assert settings.temporal_api_key.get_secret_value() == TEMPORAL_API_KEY
    assert settings.effective_database_url == DB_URL


def test_masked_leaves_unset_secrets_empty_and_shows_effective_urls(cwd: Path) -> None:
    masked = Settings(rpc_url="http://user:rpcpass@node.example:8545").masked()
    assert masked["payload_key"] is None
    assert masked["openai_api_key"] is None
    assert masked["database_url"] == f"sqlite:///{cwd / '.fleet' / 'fleet.db'}"
    assert "rpcpass" not in masked["rpc_url"]
    assert "node.example:8545" in masked["rpc_url"]


def test_masked_hides_api_keys_in_url_paths_and_queries() -> None:
    masked = Settings(
        rpc_url="https://polygon-amoy.g.alchemy.com/v2/Zx81kQpL0mNa7Tb3Yc5Vd",
        openai_base_url="https://llm.example/v1?api-key=9f8e7d6c5b4a",
        telegram_api_url="https://tg.example/",
    ).masked()
    assert masked["rpc_url"] == "https://polygon-amoy.g.alchemy.com/v2/***"
    assert masked["openai_base_url"] == "https://llm.example/v1?api-key=***"
    assert masked["telegram_api_url"] == "https://tg.example/"


def test_mask_url_leaves_urls_without_password_alone() -> None:
    assert mask_url("postgresql+psycopg://u@h:5432/db") == "postgresql+psycopg://u@h:5432/db"
    assert mask_url("not a url") == "not a url"


def test_config_show_json_prints_masked_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    _secret_env(monkeypatch)
    monkeypatch.setenv("FLEET_UI_PORT", "18233")
    result = CliRunner().invoke(app, ["config", "show", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ui_port"] == 18233
    assert data["payload_key"] == "**********"
    assert data["database_url"] == "postgresql+psycopg://u:***@h/db"
    for secret in SECRETS:
        assert secret not in result.output


def test_config_show_table_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    _secret_env(monkeypatch)
    result = CliRunner().invoke(app, ["config", "show"])
    assert result.exit_code == 0, result.output
    assert "FLEET_PAYLOAD_KEY" in result.stdout
    assert "**********" in result.stdout
    for secret in SECRETS:
        assert secret not in result.output


def test_codec_cors_origins_take_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_CODEC_CORS_ORIGINS", "http://ui.example, https://b.example")
    assert Settings().codec_cors_origins == ["http://ui.example", "https://b.example"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FLEET_UI_PORT", "70000"),
        ("FLEET_TEMPORAL_PORT", "not-a-number"),
        ("FLEET_LOG_LEVEL", "LOUD"),
        ("FLEET_DEMO", "maybe"),
    ],
)
def test_invalid_value_makes_config_show_print_one_error_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["config", "show"])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    assert name in lines[0]
    assert "Traceback" not in result.output


def test_invalid_value_with_json_prints_an_error_object(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_UI_PORT", "0")
    result = CliRunner().invoke(app, ["config", "show", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "ok": False,
        "error": "FLEET_UI_PORT: 0 is not a TCP port (1-65535)",
    }
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error:")


def test_network_profile_sets_the_chain_id_unless_given() -> None:
    assert Settings().chain_id == 31337
    assert Settings(network="amoy").chain_id == 80002
    assert Settings(network="polygon", chain_id=1337).chain_id == 1337


def test_unknown_network_is_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_NETWORK", "nosuch")
    result = CliRunner().invoke(app, ["config", "show"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: FLEET_NETWORK 'nosuch' is not one of local, polygon, amoy, fuji"
    ]


def test_demos_bring_what_they_need_in_running_order() -> None:
    from starters.stack.demo import DEMOS

    assert [key for key, _, _ in DEMOS] == list(DEMO_NAMES)
    assert Settings().demos == list(DEMO_NAMES)
    assert Settings(demos="learning,check").demos == ["check", "fleet", "learning"]
    assert resolve_demos(["agent", "agent"]) == ["fleet", "agent"]
    with pytest.raises(ValidationError, match="unknown demo 'payments'; one of check, transfer"):
        Settings(demos="payments")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--demo", "fleet", "--demo", "payments"], "unknown demo 'payments'; one of check,"),
        (["--demo", "check,nope"], "unknown demo 'nope'"),
        (["--demo", "check", "--no-demo"], "exclude each other"),
    ],
)
def test_unknown_demo_is_one_line_error_and_starts_nothing(
    cwd: Path, args: list[str], needle: str
) -> None:
    result = CliRunner().invoke(app, ["up", "--detach", *args])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and needle in line, line
    assert not StackFiles(Settings().home).state.exists()
