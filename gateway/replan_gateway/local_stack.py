"""`replan up`: the whole stack on one machine, as child processes, with no Docker and no Redis server.

Planner, editor, a Celery worker (queue `jobs`, `--pool=solo`) and the gateway start at once, each as
its own `replan serve ...` process with its log in `<state>/logs/`. Celery runs on kombu's SQLAlchemy
transport over SQLite (`sqla+sqlite:///<state>/broker.sqlite`) and the job store is a SQLite file
(`<state>/jobs.sqlite`), so jobs and results survive a restart of the stack; `--jobs inline` runs jobs
in the gateway instead (one process fewer). The API binds 127.0.0.1 with authentication off; any other
interface needs `--api-key`, of which only the SHA-256 is handed to the gateway. When the gateway is
ready the URLs are printed; Ctrl-C (or SIGTERM) stops the children gateway-first, and if any child dies
the others are stopped and its log tail is shown.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from replan_gateway.settings import hash_api_key

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


class StackError(Exception):
    """A bad option or a start-up failure, said in a way the user can act on."""


def is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def gpu_visible() -> bool:
    """Whether an NVIDIA GPU is visible, without importing torch (which takes seconds)."""
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return False
    try:
        out = subprocess.run([binary, "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def real_models_available() -> bool:
    """A GPU is visible and `REPLAN_EDITOR_MODEL` names a local checkpoint: then `auto` means real models.

    The planner's model is whatever `REPLAN_PLANNER_*` configures (a vLLM endpoint or local weights).
    """
    model = os.environ.get("REPLAN_EDITOR_MODEL")
    return bool(model) and Path(model).expanduser().is_dir() and gpu_visible()


def default_state_dir() -> Path:
    if os.environ.get("REPLAN_STATE_DIR"):
        return Path(os.environ["REPLAN_STATE_DIR"])
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "replan"


@dataclass(frozen=True)
class StackOptions:
    preset: str
    host: str
    port: int
    state_dir: Path
    api_key_sha256: str | None
    jobs: str

    @classmethod
    def build(
        cls, *, preset: str, host: str, port: int, state_dir: Path | None, api_key: str | None, jobs: str
    ) -> StackOptions:
        if preset not in ("auto", "tiny", "default"):
            raise StackError(f"--preset must be auto, tiny or default (got {preset!r})")
        if jobs not in ("celery", "inline"):
            raise StackError(f"--jobs must be celery or inline (got {jobs!r})")
        if preset == "auto":
            preset = "default" if real_models_available() else "tiny"
        if not is_loopback(host) and not api_key:
            raise StackError(
                f"binding {host} exposes the API beyond this machine; pass --api-key KEY (or REPLAN_UP_API_KEY), "
                "or keep the default --host 127.0.0.1"
            )
        if not port_is_free(host, port):
            raise StackError(f"port {port} on {host} is in use; pass --port with a free one")
        return cls(
            preset=preset,
            host=host,
            port=port,
            state_dir=(state_dir or default_state_dir()).expanduser().resolve(),
            api_key_sha256=hash_api_key(api_key) if api_key else None,
            jobs=jobs,
        )


@dataclass
class Child:
    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.args,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,  # Ctrl-C reaches `up` only; it stops the children in order
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def child_env(options: StackOptions, *, planner_url: str, editor_url: str) -> dict[str, str]:
    """The environment every child starts with: where the state lives and how the services find each other."""
    state = options.state_dir
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "REPLAN_JOBS_STORE_URL": f"sqlite:///{state / 'jobs.sqlite'}",
        "REPLAN_WORKER_BROKER_URL": f"sqla+sqlite:///{state / 'broker.sqlite'}",
        "REPLAN_WORKER_RESULT_BACKEND": f"db+sqlite:///{state / 'results.sqlite'}",
        "REPLAN_WORKER_REWARD_STORE_URL": f"sqlite:///{state / 'rewards.sqlite'}",
        "REPLAN_WORKER_PLANNER_URL": planner_url,
        "REPLAN_WORKER_EDITOR_URLS": json.dumps([editor_url]),
        "REPLAN_GATEWAY_PLANNER_URLS": json.dumps([planner_url]),
        "REPLAN_GATEWAY_EDITOR_URLS": json.dumps([editor_url]),
        "REPLAN_GATEWAY_JOBS_EXECUTOR": options.jobs,
        "REPLAN_GATEWAY_ROUTING__HEALTH_INTERVAL_S": "2",
        "REPLAN_GATEWAY_LOG_JSON": "false",
        "REPLAN_PLANNER_LOG_JSON": "false",
        "REPLAN_EDITOR_LOG_JSON": "false",
    }
    env.pop("REPLAN_UP_API_KEY", None)  # the key itself never reaches a child
    if options.api_key_sha256:
        env["REPLAN_GATEWAY_AUTH__KEYS"] = json.dumps([{"name": "up", "sha256": options.api_key_sha256}])
        env.pop("REPLAN_AUTH_DISABLED", None)
    else:
        env["REPLAN_AUTH_DISABLED"] = "1"
    return env


def plan_children(options: StackOptions) -> list[Child]:
    """The processes of the stack, in start order (the gateway last, so it is stopped first)."""
    planner_port, editor_port = free_port(), free_port()
    env = child_env(
        options, planner_url=f"http://127.0.0.1:{planner_port}", editor_url=f"http://127.0.0.1:{editor_port}"
    )
    logs = options.state_dir / "logs"
    replan = [sys.executable, "-m", "replan_common.cli"]
    planner_preset = ["--preset", "tiny"] if options.preset == "tiny" else []
    commands = {
        "planner": ["serve", "planner", *planner_preset, "--port", str(planner_port)],
        "editor": ["serve", "editor", "--preset", options.preset, "--port", str(editor_port)],
        "worker": ["serve", "worker", "--queues", "jobs,reward", "--no-log-json", "--requeue-active-jobs"],
        "gateway": ["serve", "gateway", "--host", options.host, "--port", str(options.port)],
    }
    if options.jobs == "inline":
        del commands["worker"]
    return [Child(name, [*replan, *args], env, logs / f"{name}.log") for name, args in commands.items()]


@dataclass
class LocalStack:
    """Starts, supervises and stops the children of `replan up`."""

    options: StackOptions
    children: list[Child] = field(default_factory=list)
    _stopping: bool = False

    def run(self, *, ready_timeout_s: float = 600.0) -> int:
        """Start everything, print the URLs once ready, supervise until Ctrl-C; returns the exit status."""
        opts = self.options
        (opts.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.children = plan_children(opts)
        if opts.preset == "tiny":
            say("preset tiny: RANDOM-WEIGHT models on CPU; edits and plans are noise, but every path is real")
        say(f"state and logs in {opts.state_dir}")
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        started = time.monotonic()
        try:
            for child in self.children:
                child.start()
            api = f"http://{_url_host(opts.host)}:{opts.port}"
            if not self._wait_ready(api, started + ready_timeout_s):
                return 1
            say(f"ready in {time.monotonic() - started:.1f} s")
            say(f"API:      {api}/v1   (OpenAPI docs: {api}/docs)")
            static = Path(__file__).parent / "static"
            say(f"web page: {api}/" + ("" if static.is_dir() else "   (not installed in this build)"))
            if opts.api_key_sha256:
                say("auth:     send 'Authorization: Bearer <your --api-key>'")
            else:
                say("auth:     off (loopback only)")
            say("Ctrl-C stops everything")
            while not self._stopping:
                dead = next((c for c in self.children if not c.alive()), None)
                if dead is not None:
                    self._report_death(dead)
                    return 1
                time.sleep(0.5)
            return 0
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            say("stopped")

    def _wait_ready(self, api: str, deadline: float) -> bool:
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline and not self._stopping:
                dead = next((c for c in self.children if not c.alive()), None)
                if dead is not None:
                    self._report_death(dead)
                    return False
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{api}/readyz").status_code == 200:
                        return True
                time.sleep(0.25)
        if not self._stopping:
            say(f"not ready in time; logs in {self.options.state_dir / 'logs'}")
        return False

    def _report_death(self, child: Child) -> None:
        code = child.process.returncode if child.process else None
        say(f"{child.name} exited with status {code}; stopping the stack. Last lines of {child.log_path}:")
        sys.stderr.write(child.log_tail() + "\n")

    def _on_signal(self, signum: int, _: object) -> None:
        self._stopping = True

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop the gateway first (no new work), then the worker, editor and planner; kill stragglers."""
        for child in reversed(self.children):
            if child.alive():
                assert child.process is not None
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for child in reversed(self.children):
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait(timeout=5)


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def say(message: str) -> None:
    print(f"replan up: {message}", flush=True)
