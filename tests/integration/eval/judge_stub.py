"""A stand-in VLM judge: an OpenAI-compatible ``/v1/chat/completions`` that replays recorded replies.

Judges are remote paid APIs, so integration tests point the worker's real OpenAI-compatible client at
this process instead. For each request it finds the dimension the prompt asks about (``"<dim>_score"``
in the text parts), checks that the images arrived as data URIs, and answers with the recorded reply
``data/openai_<dim>.json`` (vLLM's chat-completion JSON). It counts calls per dimension and per prompt
(text and images: a repeated judgement of one sample shows up as a count of 2) at ``GET /calls``;
``GET /readyz`` answers 200.

Run: ``python judge_stub.py --port N [--replies DIR]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DIMENSIONS = ("quality", "target", "effect", "consistency")


def _prompt_key(text: str, image_urls: list[str]) -> str:
    """Text and images together: the quality prompt's text is the same for every sample, its image is not."""
    digest = hashlib.sha256(text.encode())
    for url in image_urls:
        digest.update(url.encode())
    return digest.hexdigest()[:16]


class Replies:
    """The recorded replies and the call counters (shared by the server's threads)."""

    def __init__(self, directory: Path) -> None:
        self.by_dimension = {d: json.loads((directory / f"openai_{d}.json").read_text()) for d in DIMENSIONS}
        self.calls: Counter[str] = Counter()
        self.prompts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def answer(self, body: dict[str, object]) -> tuple[int, dict[str, object]]:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return 400, {"error": {"message": "messages is required", "type": "invalid_request_error"}}
        content = messages[-1].get("content") if isinstance(messages[-1], dict) else None
        if not isinstance(content, list):
            return 400, {"error": {"message": "expected text and image parts", "type": "invalid_request_error"}}
        text = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        images = [p for p in content if isinstance(p, dict) and p.get("type") == "image_url"]
        if not all(str(p["image_url"]["url"]).startswith("data:image/") for p in images) or not images:
            return 400, {"error": {"message": "images must be data URIs", "type": "invalid_request_error"}}
        for dimension in DIMENSIONS:
            if f'"{dimension}_score"' in text:
                with self.lock:
                    self.calls[dimension] += 1
                    self.prompts[_prompt_key(text, [str(p["image_url"]["url"]) for p in images])] += 1
                return 200, self.by_dimension[dimension]
        return 400, {"error": {"message": "the prompt asks for no known score", "type": "invalid_request_error"}}


def make_handler(replies: Replies) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/readyz":
                self._send(200, {"status": "ready"})
            elif self.path == "/calls":
                with replies.lock:
                    self._send(200, {"by_dimension": dict(replies.calls), "by_prompt": dict(replies.prompts)})
            else:
                self._send(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": {"message": "not found"}})
                return
            length = int(self.headers.get("Content-Length", "0"))
            try:
                body = json.loads(self.rfile.read(length))
            except ValueError:
                self._send(400, {"error": {"message": "body is not JSON"}})
                return
            self._send(*replies.answer(body))

        def log_message(self, format: str, *args: object) -> None:
            return  # quiet: the tests read /calls, not the log

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--replies", type=Path, default=Path(__file__).with_name("data"))
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(Replies(args.replies)))
    server.serve_forever()


if __name__ == "__main__":
    main()
