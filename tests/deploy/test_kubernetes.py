"""The Kubernetes overlays: every object valid for Kubernetes (kubernetes-validate, strict) or its CRD (KEDA),
and the operational rules of DESIGN §7 hold: GPUs only where they belong, probes sized for model loads,
disruption budgets, only the gateway reachable from outside."""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.manifests import OVERLAYS, WORKLOAD_KINDS, by_name, objects, pod_spec, render_overlay

SCHEMA_DIR = Path(__file__).parent / "schemas"
#: Oldest Kubernetes we support (policy/v1, networking/v1, batch/v1 TTL all GA well before) and the newest
#: schema kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
#: Kinds defined by CRDs, validated against our vendored schemas instead.
CRD_KINDS = {"ScaledObject": "keda-scaledobject-v1alpha1.yaml"}
#: Deployments that load a model before they can serve, and the least startup budget they get.
MODEL_LOADERS = {"editor": 600, "vllm": 600}
GPU_DEPLOYMENTS = ("editor", "vllm")
#: Celery workers: no HTTP, no Service.
WORKERS = ("worker", "worker-judge")


def load_schema(name: str) -> dict[str, Any]:
    return yaml.safe_load((SCHEMA_DIR / name).read_text())


@pytest.fixture(autouse=True, scope="module")
def _cached_kubernetes_schemas() -> Iterator[None]:
    """kubernetes-validate re-reads its multi-megabyte schema files for every object; read each once."""
    original = kubernetes_validate.utils.schema_contents
    kubernetes_validate.utils.schema_contents = functools.cache(original)
    yield
    kubernetes_validate.utils.schema_contents = original


def kubernetes_errors(obj: dict[str, Any], version: str) -> str | None:
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        return f"{'.'.join(map(str, error.path))}: {error.message}"
    return None


def crd_errors(obj: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(load_schema(CRD_KINDS[obj["kind"]]))
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]


def _id(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_kubernetes(overlay: str, version: str) -> None:
    problems = []
    for obj in render_overlay(overlay):
        if obj["kind"] in CRD_KINDS:
            continue
        try:
            error = kubernetes_errors(obj, version)
        except kubernetes_validate.SchemaNotFoundError:
            error = "no Kubernetes schema for this kind (a CRD? add its schema to CRD_KINDS)"
        if error:
            problems.append(f"{_id(obj)}: {error}")
    assert problems == []


def test_strict_validation_rejects_an_unknown_field() -> None:
    """The validator is live and strict: a misspelt field in a Deployment fails."""
    deployment = copy.deepcopy(by_name("gpu", "Deployment")["gateway"])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"periodSeconds": 5}
    error = kubernetes_errors(deployment, KUBERNETES_VERSIONS[0])
    assert error is not None and "readinesProbe" in error


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_are_valid_for_their_crd(overlay: str) -> None:
    problems = [
        f"{_id(obj)}: {error}"
        for obj in render_overlay(overlay)
        if obj["kind"] in CRD_KINDS
        for error in crd_errors(obj)
    ]
    assert problems == []


def test_gpu_overlay_scales_worker_editor_and_vllm_with_keda() -> None:
    scaled = by_name("gpu", "ScaledObject")
    assert sorted(scaled) == ["editor", "vllm", "worker", "worker-judge"]
    deployments = by_name("gpu", "Deployment")
    for name, scaled_object in scaled.items():
        assert scaled_object["spec"]["scaleTargetRef"]["name"] in deployments, name


def test_keda_schema_rejects_integer_metadata_and_typos() -> None:
    scaled_object = copy.deepcopy(by_name("gpu", "ScaledObject")["worker"])
    scaled_object["spec"]["triggers"][0]["metadata"]["listLength"] = 10
    scaled_object["spec"]["cooldownPeriode"] = 300
    errors = " ".join(crd_errors(scaled_object))
    assert "is not of type 'string'" in errors and "cooldownPeriode" in errors


