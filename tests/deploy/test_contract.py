"""The manifests against the code: every environment variable a container sets is a setting of the service it
runs (and the settings accept the value), every port and path matches what the app serves, every URL points
at a service that exists, and every metric a dashboard or scaler reads is one our code exports."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import pytest
import yaml

from tests.deploy.code_contract import (
    EXTERNAL_METRICS,
    SERVICE_SETTINGS_MODULES,
    THIRD_PARTY_ENV,
    defined_metric_names,
    exported_metrics,
    promql_metric_names,
    serves,
    settings_classes,
    settings_defaults,
    settings_field_for_env,
)
from tests.deploy.manifests import (
    COMPOSE_PROFILE_SETS,
    DOCKER_DIR,
    OVERLAYS,
    REPO_ROOT,
    Container,
    by_name,
    compose_model,
    objects,
    replan_containers,
)

HTTP_SERVICES = ("gateway", "planner", "editor")
#: Stand-in contents for files a manifest points a setting at (mounted Secrets), so settings load here.
FILE_STANDINS = {"REPLAN_GATEWAY_AUTH__KEYS_FILE": json.dumps([{"name": "ci", "sha256": "0" * 64}])}
#: Ports of the third-party services our URLs point at, when their command does not say.
THIRD_PARTY_PORTS = {"redis": 6379}


@pytest.fixture(scope="module")
def containers() -> list[Container]:
    found = replan_containers()
    services = {container.service for container in found}
    assert services == {"gateway", "planner", "editor", "worker"}, services
    return found


def _settings_module_port(service: str) -> int:
    return settings_defaults(SERVICE_SETTINGS_MODULES[service][0])["port"]


# ------------------------------------------------------------------------------------------- settings


def test_every_environment_variable_is_a_setting_of_its_service(containers: list[Container]) -> None:
    problems = []
    for container in containers:
        modules = SERVICE_SETTINGS_MODULES[container.service or ""]
        for name in container.env:
            if name in THIRD_PARTY_ENV:
                continue
            if settings_field_for_env(name, modules) is None:
                problems.append(f"{container.source}: {name} is no setting of {', '.join(modules)}")
    assert problems == []


def test_settings_accept_every_container_environment(containers: list[Container], tmp_path: Path) -> None:
    """Build each settings class from the container's environment, as the process will at start-up."""
    problems = []
    clean = {name: value for name, value in os.environ.items() if not name.startswith(("REPLAN_", "HF_"))}
    for index, container in enumerate(containers):
        if container.origin == "image":
            continue  # an image alone has no configuration; compose and Kubernetes give it one
        env = {name: value for name, value in container.env.items() if value != "<from valueFrom>"}
        for name, contents in FILE_STANDINS.items():
            if name in env:
                standin = tmp_path / f"{index}-{Path(env[name]).name}"
                standin.write_text(contents)
                env[name] = str(standin)
        modules = SERVICE_SETTINGS_MODULES[container.service or ""]
        with mock.patch.dict(os.environ, {**clean, **env}, clear=True):
            for cls in [c for c in settings_classes() if c.__module__ in modules]:
                try:
                    cls()
                except Exception as exc:  # ValidationError, or a validator's ValueError
                    problems.append(f"{container.source}: {cls.__name__}: {exc}")
    assert problems == []


def test_tiny_containers_really_run_the_tiny_preset(containers: list[Container]) -> None:
    """Environment values win over a preset's defaults: a model or pixel bound set for the real checkpoint
    would turn `--preset tiny` into a 7B load on CPU."""
    from replan_editor.settings import EditorSettings
    from replan_planner.settings import PlannerSettings

    tiny = [c for c in containers if c.flag("--preset") == "tiny" and c.origin != "image"]
    assert {c.service for c in tiny} == {"planner", "editor"}
    clean = {name: value for name, value in os.environ.items() if not name.startswith("REPLAN_")}
    for container in tiny:
        with mock.patch.dict(os.environ, {**clean, **container.env}, clear=True):
            if container.service == "planner":
                assert PlannerSettings(preset="tiny").is_tiny, container.source
            else:
                settings = EditorSettings(preset="tiny", device=container.flag("--device"))
                assert settings.resolved_model.startswith("tiny-"), container.source
                assert settings.resolved_device == "cpu", container.source


# ------------------------------------------------------------------------------------------- ports, paths


