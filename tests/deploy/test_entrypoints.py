"""The images run the same `replan serve ...` commands the service and integration tests run, and every
command a Dockerfile, the compose file or a Kubernetes overlay gives parses with the real CLI."""

from __future__ import annotations

import re
import shlex
from typing import Any

import click
import pytest
import typer.main
from typer.testing import CliRunner

from tests.deploy.manifests import (
    DOCKERFILES,
    REPO_ROOT,
    Container,
    dockerfile_stages,
    image_stage,
    replan_containers,
)

#: What each image runs when nothing overrides it: DESIGN §2's services with the ports of replan_common.settings.
IMAGE_COMMANDS = {
    ("docker/Dockerfile", "gateway"): "replan serve gateway --host 0.0.0.0 --port 8000",
    ("docker/Dockerfile", "planner"): (
        "replan serve planner --backend openai --openai-base-url http://vllm:8000/v1 --host 0.0.0.0 --port 8100"
    ),
    ("docker/Dockerfile", "worker"): "replan serve worker --queues jobs,bench,judge,reward",
    ("docker/Dockerfile", "editor-cpu"): "replan serve editor --preset tiny --device cpu --host 0.0.0.0 --port 8200",
    ("docker/editor.Dockerfile", "editor"): (
        "replan serve editor --backbone flux-kontext --model black-forest-labs/FLUX.1-Kontext-dev --device cuda:0 "
        "--host 0.0.0.0 --port 8200"
    ),
}


#: Parse errors of the CLI: typer >= 0.20 vendors click (`typer._click`), older typer uses click itself.
CLI_ERRORS = tuple({click.ClickException, *(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")})


@pytest.fixture(scope="module")
def containers() -> list[Container]:
    return replan_containers()


def serve_command(service: str) -> Any:
    from replan_common.cli.main import app

    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    if service not in serve.commands:
        pytest.fail(f"`replan serve {service}` is not registered (commands: {sorted(serve.commands)})")
    return serve.commands[service]


def test_images_run_the_service_commands() -> None:
    for (path, target), command in IMAGE_COMMANDS.items():
        assert image_stage(path, target).argv == shlex.split(command), f"{path}:{target}"
    assert {(p, t) for p, targets in DOCKERFILES.items() for t in targets} == set(IMAGE_COMMANDS)


def _flags(argv: list[str]) -> list[str]:
    return [arg.split("=", 1)[0] for arg in argv if arg.startswith("--")]


def test_every_flag_of_every_container_command_exists(containers: list[Container]) -> None:
    """`replan serve <x> --help` through typer's CliRunner lists every flag a manifest passes."""
    from replan_common.cli.main import app

    runner = CliRunner()
    help_texts: dict[str, str] = {}
    problems = []
    for container in containers:
        service = container.service or ""
        if service not in help_texts:
            result = runner.invoke(app, ["serve", service, "--help"], terminal_width=200)
            assert result.exit_code == 0, f"replan serve {service} --help: {result.output}"
            help_texts[service] = result.output
        for flag in _flags(container.argv[3:]):
            if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_texts[service]):
                problems.append(f"{container.source}: replan serve {service} has no {flag}")
    assert problems == []


def test_every_container_command_parses_with_its_values(containers: list[Container]) -> None:
    """Beyond flag names: choices (--backend openai), types (--port 8000) and values parse as at start-up."""
    problems = []
    for container in containers:
        command = serve_command(container.service or "")
        try:
            command.make_context(f"replan serve {container.service}", list(container.argv[3:]))
        except CLI_ERRORS as exc:
            problems.append(f"{container.source}: {exc.format_message()}")
    assert problems == []


def test_a_wrong_value_does_not_parse() -> None:
    """Guards the check above: make_context really validates."""
    with pytest.raises(CLI_ERRORS):
        serve_command("editor").make_context("replan serve editor", ["--port", "eighty"])


def _stages_text(path: str) -> str:
    return (REPO_ROOT / path).read_text()


@pytest.mark.parametrize("path", sorted(DOCKERFILES))
def test_images_are_multi_stage_non_root_and_health_checked(path: str) -> None:
    stages = dockerfile_stages(path)
    assert "builder" in stages, f"{path}: no builder stage"
    assert "COPY --from=builder /opt/venv /opt/venv" in _stages_text(path), f"{path}: the venv is not copied"
    for target in DOCKERFILES[path]:
        stage = stages[target]
        assert stage.user == "10001:10001", f"{path}:{target} runs as {stage.user!r}"
        assert stage.healthcheck, f"{path}:{target} has no HEALTHCHECK"
        assert stage.env.get("HF_HOME") == "/models/hf", f"{path}:{target}: weights belong on the /models volume"


def _copied_sources(path: str) -> list[str]:
    sources = []
    for line in _stages_text(path).splitlines():
        parts = line.split()
        if parts[:1] == ["COPY"] and not any(part.startswith("--from") for part in parts):
            sources += [part for part in parts[1:-1] if not part.startswith("--")]
    return sources


def _dockerignore_allows(source: str, rules: list[tuple[bool, str]]) -> bool:
    allowed = True
    for negated, pattern in rules:
        if pattern == "*" or source == pattern.rstrip("/") or source.startswith(pattern.rstrip("/") + "/"):
            allowed = negated
    return allowed


def test_dockerignore_sends_everything_the_dockerfiles_copy() -> None:
    rules: list[tuple[bool, str]] = []
    for line in (REPO_ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and not line.startswith("**"):
            rules.append((line.startswith("!"), line.lstrip("!")))
    for path in DOCKERFILES:
        for source in _copied_sources(path):
            assert _dockerignore_allows(source, rules), f"{path}: COPY {source} is excluded by .dockerignore"
            assert (REPO_ROOT / source).exists(), f"{path}: COPY {source} does not exist"


def _args_of(container: Container) -> dict[str, Any]:
    return {flag: container.flag(flag) for flag in _flags(container.argv)}


def test_gpu_editors_use_one_device_each(containers: list[Container]) -> None:
    for container in containers:
        if container.service == "editor" and container.flag("--preset") != "tiny":
            assert _args_of(container)["--device"] == "cuda:0", container.source
