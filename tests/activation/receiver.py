"""A real HTTP receiver on loopback for the delivery tests: it checks the HMAC signature, keeps
each idempotency key once (as a well-behaved webhook consumer does), and misbehaves on a
schedule: 5xx, 429, 4xx, slow answers past the client's timeout (after storing the message),
dropped connections, and whole periods of refusing connections (``down``/``up``)."""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from activation.destinations import KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

BEHAVIOURS = ("ok", "500", "503", "429", "400", "slow", "drop")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    def __init__(
        self,
        secret: str | None = "s3cret",
        port: int | None = None,
        weights: dict[str, float] | None = None,
        seed: int = 0,
        slow_s: float = 0.6,
        delay_s: float = 0.0,
    ) -> None:
        self.secret, self.port = secret, port or free_port()
        self.weights = weights or {"ok": 1.0}
        self.rng = random.Random(seed)
        self.slow_s, self.delay_s = slow_s, delay_s
        self.held: dict[str, dict[str, Any]] = {}  # key -> first body stored
        self.deliveries: list[str] = []  # every request that reached the handler, by key
        self.stored: list[str] = []  # every request that was stored or recognised
        self.bad_signatures = 0
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def _behaviour(self) -> str:
        names = list(self.weights)
        with self.lock:
            return self.rng.choices(names, [self.weights[n] for n in names])[0]

    def up(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                key = self.headers.get(KEY_HEADER, "")
                if receiver.secret is not None and not verify(
                    receiver.secret,
                    self.headers.get(TIMESTAMP_HEADER, ""),
                    body,
                    self.headers.get(SIGNATURE_HEADER, ""),
                ):
                    with receiver.lock:
                        receiver.bad_signatures += 1
                    self._answer(401)
                    return
                with receiver.lock:
                    receiver.deliveries.append(key)
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                what = receiver._behaviour()
                if what in ("500", "503", "429", "400"):
                    self._answer(int(what))
                    return
                if what == "drop":  # close without an answer
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                with receiver.lock:  # stored before answering: a lost answer means a resend
                    receiver.stored.append(key)
                    receiver.held.setdefault(key, json.loads(body))
                if what == "slow":
                    time.sleep(receiver.slow_s)
                self._answer(200)

            def _answer(self, code: int) -> None:
                try:
                    self.send_response(code)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the client gave up (timeout) first
                    pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def down(self) -> None:
        """Stop listening: connections are refused until ``up``."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def duplicates(self) -> int:
        """Requests for keys the receiver already held (recognised, not stored twice)."""
        return len(self.stored) - len(self.held)
