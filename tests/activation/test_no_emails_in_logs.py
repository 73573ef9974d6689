"""No lead's email address reaches a log record or the CLI's output while the jobs run, the
failing paths included: a webhook that refuses messages and echoes them back in its error page
(as many receivers do), a dead-lettered message, an audience sync that fails."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from app.cli import main
from core.tables import read_table

ROOT = Path(__file__).resolve().parents[2]  # the repository


class EchoReceiver:
    """A webhook on loopback that answers ``status`` with the request's own body as its text."""

    def __init__(self) -> None:
        self.status = 500
        self.bodies: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.bodies.append(body.decode())
                self.send_response(receiver.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def echo() -> Iterator[EchoReceiver]:
    receiver = EchoReceiver()
    yield receiver
    receiver.close()


def test_promote_and_sync_audiences_never_log_an_email(tiny, tmp_path, echo, caplog, capfd):
    leads = read_table(tiny.cfg.raw_dir, "leads")
    emails = set(leads["email"].dropna().astype(str))
    assert emails and all("@" in e for e in emails)
    scores = tmp_path / "scores.parquet"
    pd.DataFrame(
        {"lead_id": leads["lead_id"].head(30), "probability": 0.9, "model_version": "mql/1"}
    ).to_parquet(scores)
    engaged = {"events": ["events_30d >= 1"]}
    audiences = {
        "audiences": {
            "engaged_crm": {"destination": "crm", "where": engaged},  # fails: plain emails
            "engaged_ads": {"destination": "ads", "where": engaged},  # hashed emails, to a file
        }
    }
    (tmp_path / "audiences.yaml").write_text(yaml.safe_dump(audiences))
    destinations = {
        "sales": {"type": "webhook", "url": echo.url, "timeout_s": 2},
        "crm": {"type": "webhook", "url": echo.url, "timeout_s": 2},
        "ads": {"type": "file", "path": str(tmp_path / "ads.jsonl"), "hash_emails": True},
    }
    settings = [
        f"paths.data_dir={tiny.cfg.data_dir}",
        f"paths.mlruns_dir={tmp_path / 'mlruns'}",
        f"data.leads={tiny.cfg.data.leads}",
        f"data.weeks={tiny.cfg.data.weeks}",
        f"jobs.state_store=sqlite:///{tmp_path / 'jobs.db'}",
        f"jobs.audiences_file={tmp_path / 'audiences.yaml'}",
        f"jobs.destinations={json.dumps(destinations)}",
        "jobs.promotion.threshold=0.5",
        "jobs.promotion.holdout=0",  # every lead over the threshold is sent
        "jobs.retry.base_delay_s=0",
        "jobs.retry.attempts_per_run=2",
    ]
    base = ["--config", str(ROOT / "configs" / "local.yaml")]
    for setting in settings:
        base += ["--set", setting]

    outputs: list[str] = []  # every CLI run's stdout and stderr

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(main, [*base, *args])
        assert result.exception is None or isinstance(result.exception, SystemExit), result
        outputs.append(result.output)
        return result.exit_code, result.output

    with caplog.at_level(logging.DEBUG):
        # 500s: stop, retry later
        code, down = run("jobs", "promote-leads", "--scores", str(scores))
        assert code == 4 and "stopped sending" in down, down
        echo.status = 422  # refused: dead-lettered at once
        code, refused = run("jobs", "promote-leads", "--scores", str(scores))
        assert code == 0 and "dead-lettered 30" in refused, refused
        run("jobs", "dead-letters")
        echo.status = 500
        code, synced = run("jobs", "sync-audiences")
        assert code == 4 and "engaged_crm -> crm" in synced and "FAILED" in synced, synced
        assert "engaged_ads -> ads" in synced and "now at sync 1" in synced, synced
    # the messages did carry the emails (or this test would prove nothing) ...
    assert any(e in body for body in echo.bodies for e in emails)
    # ... and none came back out
    captured = capfd.readouterr()
    out = "\n".join([caplog.text, *outputs, captured.out, captured.err])
    leaked = sorted(e for e in emails if e in out)
    assert not leaked, f"{len(leaked)} emails in the logs, e.g. {leaked[0]}"
    assert "<email>" in out  # the receivers' echoes were kept, with the addresses redacted


@pytest.mark.parametrize(
    "text",
    [
        '{"email": "ana.lee@example.com"}',
        '{"email": "ana.lee\\u0040example.com"}',  # JSON-escaped
        "email=ana.lee%40example.com",  # URL-encoded
        "<li>Ana.Lee+crm@mail.example.co.uk</li>",
    ],
)
def test_email_addresses_are_redacted_from_a_receivers_answer(text) -> None:
    from activation.destinations import redact_emails

    redacted = redact_emails(text)
    assert "<email>" in redacted and "example" not in redacted.lower(), redacted