def _url_port(url: str) -> int | None:
    return urlsplit(url).port


def _healthcheck_urls(container: Container) -> list[str]:
    return [part for part in container.healthcheck if part.startswith("http")]


@pytest.mark.parametrize("service", HTTP_SERVICES)
def test_every_container_listens_on_the_service_port(containers: list[Container], service: str) -> None:
    port = _settings_module_port(service)
    for container in [c for c in containers if c.service == service]:
        assert container.flag("--port") == str(port), f"{container.source}: --port is not {port}"
        assert container.flag("--host") == "0.0.0.0", f"{container.source}: must listen beyond loopback"
        if container.origin == "image" or container.origin.startswith("k8s:"):
            assert container.ports == [port], f"{container.source}: exposes {container.ports}"
        else:
            assert set(container.ports) <= {port}, f"{container.source}: publishes {container.ports}"
        for url in _healthcheck_urls(container):
            assert _url_port(url) == port, f"{container.source}: health check {url}"
        for kind, (_, probe_port) in container.probes.items():
            resolved = container.port_names.get(probe_port, probe_port) if isinstance(probe_port, str) else probe_port
            assert resolved == port, f"{container.source}: {kind} port {probe_port}"


@pytest.mark.parametrize("service", HTTP_SERVICES)
def test_probe_and_health_check_paths_are_routes_of_the_app(containers: list[Container], service: str) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert serves(service, path), f"the {service} app does not serve {path}"
    for container in [c for c in containers if c.service == service]:
        paths = [urlsplit(url).path for url in _healthcheck_urls(container)]
        paths += [path for path, _ in container.probes.values()]
        assert paths, f"{container.source}: no health check or probe"
        for path in paths:
            assert serves(service, path), f"{container.source}: {path} is not served by the {service} app"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_scrape_annotations_name_the_metrics_route_and_port(overlay: str) -> None:
    for name, deployment in by_name(overlay, "Deployment").items():
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") != "true":
            continue
        ports = [p["containerPort"] for c in deployment["spec"]["template"]["spec"]["containers"] for p in c["ports"]]
        assert int(annotations["prometheus.io/port"]) in ports, name
        if name in HTTP_SERVICES:
            assert serves(name, annotations["prometheus.io/path"]), name


# ------------------------------------------------------------------------------------------- URLs


def _urls_in(values: list[str]) -> list[str]:
    urls = []
    for value in values:
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        for item in parsed if isinstance(parsed, list) else [parsed]:
            if isinstance(item, str) and re.match(r"^(https?|redis|rediss)://", item):
                urls.append(item)
    return urls


def _compose_endpoints(profiles: tuple[str, ...]) -> dict[str, int | None]:
    """Host name (service or network alias) -> the port its process listens on."""
    endpoints: dict[str, int | None] = {}
    for name, service in compose_model(profiles)["services"].items():
        command = service.get("command") or []
        port = int(command[command.index("--port") + 1]) if "--port" in command else THIRD_PARTY_PORTS.get(name)
        aliases = [
            alias
            for network in (service.get("networks") or {}).values()
            for alias in (network or {}).get("aliases", [])
        ]
        for host in (name, *aliases):
            endpoints[host] = port
    return endpoints


def _k8s_endpoints(overlay: str) -> dict[str, set[int]]:
    return {name: {p["port"] for p in svc["spec"]["ports"]} for name, svc in by_name(overlay, "Service").items()}


def test_internal_urls_point_at_services_that_exist(containers: list[Container]) -> None:
    problems = []
    compose = {"compose:" + "+".join(p): _compose_endpoints(p) for p in COMPOSE_PROFILE_SETS}
    for container in containers:
        if container.origin == "image":
            continue
        for url in _urls_in([*container.env.values(), *container.argv]):
            host, port = urlsplit(url).hostname or "", _url_port(url)
            if "." in host:  # outside the stack (hosted judge) or a full cluster name
                continue
            if container.origin in compose:
                endpoints = compose[container.origin]
                known = host in endpoints and port == endpoints[host]
            else:
                endpoints_k8s = _k8s_endpoints(container.origin.split(":", 1)[1])
                known = host in endpoints_k8s and port in endpoints_k8s[host]
            if not known:
                problems.append(f"{container.source}: {url}")
    # The judge runs in its own profile; the worker's default URL must name it.
    assert all("vllm-judge" in problem for problem in problems), problems


