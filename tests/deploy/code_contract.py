"""What the services' code actually offers, for checking the manifests against it.

Settings classes are found by importing every `settings` module of our packages (so a new one is picked up
without editing this file); environment variable names are resolved the way pydantic-settings reads them
(prefix, `__` nesting, validation aliases). Exported metric names come from the real metrics classes
registered in fresh registries; `defined_metric_names` reads the sources so a metrics class missing from
`METRIC_REGISTRIES` is noticed. Route paths come from each service's real `create_app`.
"""

from __future__ import annotations

import ast
import importlib
import re
import types
import typing
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import AliasChoices, BaseModel
from pydantic_settings import BaseSettings

PACKAGES = ("replan_common", "replan_planner", "replan_editor", "replan_gateway", "replan_eval")

#: `replan serve <service>` -> the settings modules that process reads.
SERVICE_SETTINGS_MODULES = {
    # The gateway also builds the worker's Celery app (REPLAN_WORKER_BROKER_URL) to send jobs.
    "gateway": ("replan_gateway.settings", "replan_common.jobs.settings", "replan_eval.settings"),
    "planner": ("replan_planner.settings",),
    "editor": ("replan_editor.settings",),
    "worker": ("replan_eval.settings", "replan_common.jobs.settings"),
}

#: Environment variables of other software that our containers set on purpose, and who reads them.
THIRD_PARTY_ENV = {
    "HF_HOME": "huggingface_hub: cache root (/models/hf on the model volume)",
    "HF_HUB_OFFLINE": "huggingface_hub: never call the hub; weights must be local",
    "HF_TOKEN": "huggingface_hub: token for gated checkpoints (FLUX.1 Kontext dev)",
    "TORCHINDUCTOR_CACHE_DIR": "torch.compile: persistent kernel cache",
    "PYTHONUNBUFFERED": "CPython: unbuffered stdout for container logs",
    "PYTHONDONTWRITEBYTECODE": "CPython: no .pyc writes (read-only root filesystem)",
    "PATH": "the venv's bin directory",
    "NVIDIA_VISIBLE_DEVICES": "NVIDIA container runtime: expose GPUs",
    "NVIDIA_DRIVER_CAPABILITIES": "NVIDIA container runtime: driver libraries to mount",
}

#: Metrics other software exports that dashboards and scalers may use, with where they are documented.
EXTERNAL_METRICS = {
    "vllm:num_requests_waiting": "vLLM docs, Production Metrics",
    "vllm:num_requests_running": "vLLM docs, Production Metrics",
    "vllm:e2e_request_latency_seconds_bucket": "vLLM docs, Production Metrics",
    "vllm:time_to_first_token_seconds_bucket": "vLLM docs, Production Metrics",
    "vllm:generation_tokens_total": "vLLM docs, Production Metrics",
    "vllm:prompt_tokens_total": "vLLM docs, Production Metrics",
    "redis_key_size": "oliver006/redis_exporter: LLEN of the keys in REDIS_EXPORTER_CHECK_SINGLE_KEYS",
}


# -------------------------------------------------------------------------------------------- settings


def _import(name: str) -> types.ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        pytest.fail(f"cannot import {name}: {exc} (has that service landed?)")


@cache
def settings_classes() -> tuple[type[BaseSettings], ...]:
    """Every `BaseSettings` subclass with an env prefix, defined in a `settings.py` of our packages.

    Found by file name, so only settings modules are imported (not the pipelines beside them).
    """
    found: list[type[BaseSettings]] = []
    for package_name in PACKAGES:
        root = Path(_import(package_name).__path__[0])
        for path in sorted(root.rglob("settings.py")):
            parts = path.relative_to(root).with_suffix("").parts
            module = _import(".".join((package_name, *parts)))
            for value in vars(module).values():
                if (
                    isinstance(value, type)
                    and issubclass(value, BaseSettings)
                    and value.__module__ == module.__name__
                    and value.model_config.get("env_prefix")
                ):
                    found.append(value)
    return tuple(found)


