"""A loopback TCP proxy that forwards to a server or black-holes every byte: a network partition.

Standard library only. `BlackHoleProxy(host, port)` listens on a free port of 127.0.0.1 and
forwards each connection to the upstream server. `black_hole()` is the partition the fault tier
needs and a stopped server cannot give: the port still accepts TCP, but nothing is forwarded
and nothing answers, on the connections already open and on new ones (the client sees its
writes accepted and its reads time out, as behind a dropped route or a hung broker). `forward()`
ends the partition: every connection held during it is reset (its stream lost bytes, so the
client must reconnect, as after a TCP timeout) and new connections are forwarded again.
`close()` stops the listener and cuts every connection.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

HOST = "127.0.0.1"
ACCEPT_POLL_SECONDS = 0.2
UPSTREAM_CONNECT_SECONDS = 5
CHUNK = 65536


@dataclass(eq=False)
class _Connection:
    """One client connection, its upstream socket (none when accepted black-holed), its state."""

    client: socket.socket
    upstream: socket.socket | None
    held: bool = False

    def close(self) -> None:
        for end in (self.client, self.upstream):
            if end is None:
                continue
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                end.close()


class BlackHoleProxy:
    """Forward 127.0.0.1:<port> to host:port; black_hole() swallows everything until forward()."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.lock = threading.Lock()
        self.connections: set[_Connection] = set()
        self.black_holed = False
        self.accepted = 0
        self.held = 0
        self.running = threading.Event()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((HOST, 0))
        self.listener.listen(64)
        self.listener.settimeout(ACCEPT_POLL_SECONDS)
        self.port = self.listener.getsockname()[1]
        self.running.set()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def url_for(self, url: str) -> str:
        """Return `url` (a broker URL of the upstream) with this proxy's host and port."""
        parts = urlsplit(url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@{HOST}:{self.port}" if credentials else f"{HOST}:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    # --- modes ---------------------------------------------------------------------------

    def black_hole(self) -> None:
        """Stop forwarding: open connections and new ones swallow every byte, answer nothing."""
        with self.lock:
            self.black_holed = True
            for connection in self.connections:
                if not connection.held:
                    connection.held = True
                    self.held += 1

    def forward(self) -> None:
        """End the partition: reset every held connection, forward new ones again."""
        with self.lock:
            self.black_holed = False
            held = [c for c in self.connections if c.held]
            self.connections -= set(held)
        for connection in held:
            connection.close()

    def close(self) -> None:
        """Stop listening and cut every connection."""
        self.running.clear()
        self.thread.join(timeout=5)
        with self.lock:
            cut, self.connections = self.connections, set()
        for connection in cut:
            connection.close()

    def describe(self) -> str:
        mode = "black hole" if self.black_holed else "forwarding"
        host, port = self.upstream
        return (
            f"proxy {HOST}:{self.port} -> {host}:{port} ({mode}; {self.accepted} accepted, "
            f"{self.held} held in a black hole)"
        )

    # --- threads -------------------------------------------------------------------------

    def _accept(self) -> None:
        with self.listener:
            while self.running.is_set():
                try:
                    client, _ = self.listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                client.settimeout(None)
                with self.lock:
                    black_holed = self.black_holed
                upstream = None
                if not black_holed:
                    try:
                        upstream = socket.create_connection(
                            self.upstream, timeout=UPSTREAM_CONNECT_SECONDS
                        )
                    except OSError:
                        # The server is down: refuse the way it would, by closing at once.
                        with contextlib.suppress(OSError):
                            client.close()
                        continue
                    upstream.settimeout(None)
                connection = _Connection(client, upstream, held=black_holed)
                with self.lock:
                    self.accepted += 1
                    self.held += black_holed
                    self.connections.add(connection)
                threading.Thread(
                    target=self._pump, args=(connection, client, upstream), daemon=True
                ).start()
                if upstream is not None:
                    threading.Thread(
                        target=self._pump, args=(connection, upstream, client), daemon=True
                    ).start()

    def _pump(
        self, connection: _Connection, source: socket.socket, target: socket.socket | None
    ) -> None:
        """Copy source to target while forwarding; read and drop everything once held."""
        try:
            while data := source.recv(CHUNK):
                if connection.held or target is None:
                    continue  # the black hole: accepted by TCP, never delivered
                target.sendall(data)
        except OSError:
            pass
        finally:
            # A held connection stays open until forward() (a black hole sends no FIN), unless
            # the client itself hung up.
            if not connection.held or source is connection.client:
                connection.close()
                with self.lock:
                    self.connections.discard(connection)