def test_prometheus_scrapes_every_service_on_its_port() -> None:
    config = yaml.safe_load((DOCKER_DIR / "prometheus/prometheus.yml").read_text())
    endpoints = _compose_endpoints(("gpu", "gpus-8", "cpu"))
    endpoints["redis-exporter"] = 9121  # oliver006/redis_exporter's port
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for service in (*HTTP_SERVICES, "vllm", "redis"):
        assert service in jobs, f"Prometheus does not scrape {service}"
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                if host != "localhost":
                    assert endpoints.get(host) == int(port), f"{job['job_name']}: {target}"
        for dns in job.get("dns_sd_configs", []):
            for name in dns["names"]:
                assert endpoints.get(name) == dns["port"], f"{job['job_name']}: {name}:{dns['port']}"


# ------------------------------------------------------------------------------------------- vLLM, Celery


def _vllm_args() -> list[tuple[str, list[str]]]:
    args = [("compose", compose_model(("gpu",))["services"]["vllm"]["command"])]
    (vllm,) = by_name("gpu", "Deployment")["vllm"]["spec"]["template"]["spec"]["containers"]
    return [*args, ("k8s/gpu", vllm["args"])]


def _planner_env(origin: str) -> dict[str, str]:
    if origin == "compose":
        return compose_model(("gpu",))["services"]["planner"]["environment"]
    (config,) = [cm for cm in objects("gpu", "ConfigMap") if cm["metadata"]["name"].startswith("planner-config")]
    return config["data"]


def _flag(args: list[str], name: str) -> str:
    assert name in args, f"vLLM is started without {name}"
    return args[args.index(name) + 1]


def test_vllm_serves_what_the_planner_asks_for() -> None:
    """Served name = the planner's model; the processor resizes as the planner's box mapping assumes; the
    context holds the largest image plus the longest answer."""
    from replan_common.protocol import PlanOptions
    from replan_planner.settings import PlannerSettings

    for origin, args in _vllm_args():
        env = _planner_env(origin)
        defaults = PlannerSettings.model_fields
        model = env.get("REPLAN_PLANNER_MODEL", defaults["model"].default)
        assert _flag(args, "--served-model-name") == model, origin
        pixels = json.loads(_flag(args, "--mm-processor-kwargs"))
        assert pixels["min_pixels"] == int(env.get("REPLAN_PLANNER_MIN_PIXELS", defaults["min_pixels"].default)), origin
        assert pixels["max_pixels"] == int(env.get("REPLAN_PLANNER_MAX_PIXELS", defaults["max_pixels"].default)), origin
        assert json.loads(_flag(args, "--limit-mm-per-prompt"))["image"] == 1, origin
        visual_tokens = pixels["max_pixels"] // (28 * 28)  # one token per 28x28 patch after merging
        answer_tokens = PlanOptions.model_fields["max_new_tokens"].default
        assert int(_flag(args, "--max-model-len")) >= visual_tokens + answer_tokens, origin


def _celery_lists() -> dict[str, set[str]]:
    """Queue -> the Redis lists Celery's transport writes its routed messages to (`queue`, `queue:<step>`)."""
    from replan_eval.celery_app import QUEUE_ORDER, create_celery_app
    from replan_eval.settings import EvalSettings

    app = create_celery_app(EvalSettings(broker_url="redis://redis:6379/0"))
    options = app.conf.broker_transport_options
    steps, sep = sorted(options["priority_steps"]), options["sep"]
    lists = {}
    for queue in QUEUE_ORDER:
        route = app.amqp.router.route({}, f"replan.{queue}.any")
        assert route["queue"].name == queue
        step = max(s for s in steps if s <= route.get("priority", 0))  # kombu's Channel.priority()
        lists[queue] = {queue, f"{queue}{sep}{step}" if step else queue}
    return lists


