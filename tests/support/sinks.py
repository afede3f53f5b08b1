"""Receivers the boot tier points a service at: an OTLP/HTTP trace receiver and a fake Sentry.

`OtlpSink` runs this file as a script with the rendered service's interpreter (it has
opentelemetry-proto; the template's own environment has not): it listens on 127.0.0.1, decodes
every `POST /v1/traces` and appends one JSON line per span to a file. `SentrySink` is a
standard-library HTTP server in the test process that keeps the events of every envelope.

    python sinks.py otlp <port> <spans.jsonl>
"""

from __future__ import annotations

import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.keep(self.path, body)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        """Quiet."""


class _Server(ThreadingHTTPServer):
    def __init__(self, port: int, keep) -> None:
        self.keep = keep
        super().__init__(("127.0.0.1", port), _Handler)


# --- OTLP: the script side -----------------------------------------------------------------


def _serve_otlp(port: int, output: Path) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    lock = threading.Lock()

    def keep(path: str, body: bytes) -> None:
        if path != "/v1/traces":
            return
        lines = []
        for resource in ExportTraceServiceRequest.FromString(body).resource_spans:
            attributes = {a.key: a.value.string_value for a in resource.resource.attributes}
            for scope in resource.scope_spans:
                for span in scope.spans:
                    lines.append(
                        json.dumps(
                            {
                                "name": span.name,
                                "kind": span.kind,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent_span_id": span.parent_span_id.hex(),
                                "service": attributes.get("service.name"),
                            }
                        )
                    )
        with lock, output.open("a") as sink:
            sink.write("".join(line + "\n" for line in lines))

    print("ready", flush=True)
    _Server(port, keep).serve_forever()


# --- the test side -------------------------------------------------------------------------


class OtlpSink:
    """The OTLP receiver, as a process of the service's interpreter; spans() reads its file."""

    def __init__(self, python: str, folder: Path, port: int) -> None:
        from .processes import Process

        self.port = port
        self.output = folder / "spans.jsonl"
        self.process = Process(
            name="otlp-sink",
            argv=[python, __file__, "otlp", str(port), str(self.output)],
            env={"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"},
            cwd=folder,
            log=folder / "otlp-sink.log",
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        from .processes import wait_for

        self.process.start()
        wait_for(
            lambda: "ready" in self.process.log_text(),
            timeout=30,
            what="the OTLP sink did not start",
            report=self.process.tail,
            guard=lambda: None if self.process.alive() else "the OTLP sink exited",
        )

    def spans(self) -> list[dict[str, Any]]:
        if not self.output.exists():
            return []
        return [json.loads(line) for line in self.output.read_text().splitlines() if line]

    def stop(self) -> None:
        self.process.stop()


class SentrySink:
    """A fake Sentry ingest on 127.0.0.1: `events` holds every event envelope item it got."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.server = _Server(0, self._keep)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _keep(self, _path: str, body: bytes) -> None:
        lines = body.split(b"\n")
        for header, payload in zip(lines[1::2], lines[2::2], strict=False):
            if json.loads(header).get("type") == "event":
                self.events.append(json.loads(payload))

    @property
    def dsn(self) -> str:
        return f"http://public@127.0.0.1:{self.server.server_address[1]}/1"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


if __name__ == "__main__":
    if sys.argv[1] == "otlp":
        _serve_otlp(int(sys.argv[2]), Path(sys.argv[3]))
