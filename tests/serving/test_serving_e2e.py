"""The real `bentoml serve serving.service:FunnelService` process, over HTTP, serving the champion
that the shared session pipeline trained and registered in MLflow."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from app import process

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
KEY = "e2e-key-5f1c"


@dataclass
class Server:
    base: str
    proc: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def start_server(cfg, tmp_path: Path, overrides: str = "") -> Server:
    """Write the config as YAML, start the server in its own process group."""
    config_file = tmp_path / "serve.yaml"
    config_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude={"root"})))
    port = process.free_port()
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "FUNNEL_CONFIG": str(config_file),
        "FUNNEL_OVERRIDES": overrides,
        "FUNNEL_API_KEY": KEY,
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    log = tmp_path / "server.log"
    cmd = [
        str(bin_dir / "bentoml"),
        "serve",
        "serving.service:FunnelService",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    proc = process.start(cmd, env, log, cwd=ROOT)
    return Server(f"http://127.0.0.1:{port}", proc, log)


def stop_server(server: Server) -> None:
    process.stop(server.proc)


def wait_ready(server: Server, timeout_s: float = 180.0) -> None:
    process.wait_ready(server.base, server.proc, server.log, timeout_s)


@pytest.fixture(scope="module")
def server(pipeline, tmp_path_factory) -> Iterator[Server]:
    srv = start_server(pipeline.cfg, tmp_path_factory.mktemp("bentoml-serve"))
    try:
        wait_ready(srv)
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture(scope="module")
def lead_ids(pipeline) -> list[str]:
    behavior = pd.read_parquet(pipeline.cfg.features_dir / "lead_behavior.parquet")
    latest = behavior[behavior["event_timestamp"] == behavior["event_timestamp"].max()]
    return sorted(latest["lead_id"])[:50]


def test_scores_a_lead_with_the_registered_champion(server, pipeline, lead_ids):
    with httpx.Client(base_url=server.base, headers={"X-API-Key": KEY}, timeout=10) as http:
        response = http.post("/v1/leads/score", json={"lead_id": lead_ids[0]})
        assert response.status_code == 200, response.text
        body = response.json()
        name = pipeline.cfg.training.mql.registered_model
        assert body["model_version"] == f"{name}/{pipeline.result.version}"
        assert body["feature_service"] == "mql_v1"
        assert len(body["reasons"]) == 3
        assert body["threshold"] == pytest.approx(pipeline.result.threshold)

        batch = http.post(
            "/v1/leads/score_batch",
            json={"leads": [{"lead_id": i} for i in lead_ids[:10]] + [{"lead_id": "L-unknown"}]},
        )
        assert batch.status_code == 200
        assert [r["lead_id"] for r in batch.json()["results"]] == lead_ids[:10]
        assert batch.json()["not_found"] == ["L-unknown"]
        assert batch.json()["results"][0]["probability"] == body["probability"]


def test_churn_risk_and_next_best_offer_with_the_registered_champions(server, pipeline, lead_ids):
    usage = pd.read_parquet(pipeline.cfg.features_dir / "account_usage.parquet")
    now = usage[usage["event_timestamp"] == usage["event_timestamp"].max()]
    account = now.loc[now["is_customer"] == 1, "account_id"].iloc[0]
    with httpx.Client(base_url=server.base, headers={"X-API-Key": KEY}, timeout=10) as http:
        risk = http.post("/v1/accounts/churn_risk", json={"account_id": account})
        assert risk.status_code == 200, risk.text
        body = risk.json()
        assert body["model_version"] == f"funnel-churn/{pipeline.churn.version}"
        assert body["risk_tier"] in {"low", "medium", "high"} and body["reasons"]
        offer = http.post("/v1/next_best_offer", json={"lead_id": lead_ids[0]})
        assert offer.status_code == 200, offer.text
        answer = offer.json()
        assert answer["model_version"] == f"funnel-nbo/{pipeline.nbo.version}"
        assert answer["policy"] == pipeline.nbo.served
        assert 0 < answer["propensity"] <= 1
        spec = http.get("/docs.json").json()
        assert {"/v1/accounts/churn_risk", "/v1/next_best_offer"} <= set(spec["paths"])


def test_errors_over_the_wire(server):
    with httpx.Client(base_url=server.base, timeout=10) as http:
        assert http.post("/v1/leads/score", json={"lead_id": "L1"}).status_code == 401
        assert (
            http.post(
                "/v1/leads/score",
                json={"lead_id": "L1"},
                headers={"Authorization": f"Bearer {KEY}x"},
            ).status_code
            == 401
        )
        auth = {"X-API-Key": KEY}
        missing = http.post("/v1/leads/score", json={"lead_id": "L404"}, headers=auth)
        assert (missing.status_code, missing.json()) == (404, {"detail": "lead 'L404' not found"})
        typo = http.post("/v1/leads/score", json={"leadid": "L1"}, headers=auth)
        assert typo.status_code == 422
        assert {e["field"] for e in typo.json()["detail"]} == {"lead_id", "leadid"}


def test_health_metrics_and_openapi(server, lead_ids):
    with httpx.Client(base_url=server.base, timeout=10) as http:
        http.post("/v1/leads/score", json={"lead_id": lead_ids[0]}, headers={"X-API-Key": KEY})
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200
        metrics = http.get("/metrics")
        assert metrics.status_code == 200
        assert "bentoml_" in metrics.text
        spec = http.get("/docs.json").json()
        assert {"/v1/leads/score", "/v1/leads/score_batch"} <= set(spec["paths"])


def test_refuses_to_start_on_a_feature_service_mismatch(pipeline, tmp_path):
    srv = start_server(pipeline.cfg, tmp_path, overrides="training.mql.feature_service=mql_v2")
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "refusing to start" not in srv.output():
            if srv.proc.poll() is not None:
                break
            time.sleep(0.5)
        assert "refusing to start" in srv.output()
        assert "'mql_v1'" in srv.output() and "'mql_v2'" in srv.output()
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{srv.base}/readyz", timeout=2.0).raise_for_status()
    finally:
        stop_server(srv)
