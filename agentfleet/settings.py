"""Effective configuration of agentfleet, read from ``FLEET_*`` environment variables and ``.env``.

Every process (CLI, workers, HTTP app, tests) builds its configuration from :class:`Settings`, so a
value set once in the environment or in ``.env`` reaches all of them. Secrets are ``SecretStr`` and
are only ever shown masked (``fleet config show``).

Why one module over 450 lines: one ``Settings`` class is the single list of every ``FLEET_*``
variable with its description (docs/operations.md's table and ``fleet config show`` read it);
its fields cannot be split across files without a second place to look.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from agentfleet.agents.prices import DEFAULT_MODEL_PRICES, ModelPrice

LOOPBACK = "127.0.0.1"
NETWORK_CHAIN_IDS = {"local": 31337, "polygon": 137, "amoy": 80002, "fuji": 43113}
DEMO_NAMES = ("check", "transfer", "fleet", "purchase", "content", "agent", "learning")
"""The demos of ``fleet up``, in the order they run (``starters.stack.demo.DEMOS``)."""
DEMO_NEEDS = {name: ("fleet",) for name in ("purchase", "content", "agent", "learning")}
"""Demos that work on the demo fleet's bots, which the ``fleet`` demo seeds."""


def resolve_demos(names: list[str]) -> list[str]:
    """The demos to run for ``names``, with the ones they need, in running order; ValueError
    naming the known demos for an unknown one."""
    unknown = [name for name in names if name not in DEMO_NAMES]
    if unknown:
        raise ValueError(
            f"unknown demo {', '.join(map(repr, unknown))}; one of {', '.join(DEMO_NAMES)}"
        )
    wanted = set(names) | {need for name in names for need in DEMO_NEEDS.get(name, ())}
    return [name for name in DEMO_NAMES if name in wanted]


"""Chain id of each network profile (the profiles live in ``agentfleet.chain.networks``)."""


