"""The production compose stack is valid and self-consistent, without a Docker engine.

Checks what ``docker compose config`` and a first ``up`` would catch: the file against the Compose
Specification, addresses that must name services of the stack, files mounted from the repo, and the
Grafana dashboard's datasources.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
PROMETHEUS_FILE = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA_PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
DASHBOARD_FILE = ROOT / "deploy" / "grafana" / "dashboards" / "fleet.json"

# Grafana's own pseudo datasources, never provisioned.
BUILTIN_DATASOURCES = {"grafana", "-- Grafana --", "-- Mixed --", "-- Dashboard --"}

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def _interpolate_text(text: str) -> str:
    """Compose interpolation with every variable unset: defaults apply, the rest is empty."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["op"] in ("-", ":-"):
            return match["arg"]
        return ""

    return _VARIABLE.sub(replace, text)


def interpolate(value: Any) -> Any:
    if isinstance(value, str):
        return _interpolate_text(value)
    if isinstance(value, list):
        return [interpolate(item) for item in value]
    if isinstance(value, dict):
        return {key: interpolate(item) for key, item in value.items()}
    return value


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def compose_raw() -> dict[str, Any]:
    """The compose file as written (YAML anchors and merge keys resolved, no interpolation)."""
    data = load_yaml(COMPOSE_FILE)
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    return data


def services() -> dict[str, Any]:
    found = compose_raw().get("services")
    assert isinstance(found, dict) and found, "docker-compose.yml defines no services"
    return found


def environment(service: str) -> dict[str, str]:
    """A service's environment as a mapping, whichever of the two syntaxes the file uses."""
    env = services()[service].get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) for item in env)
        return {pair[0]: pair[1] if len(pair) > 1 else "" for pair in pairs}
    return {key: "" if value is None else str(value) for key, value in env.items()}


def host_of(address: str) -> str:
    """Host of a URL (``scheme://user:pw@host:port/db``) or of a bare ``host:port``."""
    parsed = urlsplit(address if "://" in address else f"//{address}")
    assert parsed.hostname, f"no host in {address!r}"
    return parsed.hostname


def compose_spec() -> dict[str, Any]:
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema: dict[str, Any] = json.loads(vendored.read_text(encoding="utf-8"))
    return schema


def test_compose_file_matches_compose_spec() -> None:
    schema = compose_spec()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    errors = sorted(
        validator.iter_errors(interpolate(compose_raw())), key=lambda e: list(e.absolute_path)
    )
    assert not errors, "\n".join(
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in errors
    )


def internal_addresses() -> Iterator[tuple[str, str, str]]:
    """(service, variable, address) for every address a service reaches inside the stack.

    A value that is wholly a ``${...}`` placeholder points outside the stack (an RPC provider, an
    LLM endpoint) and is left out.
    """
    required = {
        "worker": {"FLEET_TEMPORAL_ADDRESS", "FLEET_DATABASE_URL"},
        "http": {"FLEET_TEMPORAL_ADDRESS", "FLEET_DATABASE_URL"},
        "temporal-ui": {"TEMPORAL_ADDRESS"},
    }
    for service in services():
        env = environment(service)
        missing = required.get(service, set()) - env.keys()
        assert not missing, f"service {service} lacks {sorted(missing)}"
        for name, raw in env.items():
            is_address = name == "TEMPORAL_ADDRESS" or (
                name.startswith("FLEET_") and name.endswith(("_ADDRESS", "_URL"))
            )
            if is_address and not raw.startswith("${"):
                yield service, name, _interpolate_text(raw)


def test_service_addresses_name_services_of_the_stack() -> None:
    known = set(services())
    addresses = list(internal_addresses())
    assert {"worker", "http", "temporal-ui"} <= {service for service, _, _ in addresses}
    wrong = [
        f"{service}: {name}={address}"
        for service, name, address in addresses
        if host_of(address) not in known
    ]
    assert not wrong, f"addresses naming no compose service: {wrong}"


def test_prometheus_scrapes_only_services_of_the_stack() -> None:
    config = load_yaml(PROMETHEUS_FILE)
    targets = [
        (job["job_name"], target)
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static.get("targets", [])
    ]
    assert any(host_of(t) == "worker" for _, t in targets), "Prometheus does not scrape the worker"
    assert any(host_of(t) == "temporal" for _, t in targets), "Prometheus does not scrape Temporal"
    known = set(services())
    wrong = [f"{job}: {target}" for job, target in targets if host_of(target) not in known]
    assert not wrong, f"scrape targets naming no compose service: {wrong}"


def repo_mounts() -> Iterator[tuple[str, Path, str]]:
    """(service, path in the repo, container target) for every bind mount of a repo path."""
    for name, service in services().items():
        for volume in service.get("volumes", []):
            if isinstance(volume, str):
                source, _, rest = volume.partition(":")
                target = rest.split(":", 1)[0]
            else:
                source, target = volume.get("source", ""), volume.get("target", "")
            if source.startswith((".", "/")):
                yield name, (ROOT / source).resolve(), target