def test_worker_scalers_read_the_lists_celery_writes() -> None:
    lists = _celery_lists()
    scaled = {}
    for scaled_object in objects("gpu", "ScaledObject"):
        names = {t["metadata"]["listName"] for t in scaled_object["spec"]["triggers"] if t["type"] == "redis"}
        if names:
            scaled[scaled_object["spec"]["scaleTargetRef"]["name"]] = names
    workers = {w["metadata"]["name"]: w for w in objects("gpu", "Deployment") if w["metadata"]["name"] in scaled}
    for name, names in scaled.items():
        args = workers[name]["spec"]["template"]["spec"]["containers"][0]["args"]
        queues = args[args.index("--queues") + 1].split(",")
        expected = set().union(*(lists[queue] for queue in queues))
        assert names == expected, f"ScaledObject {name} reads {sorted(names)}; Celery writes {sorted(expected)}"
    consumed = [q for w in workers.values() for q in _queues_of(w)]
    assert sorted(consumed) == sorted(lists), "every queue is consumed by exactly one scaled worker"


def _queues_of(workload: dict[str, Any]) -> list[str]:
    args = workload["spec"]["template"]["spec"]["containers"][0]["args"]
    return args[args.index("--queues") + 1].split(",")


def test_scalers_and_exporter_read_the_broker_database() -> None:
    (jobs_config,) = [cm for cm in objects("gpu", "ConfigMap") if cm["metadata"]["name"].startswith("jobs-config")]
    broker_db = urlsplit(jobs_config["data"]["REPLAN_WORKER_BROKER_URL"]).path.strip("/")
    for scaled_object in objects("gpu", "ScaledObject"):
        for trigger in scaled_object["spec"]["triggers"]:
            if trigger["type"] == "redis":
                assert trigger["metadata"]["databaseIndex"] == broker_db
    services = compose_model(("gpu",))["services"]
    compose_db = urlsplit(services["worker"]["environment"]["REPLAN_WORKER_BROKER_URL"]).path.strip("/")
    keys = services["redis-exporter"]["environment"]["REDIS_EXPORTER_CHECK_SINGLE_KEYS"].split(",")
    assert {key.split("=")[0] for key in keys} == {f"db{compose_db}"}
    assert {key.split("=")[1] for key in keys} == set().union(*_celery_lists().values())


# ------------------------------------------------------------------------------------------- metrics


def _dashboard_queries() -> list[tuple[str, str]]:
    queries = []
    for path in sorted((DOCKER_DIR / "grafana/dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                queries.append((f"{path.name}: {panel['title']}", target["expr"]))
    return queries


def _scaler_queries() -> list[tuple[str, str]]:
    return [
        (f"ScaledObject {o['metadata']['name']}", t["metadata"]["query"])
        for overlay in OVERLAYS
        for o in objects(overlay, "ScaledObject")
        for t in o["spec"]["triggers"]
        if t["type"] == "prometheus"
    ]


def test_promql_metric_names_are_read_correctly() -> None:
    expression = (
        "histogram_quantile(0.95, sum by (le, service) (rate(replan_http_request_duration_seconds_bucket"
        '{status=~"5..", route="/v1/edit"}[$__rate_interval]))) + sum(vllm:num_requests_waiting) * 2'
    )
    assert promql_metric_names(expression) == {
        "replan_http_request_duration_seconds_bucket",
        "vllm:num_requests_waiting",
    }


def test_every_metric_a_dashboard_or_scaler_reads_is_exported() -> None:
    exported = exported_metrics()
    queries = _dashboard_queries() + _scaler_queries()
    assert len(queries) > 10
    problems = []
    for where, expression in queries:
        for name in promql_metric_names(expression):
            if name not in exported and name not in EXTERNAL_METRICS:
                problems.append(f"{where}: {name}")
    assert problems == []


def test_the_metric_registries_here_cover_every_metric_the_code_defines() -> None:
    families = set(exported_metrics().values())
    missing = {name: path for name, path in defined_metric_names().items() if name not in families}
    assert missing == {}, "add these modules' metrics classes to code_contract.METRIC_REGISTRIES"


def test_route_labels_in_queries_are_routes_of_that_service() -> None:
    for where, expression in _dashboard_queries() + _scaler_queries():
        for selector in re.findall(r"\{([^}]*)\}", expression):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', selector))
            if "route" in labels:
                assert labels.get("service") in HTTP_SERVICES, f"{where}: route without service"
                assert serves(labels["service"], labels["route"]), f"{where}: {labels}"


def test_operations_doc_lists_every_exported_metric() -> None:
    doc = (REPO_ROOT / "docs/operations.md").read_text()
    missing = sorted({family for family in exported_metrics().values() if f"`{family}" not in doc})
    assert missing == [], "add these to the metric reference in docs/operations.md"
