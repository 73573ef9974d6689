"""Where the jobs send: small adapters behind one interface (``Destination.send``).

A message is a JSON object with an ``idempotency_key``. ``send`` returns when the destination
acknowledged it, raises ``TransientError`` when trying again later may work (5xx, 429, timeouts,
refused connections) and ``PermanentError`` when it will not (other 4xx).

Delivery is at least once: a job killed after the destination took a message but before the
state store recorded it sends the message again, with the same key. The file destination skips
keys it already holds; a webhook receiver must do the same with the ``Idempotency-Key`` header.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from core.config import ConfigError, FileDestinationConfig

if TYPE_CHECKING:
    from core.config import Config

SIGNATURE_HEADER = "X-Funnel-Signature"
TIMESTAMP_HEADER = "X-Funnel-Timestamp"
KEY_HEADER = "Idempotency-Key"
# what looks like an email address (also JSON- or URL-escaped: "\u0040", "%40")
EMAIL_LIKE = re.compile(r"[\w.+-]+(?:@|\\u0040|%40)[\w-]+(?:\.[\w-]+)+", re.IGNORECASE)


class TransientError(RuntimeError):
    """The destination did not take the message this time; retrying may work."""


class PermanentError(RuntimeError):
    """The destination refused the message; retrying will not help."""


class Destination(Protocol):
    name: str

    def send(self, message: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` HMAC of ``timestamp.body``: a receiver recomputes it to check both the
    sender and that the body was not altered (the timestamp lets it refuse old replays)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def body_of(message: dict[str, Any]) -> bytes:
    return json.dumps(message, sort_keys=True, separators=(",", ":")).encode()


class FileDestination:
    """Appends messages to a JSONL or CSV file, each key once.

    On open it reads the keys the file holds and cuts off a torn last line (a crash mid-write),
    so a resend after a crash is recognised and skipped. Each line is flushed and fsynced before
    ``send`` returns: an acknowledged message is on disk.
    """

    def __init__(self, name: str, path: Path, fmt: str = "jsonl") -> None:
        if fmt not in ("jsonl", "csv"):
            raise ValueError(f"destination '{name}': format must be jsonl or csv, got {fmt!r}")
        self.name, self.path, self.fmt = name, Path(path), fmt
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._keys, self._columns = self._recover()
        self._fh = self.path.open("a", encoding="utf-8", newline="")

    def _recover(self) -> tuple[set[str], list[str] | None]:
        if not self.path.exists():
            return set(), None
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end != len(data):  # a torn last line: never acknowledged, so never counted
            with self.path.open("r+b") as fh:
                fh.truncate(end)
            data = data[:end]
        text = data.decode("utf-8")
        if self.fmt == "jsonl":
            return {json.loads(line)["idempotency_key"] for line in text.splitlines() if line}, None
        rows = list(csv.DictReader(io.StringIO(text)))
        header = next(csv.reader(io.StringIO(text)), None)
        return {r["idempotency_key"] for r in rows}, header

    def _line(self, message: dict[str, Any]) -> str:
        if self.fmt == "jsonl":
            return json.dumps(message, sort_keys=True) + "\n"
        flat = {k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in message.items()}
        out = io.StringIO()
        if self._columns is None:
            self._columns = list(flat)
            csv.writer(out).writerow(self._columns)
        extra = [k for k in flat if k not in self._columns]
        if extra:
            raise PermanentError(f"destination '{self.name}': fields {extra} not in the CSV header")
        csv.DictWriter(out, self._columns).writerow(flat)
        return out.getvalue()

    def send(self, message: dict[str, Any]) -> None:
        key = message["idempotency_key"]
        if key in self._keys:
            return
        self._fh.write(self._line(message))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._keys.add(key)

    def close(self) -> None:
        self._fh.close()


class WebhookDestination:
    """POSTs each message as JSON, signed with HMAC-SHA256 when a secret is set.

    Headers: ``Idempotency-Key`` (the message's key), ``X-Funnel-Timestamp`` and
    ``X-Funnel-Signature: sha256=<hmac of "timestamp.body">``. 2xx acknowledges; 5xx, 429,
    timeouts and connection errors are transient; other 4xx are permanent.
    """

    def __init__(
        self,
        name: str,
        url: str,
        secret: str | None = None,
        timeout_s: float = 5.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        import httpx

        self.name, self.url, self.secret = name, url, secret
        self._client = httpx.Client(timeout=timeout_s, headers=headers or {})

    def send(self, message: dict[str, Any]) -> None:
        import httpx

        body = body_of(message)
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            KEY_HEADER: message["idempotency_key"],
            TIMESTAMP_HEADER: stamp,
        }
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, stamp, body)
        try:
            resp = self._client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise TransientError(f"timed out: {exc!r}") from exc
        except httpx.TransportError as exc:  # refused, reset, DNS, ...
            raise TransientError(f"connection failed: {exc!r}") from exc
        if resp.is_success:
            return
        # A receiver's error page often echoes the request: its text is kept (it says what is
        # wrong) but goes to the state store, the CLI and logs with the addresses redacted
        # (before it is cut short, so no address is cut into an unrecognisable piece).
        text = redact_emails(resp.text[:20_000])[:200]
        detail = f"HTTP {resp.status_code} from {self.url}: {text}"
        if resp.status_code == 429 or resp.status_code >= 500:
            raise TransientError(detail)
        raise PermanentError(detail)

    def close(self) -> None:
        self._client.close()


def normalize_email(email: str) -> str:
    """Trimmed and lower-cased: the form ad platforms hash."""
    return email.strip().lower()


def hash_email(email: str) -> str:
    """SHA-256 hex of the normalized email (what ad platforms match on)."""
    return hashlib.sha256(normalize_email(email).encode()).hexdigest()


def redact_emails(text: str) -> str:
    """``text`` with every email-like substring replaced by ``<email>``."""
    return EMAIL_LIKE.sub("<email>", text)


def open_destination(cfg: Config, name: str) -> Destination:
    """The adapter for ``jobs.destinations.<name>``; a webhook's secret comes from the
    environment variable its config names."""
    if name not in cfg.jobs.destinations:
        raise ConfigError(
            f"destination '{name}' is not declared under jobs.destinations "
            f"(declared: {sorted(cfg.jobs.destinations)})"
        )
    dest = cfg.jobs.destinations[name]
    if isinstance(dest, FileDestinationConfig):
        return FileDestination(name, cfg.destination_path(dest.path), dest.format)
    secret = None
    if dest.secret_env:
        secret = os.environ.get(dest.secret_env)
        if not secret:
            raise ConfigError(
                f"destination '{name}' signs with the secret in ${dest.secret_env}, "
                "which is not set"
            )
    return WebhookDestination(name, dest.url, secret, dest.timeout_s)
