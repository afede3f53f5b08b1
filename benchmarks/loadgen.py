"""A bounded HTTP load generator for POST /jobs, run in a process of its own (stdlib only).

    python loadgen.py --url http://127.0.0.1:PORT/jobs closed --clients 16 --seconds 10
    python loadgen.py --url ... open --rate 40 --seconds 8 --clients 32
    python loadgen.py --url ... count --clients 16 --requests 1000

closed: C clients post back to back for S seconds (saturation). open: requests scheduled at a
fixed rate for S seconds, each latency measured from its scheduled time (no coordinated
omission), served by C threads. count: C clients post N requests in all. Every client keeps
one keep-alive connection. Prints one JSON document: per-request samples
[scheduled, started, ended, status, job id] relative to the start, plus the window.
"""

from __future__ import annotations

import argparse
import http.client
import json
import queue
import sys
import threading
import time
from urllib.parse import urlsplit

# A request that takes longer than this is counted as failed (status 0).
TIMEOUT_S = 30.0


class Client:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname, parts.port, parts.path
        self.connection: http.client.HTTPConnection | None = None

    def post(self, body: bytes) -> tuple[int, int | None]:
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection(
                    self.host, self.port, timeout=TIMEOUT_S
                )
            try:
                self.connection.request(
                    "POST", self.path, body, {"Content-Type": "application/json"}
                )
                response = self.connection.getresponse()
                data = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.connection.close()
                    self.connection = None
                job_id = None
                if response.status == 202:
                    job_id = json.loads(data).get("id")
                return response.status, job_id
            except (OSError, http.client.HTTPException):
                # A kept-alive connection the server closed: reconnect once, then count it.
                if self.connection is not None:
                    self.connection.close()
                self.connection = None
                if attempt == 2:
                    return 0, None
        return 0, None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    sub = parser.add_subparsers(dest="mode", required=True)
    closed = sub.add_parser("closed")
    closed.add_argument("--clients", type=int, default=16)
    closed.add_argument("--seconds", type=float, required=True)
    opened = sub.add_parser("open")
    opened.add_argument("--rate", type=float, required=True)
    opened.add_argument("--seconds", type=float, required=True)
    opened.add_argument("--clients", type=int, default=32)
    counted = sub.add_parser("count")
    counted.add_argument("--clients", type=int, default=16)
    counted.add_argument("--requests", type=int, required=True)
    options = parser.parse_args()
    body = json.dumps({"name": "bench", "duration": 0}).encode()
    samples: list[list] = []
    lock = threading.Lock()
    t0 = time.perf_counter()
    hard_stop = t0 + 600  # every loop is bounded in time as well as in count

    def record(scheduled: float, started: float, status: int, job_id) -> None:
        ended = time.perf_counter() - t0
        with lock:
            samples.append(
                [round(scheduled, 5), round(started, 5), round(ended, 5), status, job_id]
            )

    if options.mode == "open":
        slots: queue.Queue = queue.Queue()
        total = int(options.rate * options.seconds)
        for i in range(total):
            slots.put(i / options.rate)

        def worker() -> None:
            client = Client(options.url)
            while time.perf_counter() < hard_stop:
                try:
                    scheduled = slots.get_nowait()
                except queue.Empty:
                    return
                delay = t0 + scheduled - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                started = time.perf_counter() - t0
                status, job_id = client.post(body)
                record(scheduled, started, status, job_id)

    else:
        deadline = t0 + options.seconds if options.mode == "closed" else hard_stop
        remaining = [options.requests if options.mode == "count" else 10**9]

        def worker() -> None:
            client = Client(options.url)
            while time.perf_counter() < deadline:
                with lock:
                    if remaining[0] <= 0:
                        return
                    remaining[0] -= 1
                started = time.perf_counter() - t0
                status, job_id = client.post(body)
                record(started, started, status, job_id)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(options.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(1.0, hard_stop - time.perf_counter()))
    json.dump(
        {"mode": options.mode, "samples": samples, "wall_s": time.perf_counter() - t0}, sys.stdout
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