def test_every_file_mounted_from_the_repo_exists() -> None:
    mounts = list(repo_mounts())
    assert mounts, "the compose file mounts nothing from the repo"
    missing = [f"{service}: {path}" for service, path, _ in mounts if not path.exists()]
    for name, service in services().items():
        build = service.get("build")
        if build is None:
            continue
        context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
        dockerfile = (
            "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        )
        if not (context / dockerfile).is_file():
            missing.append(f"{name}: {context / dockerfile}")
    assert not missing, f"mounted or built from the repo but missing: {missing}"


def provisioned_datasources() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in sorted((GRAFANA_PROVISIONING / "datasources").glob("*.y*ml")):
        found += load_yaml(path).get("datasources", [])
    return found


def datasource_refs(node: Any) -> Iterator[Any]:
    """Every value of a ``datasource`` key anywhere in a dashboard (panels, targets, variables)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield value
            yield from datasource_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from datasource_refs(item)


def test_grafana_dashboard_uses_only_provisioned_datasources() -> None:
    dashboard = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    assert dashboard.get("panels"), "the dashboard has no panels"
    provisioned = provisioned_datasources()
    uids = {ds["uid"] for ds in provisioned if "uid" in ds}
    names = {ds["name"] for ds in provisioned}
    refs = [ref for ref in datasource_refs(dashboard) if ref is not None]
    assert refs, "the dashboard references no datasource"
    unknown = []
    for ref in refs:
        if isinstance(ref, dict):
            ok = ref.get("uid") in uids | BUILTIN_DATASOURCES
        else:
            ok = ref in names | BUILTIN_DATASOURCES
        if not ok:
            unknown.append(ref)
    assert not unknown, f"datasources not provisioned under {GRAFANA_PROVISIONING}: {unknown}"


def test_grafana_reads_dashboards_from_the_mounted_folder() -> None:
    providers = [
        provider
        for path in sorted((GRAFANA_PROVISIONING / "dashboards").glob("*.y*ml"))
        for provider in load_yaml(path).get("providers", [])
    ]
    assert providers, "no Grafana dashboard provider is provisioned"
    mounted = {target: path for service, path, target in repo_mounts() if service == "grafana"}
    for provider in providers:
        folder = mounted.get(provider["options"]["path"].rstrip("/"))
        assert folder == DASHBOARD_FILE.parent, (
            f"provider {provider['name']} reads {provider['options']['path']}, "
            f"which is not where the compose file mounts {DASHBOARD_FILE.parent}"
        )


def test_grafana_datasources_point_at_services_of_the_stack() -> None:
    urls = [ds["url"] for ds in provisioned_datasources() if "url" in ds]
    assert urls, "no Grafana datasource with a URL is provisioned"
    wrong = [url for url in urls if host_of(url) not in services()]
    assert not wrong, f"datasource URLs naming no compose service: {wrong}"


DOCKERFILE = ROOT / "Dockerfile"


def dockerfile_fleet_home() -> str:
    match = re.search(r"FLEET_HOME=(\S+)", DOCKERFILE.read_text(encoding="utf-8"))
    assert match, "the Dockerfile sets no FLEET_HOME"
    return match.group(1)


def test_fleet_home_of_worker_and_http_is_a_named_volume_the_image_prepares() -> None:
    """The worker's state (models, generated secrets) survives containers being recreated."""
    home = dockerfile_fleet_home()
    declared = set(compose_raw().get("volumes") or {})
    for name in ("worker", "http"):
        mounts = services()[name].get("volumes", [])
        named = [
            volume.split(":")[0]
            for volume in mounts
            if isinstance(volume, str) and volume.split(":")[1] == home
        ]
        assert named and named[0] in declared, f"{name} keeps {home} on no named volume"
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(rf"install -d -o fleet -g fleet -m 0700 {re.escape(home)}", dockerfile), (
        "the image must create FLEET_HOME owned by the fleet user, or the volume is root's"
    )


def required(value: str, variable: str) -> bool:
    return value.startswith(f"${{{variable}:?") and value.endswith("}")


def test_secrets_without_a_safe_default_are_required() -> None:
    worker = environment("worker")
    assert required(worker["FLEET_KEYSTORE_SECRET"], "FLEET_KEYSTORE_SECRET")
    for service in ("worker", "http", "fleet-setup", "codec"):
        assert required(environment(service)["FLEET_PAYLOAD_KEY"], "FLEET_PAYLOAD_KEY"), service
    assert required(environment("codec")["FLEET_CODEC_TOKEN"], "FLEET_CODEC_TOKEN")
    # Only the worker opens the wallets' keys; the others never see their master secret.
    holders = [s for s in services() if "FLEET_KEYSTORE_SECRET" in environment(s)]
    assert holders == ["worker"]
    assert environment("worker")["FLEET_NETWORK"].startswith("${FLEET_NETWORK:-")
    assert "local" not in environment("worker")["FLEET_NETWORK"]


def test_the_codec_is_its_own_service_published_on_loopback_only() -> None:
    codec = services()["codec"]
    assert codec["command"] == ["python", "-m", "starters.codec"]
    assert codec.get("ports") == ["127.0.0.1:8330:8330"]
    env = environment("codec")
    assert env["FLEET_CODEC_BIND_HOST"] == "0.0.0.0"  # noqa: S104 - inside its container
    assert "FLEET_DATABASE_URL" not in env and "FLEET_KEYSTORE_SECRET" not in env
    ui = environment("temporal-ui")["TEMPORAL_CODEC_ENDPOINT"]
    assert ui.startswith("${FLEET_CODEC_PUBLIC_URL:-http://localhost:8330}/t/")
    assert required(ui.split("/t/", 1)[1], "FLEET_CODEC_TOKEN")
    for name, service in services().items():
        if name != "codec":
            assert "starters.codec" not in json.dumps(service.get("command", [])), name