def test_keda_trigger_metadata_is_what_the_scalers_parse() -> None:
    schemas = load_schema("keda-trigger-metadata.yaml")
    problems = []
    for scaled_object in objects("gpu", "ScaledObject"):
        for trigger in scaled_object["spec"]["triggers"]:
            assert trigger["type"] in schemas, f"no metadata schema for KEDA trigger type {trigger['type']}"
            validator = jsonschema.Draft202012Validator(schemas[trigger["type"]])
            problems += [
                f"{_id(scaled_object)} {trigger.get('name')}: {e.message}"
                for e in validator.iter_errors(trigger["metadata"])
            ]
    assert problems == []


def test_keda_reaches_redis_by_its_full_service_name() -> None:
    """KEDA's operator runs in its own namespace, so `redis:6379` would not resolve there."""
    namespace = by_name("gpu", "Namespace")
    (name,) = namespace
    redis_port = by_name("gpu", "Service")["redis"]["spec"]["ports"][0]["port"]
    for trigger in [t for o in objects("gpu", "ScaledObject") for t in o["spec"]["triggers"] if t["type"] == "redis"]:
        assert trigger["metadata"]["address"] == f"redis.{name}.svc.cluster.local:{redis_port}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gpus_are_requested_only_by_gpu_workloads(overlay: str) -> None:
    for workload in objects(overlay, "Deployment") + objects(overlay, "Job"):
        spec = pod_spec(workload)
        name = workload["metadata"]["name"]
        gpus = [c["resources"].get("limits", {}).get("nvidia.com/gpu") for c in spec["containers"] if "resources" in c]
        wants_gpu = overlay == "gpu" and name in GPU_DEPLOYMENTS
        if wants_gpu:
            assert gpus == ["1"], f"{name}: one GPU per pod"
            assert spec.get("runtimeClassName") == "nvidia", name
            assert any(t["key"] == "nvidia.com/gpu" for t in spec.get("tolerations", [])), name
            assert any(v.get("emptyDir", {}).get("medium") == "Memory" for v in spec["volumes"]), f"{name}: /dev/shm"
        else:
            assert not any(gpus), f"{overlay}: {name} requests a GPU"
            assert "runtimeClassName" not in spec, f"{overlay}: {name}"


def test_dev_cpu_overlay_runs_the_tiny_preset_without_vllm() -> None:
    deployments = by_name("dev-cpu", "Deployment")
    assert "vllm" not in deployments and not objects("dev-cpu", "ScaledObject")
    for name in ("planner", "editor"):
        args = deployments[name]["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--preset") + 1] == "tiny", name


def _probe_budget_s(probe: dict[str, Any]) -> int:
    return probe.get("initialDelaySeconds", 0) + probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_check_readiness_liveness_and_model_load_time(overlay: str) -> None:
    for name, deployment in by_name(overlay, "Deployment").items():
        if name in WORKERS:
            continue  # no HTTP, no probes; see test_workers_have_no_port_and_no_probe...
        (container,) = pod_spec(deployment)["containers"]
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert kind in container, f"{name} has no {kind}"
        if name == "vllm":  # vLLM's own server: /health is its only probe route
            assert {container[k]["httpGet"]["path"] for k in ("readinessProbe", "livenessProbe")} == {"/health"}
        else:
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        if name in MODEL_LOADERS:
            budget = _probe_budget_s(container["startupProbe"])
            assert budget >= MODEL_LOADERS[name], f"{name}: startup budget {budget} s is too short for a model load"
            assert deployment["spec"]["progressDeadlineSeconds"] >= budget, name