class Settings(BaseSettings):
    """Settings with the prefix ``FLEET_``; unset values take the embedded-stack defaults."""

    model_config = SettingsConfigDict(
        env_prefix="FLEET_", env_file=".env", extra="ignore", validate_default=True
    )

    home: Path = Field(
        default=Path(".fleet"),
        description="State folder of the embedded stack (databases, logs, keys, lock).",
    )

    # Temporal: the embedded dev server by default; a cluster or Temporal Cloud when set.
    temporal_address: str | None = Field(
        default=None,
        description="host:port of a Temporal frontend; unset means Temporal's envconfig profile "
        "(TEMPORAL_ADDRESS, temporal.toml) or else the embedded dev server.",
    )
    temporal_namespace: str | None = Field(default=None, description="Temporal namespace.")
    temporal_profile: str | None = Field(
        default=None, description="Temporal envconfig profile name (temporal.toml)."
    )
    temporal_api_key: SecretStr | None = Field(
        default=None, description="API key for Temporal Cloud (implies TLS)."
    )
    temporal_tls: bool | None = Field(default=None, description="Force TLS on or off.")
    temporal_tls_cert: Path | None = Field(default=None, description="mTLS client certificate.")
    temporal_tls_key: Path | None = Field(default=None, description="mTLS client private key.")
    temporal_tls_ca: Path | None = Field(default=None, description="CA certificate of the server.")
    temporal_tls_server_name: str | None = Field(default=None, description="TLS SNI override.")

    # Ports of the embedded stack (all on 127.0.0.1).
    temporal_port: int = Field(default=7233, description="Embedded Temporal frontend port.")
    ui_port: int = Field(default=8233, description="Embedded Temporal Web UI port.")
    anvil_port: int = Field(default=8545, description="Embedded anvil JSON-RPC port.")
    metrics_port: int = Field(default=9464, description="Worker Prometheus /metrics port.")
    http_port: int = Field(default=8300, description="agentfleet HTTP app port (gateway, bots).")
    codec_port: int = Field(
        default=8330, description="Port of the codec endpoint for the Web UI (loopback only)."
    )
    remote_bot_port: int = Field(
        default=8310, description="Port of the reference remote bot the demo fleet calls."
    )
    mcp_port: int = Field(
        default=8340, description="Port of the MCP server (the fleet's skills as MCP tools)."
    )
    bind_host: str = Field(
        default=LOOPBACK,
        description="Address the HTTP app and worker metrics listen on (0.0.0.0 in containers).",
    )
    codec_bind_host: str = Field(
        default=LOOPBACK,
        description="Address the codec endpoint listens on: loopback, whatever FLEET_BIND_HOST "
        "says; only its own container (whose port the host publishes on loopback) sets 0.0.0.0.",
    )

    # Chain.
    rpc_url: str | None = Field(
        default=None, description="EVM JSON-RPC URL; unset means the embedded anvil."
    )
    chain_id: int = Field(
        default=31337, description="Chain id; unset: the network profile's (anvil: 31337)."
    )
    network: str = Field(
        default="local",
        description="Chain profile: local (anvil), polygon (137), amoy (80002), fuji (43113).",
    )
    confirmations: int | None = Field(
        default=None, ge=0, description="Blocks a transaction must be buried under; unset: profile."
    )
    receipt_timeout_s: float | None = Field(
        default=None,
        gt=0,
        le=3600,
        description="How long one send of a settlement waits for its receipt before its outcome "
        "counts as not known yet (the payment saga then keeps sending the same transaction); "
        "unset: the chain profile's.",
    )
    deployer_key: SecretStr | None = Field(
        default=None, description="Private key that deploys contracts on a real network."
    )
    deployer_keystore: Path | None = Field(
        default=None, description="Keystore file (JSON) of the deployer, instead of a raw key."
    )
    deployer_keystore_password: SecretStr | None = Field(
        default=None, description="Password of FLEET_DEPLOYER_KEYSTORE."
    )
    keystore_secret: SecretStr | None = Field(
        default=None,
        description="Master secret that encrypts the keys agentfleet stores; required (32+ bytes) "
        "off the local network; unset on local: a dev secret generated under FLEET_HOME (0600).",
    )
    anvil_bin: Path | None = Field(
        default=None, description="anvil executable; unset means contracts/node_modules."
    )

    # Database.
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host:5432/db; "
        "unset means SQLite under FLEET_HOME.",
    )

    # Payload encryption (AES-GCM); base64 or hex of 32 bytes.
    payload_key: SecretStr | None = Field(
        default=None, description="AES-256 key (base64 or hex) that encrypts workflow payloads."
    )
    payload_accept_plaintext: bool = Field(
        default=False,
        description="With a payload key, also accept payloads that are not encrypted (only while "
        "migrating a fleet that ran without a key); by default they are refused.",
    )
    codec_token: SecretStr | None = Field(
        default=None,
        description="Token the codec endpoint requires (as a path capability or a Bearer "
        "header); unset: generated once under FLEET_HOME (0600).",
    )
    codec_cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Extra origins (comma-separated) allowed to call the codec endpoint; the "
        "embedded Web UI's origin is always allowed.",
    )

    # LLM.
    openai_base_url: str | None = Field(default=None, description="OpenAI-compatible endpoint.")
    openai_api_key: SecretStr | None = Field(default=None, description="Key for that endpoint.")
    openai_model: str = Field(default="gpt-4o-mini", description="Model name for drafts.")

    # Agent bots.
    model_prices: dict[str, ModelPrice] = Field(
        default_factory=lambda: dict(DEFAULT_MODEL_PRICES),
        description="fUSD per million input and output tokens by model, as JSON "
        '({"gpt-4o-mini": {"input": "0.15", "output": "0.60"}}): an agent\'s model must be '
        "here, its tokens count against its budget at these prices.",
    )
    mcp_servers: dict[str, str] = Field(
        default_factory=dict,
        description="MCP servers agents may use, as JSON: name -> streamable HTTP URL (an "
        "agent lists mcp:<name> in its tools); the fleet's own MCP server is always `fleet`.",
    )
    agent_max_output_tokens: int = Field(
        default=800, ge=16, le=32000, description="Most tokens an agent's model call may write."
    )

    # Content channels. Unset endpoints use the local sandbox `fleet up` starts
    # (FLEET_CHANNEL_SANDBOX), which speaks the Bot API, SMTP and Standard Webhooks.
    channel_sandbox: bool = Field(
        default=True,
        description="Start the local channel servers (Telegram Bot API, SMTP, webhook receiver, "
        "OpenAI-compatible) with the embedded stack and use them where no real endpoint is set.",
    )
    sandbox_port: int = Field(default=8320, description="HTTP port of the local channel sandbox.")
    sandbox_smtp_port: int = Field(default=8325, description="SMTP port of the local sandbox.")
    telegram_api_url: str | None = Field(
        default=None,
        description="Telegram Bot API base URL; unset: the sandbox, or https://api.telegram.org "
        "when FLEET_CHANNEL_SANDBOX is false.",
    )
    telegram_bot_token: SecretStr | None = Field(default=None, description="Telegram bot token.")
    telegram_max_rows: int = Field(
        default=20,
        ge=1,
        le=200,
        description="Rows a command center answer shows in its message; a longer table is "
        "summarised, with the whole table as a CSV file.",
    )
    smtp_host: str | None = Field(default=None, description="SMTP server; unset: the sandbox.")
    smtp_port: int | None = Field(
        default=None, description="SMTP port (default 587, or 25 without STARTTLS)."
    )
    smtp_username: str | None = Field(default=None, description="SMTP login.")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password.")
    smtp_starttls: bool = Field(default=False, description="Upgrade SMTP with STARTTLS.")
    smtp_ca_file: Path | None = Field(
        default=None,
        description="PEM file of the certificate authorities trusted for the SMTP server's "
        "STARTTLS certificate (a company relay's own CA); unset: the system's.",
    )
    smtp_from: str = Field(
        default="agentfleet@localhost", description="Sender address of published email."
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="Standard Webhooks signing secret (whsec_...); unset: a dev secret under "
        "FLEET_HOME.",
    )
    channel_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="How long a channel send waits for an answer."
    )
    content_policy: Path | None = Field(
        default=None, description="Content policy YAML; unset: the packaged default policy."
    )

    # Telegram command center (starters/telegram/bot.py).
    telegram_users: str = Field(
        default="",
        description="Who may use the Telegram command center: comma-separated "
        "`USER_ID:ROLE[:NAME]` (roles viewer, operator, approver, admin; NAME is the approver "
        "name content decisions carry, default tg-USER_ID). Unset with the sandbox as the Bot "
        "API: 1001:admin:sandbox-admin.",
    )
    command_center: bool = Field(
        default=True,
        description="`fleet up` starts the Telegram command center (when a bot token or the "
        "sandbox is there).",
    )
    grafana_url: str = Field(
        default="http://127.0.0.1:3000", description="Grafana, for links in /dashboard."
    )

    # Fleet commands (workflows/fleet_command.py).
    command_inline_answers: int = Field(
        default=100,
        ge=0,
        description="A fleet command to at most this many bots returns every answer in its "
        "result; a larger one stores them in the database (command_answers) and returns the "
        "summary.",
    )
    command_answers_days: float = Field(
        default=7.0,
        gt=0,
        description="Days a large fleet command's stored answers are kept.",
    )
    command_answers_token: SecretStr | None = Field(
        default=None,
        description="Bearer token the HTTP app asks of callers of GET /commands/{id} and "
        "/commands/{id}/answers (32+ characters); unset: those endpoints answer 403.",
    )

    # Learning rounds.
    models_path: Path | None = Field(
        default=None,
        description="Content-addressed store of model weights; unset: FLEET_HOME/models.",
    )

    # Alerts (agentfleet/operations/alerts.py): grouped, sent through the channels' publishers.
    alert_channels: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Channels (comma-separated names, `fleet channel add`) alerts are sent to; "
        "unset: alerts are recorded (`fleet alerts list`) and logged only.",
    )
    alert_window_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Alerts of one kind raised within this window are sent as one message.",
    )
    alert_cooldown_s: float = Field(
        default=900.0,
        ge=0,
        le=86400,
        description="A key (bot, payment, item) already reported within this time is counted "
        "in the next message, not sent again.",
    )

    # Payments (x402).
    public_url: str | None = Field(
        default=None,
        description="The HTTP app's public base URL (what buyers call, e.g. "
        "https://fleet.example); sign-in-with-x proofs must name its origin. Unset: "
        "http://127.0.0.1:FLEET_HTTP_PORT.",
    )
    gateway_secret: SecretStr | None = Field(
        default=None,
        description="Secret the gateway derives payment result tokens from (the same on every "
        "gateway replica); unset: generated under FLEET_HOME (0600).",
    )
    facilitator_auth: bool = Field(
        default=True,
        description="The facilitator's /verify and /settle need an API key (`fleet facilitator "
        "key add`); false opens them to anyone (the relayers pay the gas: never in production).",
    )
    facilitator_min_amount: int = Field(
        default=1000,
        ge=1,
        description="Smallest payment (token units; 1000 = 0.001 fUSD) the facilitator settles.",
    )
    facilitator_rate_per_key: str = Field(
        default="50/second;1000/minute",
        description="Facilitator requests allowed per API key (limits notation, `;`-separated).",
    )
    facilitator_rate_per_payer: str = Field(
        default="10/second;300/minute",
        description="Facilitator requests allowed per payer address.",
    )
    rate_limit_storage: str = Field(
        default="memory://",
        description="Where rate-limit counters live: memory:// (per process) or a shared store "
        "such as redis://host:6379 when several gateway processes serve one fleet.",
    )
    http_max_body_bytes: int = Field(
        default=65_536,
        ge=1024,
        le=16 * 2**20,
        description="Largest request body the HTTP app reads; a larger one is refused with 413.",
    )
    workflow_task_slots: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="Workflow tasks a worker runs at once per task queue (Temporal's "
        "max_concurrent_workflow_tasks; unset: the SDK's default, 100).",
    )
    payment_wait_s: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="How long a paid HTTP call waits for its settlement before answering 202 "
        "with a status URL (the payment saga carries on).",
    )
    a2a_runs_per_caller: str = Field(
        default="6/minute;120/day",
        description="Agent runs one A2A caller (a client address) may start with text messages: "
        "each run spends the agent's budget, so a stranger's flood stops here.",
    )
    a2a_wait_s: float = Field(
        default=25.0,
        gt=0,
        le=300,
        description="How long an A2A text message to an agent bot waits for its run to end "
        "before answering a task to poll with GetTask (the run carries on).",
    )

    # Outbound calls to bots' URLs and their cards' endpoints (agentfleet/netguard.py).
    outbound_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Networks (comma-separated CIDRs: loopback, private, shared or unique-local "
        "ranges) a remote bot's URL may resolve to although they are not public, e.g. your own "
        "bots at 10.1.2.0/24; unset: public addresses only (plus loopback on the local dev "
        "stack).",
    )

    # The `fleet up` supervisor (starters/stack/supervisor.py).
    restart_backoff_max_s: float = Field(
        default=30.0,
        ge=0.5,
        le=3600,
        description="A component that keeps exiting is restarted after 0.5 s, doubling up to "
        "this delay.",
    )
    restart_stable_s: float = Field(
        default=60.0,
        gt=0,
        le=86400,
        description="A restarted component that answered its readiness check this long counts "
        "as healthy again: it ends its crash loop, and its next exit restarts it after 0.5 s.",
    )

    demo: bool = Field(default=True, description="`fleet up` runs the demos (--no-demo: false).")
    demos: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEMO_NAMES),
        description="Which demos `fleet up` runs, comma-separated (`--demo`, repeatable): "
        + ", ".join(DEMO_NAMES)
        + ". A demo brings the ones it needs (purchase, content, agent and learning need fleet).",
    )
    log_level: str = Field(default="INFO", description="Python log level of fleet processes.")

    @field_validator("home", mode="after")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator(
        "temporal_port",
        "ui_port",
        "anvil_port",
        "metrics_port",
        "http_port",
        "codec_port",
        "remote_bot_port",
        "mcp_port",
        "sandbox_port",
        "sandbox_smtp_port",
        mode="after",
    )
    @classmethod
    def _valid_port(cls, value: int) -> int:
        if not 0 < value < 65536:
            raise ValueError(f"{value} is not a TCP port (1-65535)")
        return value

    @field_validator("keystore_secret", mode="after")
    @classmethod
    def _secret_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError(
                "is set but empty; unset it (local dev: a secret is generated under FLEET_HOME) "
                "or set 32+ random bytes"
            )
        return value

    @field_validator("codec_token", "command_answers_token", mode="after")
    @classmethod
    def _token_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < 32:
            raise ValueError("must be at least 32 characters (e.g. `openssl rand -hex 32`)")
        return value

    @field_validator(
        "codec_cors_origins", "alert_channels", "outbound_allow", "demos", mode="before"
    )
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("demos", mode="after")
    @classmethod
    def _known_demos(cls, value: list[str]) -> list[str]:
        return resolve_demos(value)

    @field_validator("outbound_allow", mode="after")
    @classmethod
    def _allowable_networks(cls, value: list[str]) -> list[str]:
        from agentfleet.netguard import allowed_networks

        return allowed_networks(value)

    @model_validator(mode="after")
    def _chain_id_from_network(self) -> Settings:
        if self.network not in NETWORK_CHAIN_IDS:
            raise ValueError(
                f"FLEET_NETWORK {self.network!r} is not one of {', '.join(NETWORK_CHAIN_IDS)}"
            )
        if "chain_id" not in self.model_fields_set and self.network != "local":
            self.chain_id = NETWORK_CHAIN_IDS[self.network]
        return self

    @field_validator(
        "facilitator_rate_per_key",
        "facilitator_rate_per_payer",
        "a2a_runs_per_caller",
        mode="after",
    )
    @classmethod
    def _valid_rate(cls, value: str) -> str:
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate such as '10/second;300/minute'") from None
        return value

    @field_validator("log_level", mode="after")
    @classmethod
    def _valid_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"unknown log level {value!r}")
        return level

    @cached_property
    def effective_database_url(self) -> str:
        """The database every process uses: ``FLEET_DATABASE_URL`` or SQLite under the home."""
        return self.database_url or f"sqlite:///{self.home / 'fleet.db'}"

    @cached_property
    def effective_rpc_url(self) -> str:
        return self.rpc_url or f"http://{LOOPBACK}:{self.anvil_port}"

    @property
    def embedded_temporal_address(self) -> str:
        return f"{LOOPBACK}:{self.temporal_port}"

    @property
    def ui_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ui_port}"

    @property
    def http_url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    @property
    def effective_public_url(self) -> str:
        return (self.public_url or self.http_url).rstrip("/")

    @property
    def effective_models_path(self) -> Path:
        return self.models_path or self.home / "models"

    @property
    def sandbox_url(self) -> str:
        """Base URL of the local channel sandbox (``/telegram``, ``/openai/v1``, ``/webhooks``)."""
        return f"http://{LOOPBACK}:{self.sandbox_port}"

    @property
    def agent_model_url(self) -> str | None:
        """Where agent runs call their model: ``FLEET_OPENAI_BASE_URL``, else the sandbox's
        deterministic model when the sandbox runs (drafts keep their offline default then)."""
        if self.openai_base_url:
            return self.openai_base_url
        return f"{self.sandbox_url}/openai/v1" if self.channel_sandbox else None

    @property
    def codec_url(self) -> str:
        """Base URL of the codec endpoint (its token goes after it: ``/t/<token>``)."""
        return f"http://{LOOPBACK}:{self.codec_port}"

    @cached_property
    def uses_embedded_temporal(self) -> bool:
        """True unless a Temporal address comes from FLEET_* or Temporal's own env config
        (``TEMPORAL_ADDRESS`` or an address in the selected ``temporal.toml`` profile)."""
        if self.temporal_address is not None:
            return False
        from temporalio.envconfig import ClientConfigProfile

        try:
            profile = ClientConfigProfile.load(profile=self.temporal_profile)
        except Exception:  # an unreadable profile is reported when connecting
            return not os.environ.get("TEMPORAL_ADDRESS")
        return not profile.address

    def masked(self) -> dict[str, Any]:
        """All effective values, secrets replaced by ``**********`` (for display and logs)."""
        data = self.model_dump(mode="json")
        for name, field in type(self).model_fields.items():
            if field.annotation in (SecretStr, SecretStr | None) and data.get(name):
                data[name] = "**********"
        data["database_url"] = mask_url(self.effective_database_url)
        data["rpc_url"] = mask_url(self.effective_rpc_url)
        for name in ("openai_base_url", "telegram_api_url"):
            if data.get(name):
                data[name] = mask_url(data[name])
        return data


def mask_url(url: str) -> str:
    """``url`` safe to show: the password of ``postgresql://user:secret@host/db``, query values
    and key-like path segments (``/v3/<api key>``) masked."""
    from agentfleet.redaction import redact_url

    return redact_url(url)


def invalid_settings_line(exc: Exception) -> str:
    """One line naming the ``FLEET_*`` variable a :class:`Settings` error is about, without the
    value (which may be a secret)."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError) and exc.errors():
        first = exc.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["loc"]:
            field = "_".join(str(part) for part in first["loc"]).upper()
            return f"FLEET_{field}: {message}"
        return message
    return f"invalid FLEET_* setting: {str(exc).splitlines()[0] if str(exc) else exc!r}"


def get_settings(**overrides: Any) -> Settings:
    """Read the settings now (environment and ``.env`` as they are at this call)."""
    return Settings(**overrides)