def _model_type(annotation: Any) -> Any:
    """`X | None` -> X; other annotations unchanged."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _resolves(model: type[BaseModel], path: list[str]) -> bool:
    field = model.model_fields.get(path[0])
    if field is None:
        return False
    if len(path) == 1:
        return True
    inner = _model_type(field.annotation)
    if isinstance(inner, type) and issubclass(inner, BaseModel):
        return _resolves(inner, path[1:])
    return typing.get_origin(inner) is dict  # any key of a dict field


def _aliases(field: Any) -> list[str]:
    alias = field.validation_alias
    if isinstance(alias, str):
        return [alias]
    if isinstance(alias, AliasChoices):
        return [choice for choice in alias.choices if isinstance(choice, str)]
    return []


def settings_field_for_env(name: str, modules: tuple[str, ...]) -> str | None:
    """`Class.field.sub` that the environment variable `name` sets, among the settings of `modules`."""
    for cls in settings_classes():
        if cls.__module__ not in modules:
            continue
        for field_name, field in cls.model_fields.items():
            if any(alias.upper() == name.upper() for alias in _aliases(field)):
                return f"{cls.__name__}.{field_name}"
        prefix = cls.model_config.get("env_prefix", "").upper()
        delimiter = cls.model_config.get("env_nested_delimiter") or "__"
        if name.upper().startswith(prefix):
            path = name[len(prefix) :].lower().split(delimiter)
            if _resolves(cls, path):
                return f"{cls.__name__}.{'.'.join(path)}"
    return None


def settings_defaults(module: str) -> dict[str, Any]:
    """Field defaults of the settings class of `module` (its only prefixed `BaseSettings`)."""
    classes = [cls for cls in settings_classes() if cls.__module__ == module]
    assert len(classes) == 1, f"{module}: expected one settings class, found {classes}"
    return {name: field.default for name, field in classes[0].model_fields.items()}


# -------------------------------------------------------------------------------------------- metrics


def _common() -> CollectorRegistry:
    from replan_common.metrics import ServiceMetrics

    return ServiceMetrics("test").registry


def _editor() -> CollectorRegistry:
    from replan_common.metrics import ServiceMetrics
    from replan_editor.metrics import EditorMetrics

    service = ServiceMetrics("editor")
    EditorMetrics(service)
    return service.registry


def _planner() -> CollectorRegistry:
    from replan_planner.metrics import PlannerMetrics

    registry = CollectorRegistry()
    PlannerMetrics(registry)
    return registry


def _gateway() -> CollectorRegistry:
    from replan_common.metrics import ServiceMetrics
    from replan_gateway.metrics import GatewayMetrics

    service = ServiceMetrics("gateway")
    GatewayMetrics(service)
    return service.registry


#: Each metrics class of our code, instantiated in a fresh registry.
METRIC_REGISTRIES: dict[str, Callable[[], CollectorRegistry]] = {
    "common": _common,
    "editor": _editor,
    "planner": _planner,
    "gateway": _gateway,
}

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "gauge": ("",),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}


@cache
def exported_metrics() -> dict[str, str]:
    """Every series name our code can export (`replan_x_total`, `replan_y_bucket`...) -> metric family."""
    names: dict[str, str] = {}
    for factory in METRIC_REGISTRIES.values():
        for family in factory().collect():
            for suffix in _SUFFIXES.get(family.type, ("",)):
                names[family.name + suffix] = family.name
            for sample in family.samples:
                names[sample.name] = family.name
    return names


_METRIC_CONSTRUCTORS = {"Counter", "Gauge", "Histogram", "Summary", "Info"}


def defined_metric_names() -> dict[str, str]:
    """Metric names passed as literals to prometheus_client constructors in our sources -> file."""
    found: dict[str, str] = {}
    for package_name in PACKAGES:
        package = _import(package_name)
        for path in Path(package.__path__[0]).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                func = node.func
                called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                first = node.args[0]
                if (
                    called in _METRIC_CONSTRUCTORS
                    and isinstance(first, ast.Constant)
                    and isinstance(first.value, str)
                    and first.value.startswith("replan_")
                ):
                    name = first.value
                    if called == "Counter" and name.endswith("_total"):
                        name = name[: -len("_total")]  # prometheus_client strips it from the family name
                    found[name] = str(path)
    return found


_PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
    "inf", "nan",
}  # fmt: skip


def promql_metric_names(expression: str) -> set[str]:
    """Metric names an expression reads: identifiers that are not functions, keywords or label names."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expression)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)  # label lists
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        word = match.group(0)
        following = text[match.end() :].lstrip()
        if following.startswith("(") or word.lower() in _PROMQL_WORDS:
            continue
        if re.fullmatch(r"\d+[smhdwy]", word) or word in ("e",):
            continue
        names.add(word)
    return names


# -------------------------------------------------------------------------------------------- routes


def _editor_app() -> Any:
    from replan_editor.app import create_app
    from replan_editor.settings import EditorSettings

    return create_app(EditorSettings(preset="tiny"))


def _planner_app() -> Any:
    from replan_planner.app import create_app
    from replan_planner.settings import PlannerSettings

    return create_app(PlannerSettings(preset="tiny"))


def _gateway_app() -> Any:
    from replan_gateway.app import create_app
    from replan_gateway.settings import GatewaySettings

    return create_app(GatewaySettings(auth_disabled=True, jobs_executor="inline"))


#: `replan serve <service>` -> its FastAPI app, built without starting it (no model loads before startup).
SERVICE_APPS: dict[str, Callable[[], Any]] = {
    "editor": _editor_app,
    "planner": _planner_app,
    "gateway": _gateway_app,
}


@cache
def _client(service: str) -> Any:
    from starlette.testclient import TestClient

    try:
        app = SERVICE_APPS[service]()
    except ModuleNotFoundError as exc:
        pytest.fail(f"cannot build the {service} app: {exc} (has that service landed?)")
    # Not entered as a context manager: the lifespan (model loading) does not run.
    return TestClient(app, raise_server_exceptions=False)


def serves(service: str, path: str) -> bool:
    """Whether the service's app has a route at `path` (any method: a GET on a POST route answers 405).

    Asked through the app itself rather than its route table, whose shape changes between FastAPI versions.
    """
    return _client(service).get(path).status_code != 404