@pytest.mark.parametrize("worker", WORKERS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workers_have_no_port_and_no_probe_that_could_kill_them_mid_task(overlay: str, worker: str) -> None:
    """A solo-pool Celery worker answers pings only between tasks: a liveness probe would kill busy workers."""
    (container,) = pod_spec(by_name(overlay, "Deployment")[worker])["containers"]
    assert "ports" not in container
    assert not {"startupProbe", "readinessProbe", "livenessProbe"} & set(container), worker


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        present = expression["key"] in labels
        value = labels.get(expression["key"])
        operator = expression["operator"]
        if operator == "In" and value not in expression["values"]:
            return False
        if operator == "NotIn" and value in expression["values"]:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_has_a_disruption_budget_that_allows_drains(overlay: str) -> None:
    budgets = objects(overlay, "PodDisruptionBudget")
    for name, deployment in by_name(overlay, "Deployment").items():
        matching = [b for b in budgets if _selects(b["spec"]["selector"], _pod_labels(deployment))]
        assert len(matching) == 1, f"{name}: {len(matching)} PodDisruptionBudgets"
        spec = matching[0]["spec"]
        replicas = deployment["spec"].get("replicas", 1)
        if "minAvailable" in spec:
            assert spec["minAvailable"] < replicas, f"{name}: minAvailable {spec['minAvailable']} blocks drains"
        else:
            assert spec["maxUnavailable"] >= 1, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_and_selectors_reach_pods(overlay: str) -> None:
    workloads = [w for w in render_overlay(overlay) if w["kind"] in ("Deployment", "StatefulSet")]
    for workload in workloads:
        selector = workload["spec"]["selector"]
        assert _selects(selector, _pod_labels(workload)), workload["metadata"]["name"]
    for name, service in by_name(overlay, "Service").items():
        targets = [w for w in workloads if _selects({"matchLabels": service["spec"]["selector"]}, _pod_labels(w))]
        assert len(targets) == 1, f"Service {name} selects {len(targets)} workloads"
        ports = {
            p.get("name"): p["containerPort"] for c in pod_spec(targets[0])["containers"] for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            assert target in ports or target in ports.values(), f"Service {name}: no container port {target}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_gateway_is_reachable_from_outside(overlay: str) -> None:
    (ingress,) = objects(overlay, "Ingress")
    backends = {
        path["backend"]["service"]["name"] for rule in ingress["spec"]["rules"] for path in rule["http"]["paths"]
    }
    assert backends == {"gateway"}
    assert all(s["spec"].get("type", "ClusterIP") == "ClusterIP" for s in objects(overlay, "Service"))
    policies = objects(overlay, "NetworkPolicy")
    default_deny = [p for p in policies if p["spec"]["podSelector"] == {} and "ingress" not in p["spec"]]
    assert default_deny and default_deny[0]["spec"]["policyTypes"] == ["Ingress"]
    pods = {
        w["metadata"]["name"]: _pod_labels(w)
        for w in render_overlay(overlay)
        if w["kind"] in ("Deployment", "StatefulSet")
    }
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            sources = rule.get("from")
            open_to_all = sources is None or any(not source for source in sources)
            selected = [name for name, labels in pods.items() if _selects(policy["spec"]["podSelector"], labels)]
            if open_to_all:
                assert selected == ["gateway"], f"{policy['metadata']['name']} opens {selected} to any source"
            else:  # other namespaces only as named: KEDA (reads Redis) and monitoring (scrapes /metrics)
                for source in sources:
                    if "namespaceSelector" in source:
                        allowed = source["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                        assert allowed in ("keda", "monitoring"), policy["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_and_secret_references_exist(overlay: str) -> None:
    configmaps = set(by_name(overlay, "ConfigMap"))
    claims = set(by_name(overlay, "PersistentVolumeClaim"))
    for workload in render_overlay(overlay):
        if workload["kind"] not in WORKLOAD_KINDS:
            continue
        spec = pod_spec(workload)
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in configmaps, workload["metadata"]["name"]
                if "secretRef" in source:  # created by hand (docs/operations.md): must be optional
                    assert source["secretRef"].get("optional") is True, workload["metadata"]["name"]
        for volume in spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, workload["metadata"]["name"]
