"""MQL promotion: the pure decision, the destinations, and delivery through the outbox against
a real loopback receiver that fails on a schedule."""

from __future__ import annotations

import hashlib
import json
import random
import re

import pandas as pd
import pytest
import sqlalchemy as sa
from jobhelpers import config_of, jobs_tree, write_scores
from receiver import Receiver

from activation.destinations import (
    FileDestination,
    PermanentError,
    TransientError,
    WebhookDestination,
    hash_email,
    sign,
)
from activation.lead_promotion import (
    Thresholds,
    changed_scores,
    decide,
    merge_scores,
    read_scores,
    resolve_thresholds,
    run_promotion,
    state_rows,
)
from activation.outbox import (
    backoff_delay,
    deliver,
    enqueue,
    requeue_dead_letters,
    tries_this_run,
)
from activation.state import (
    LeaseHeldError,
    dead_letters,
    job_runs,
    lead_state,
    leased_run,
    leases,
    open_engine,
    outbox,
    promotions,
    rows_of,
)
from core.config import ConfigError, PromotionConfig, RetryConfig, load_config

T = Thresholds(promote=0.5, rearm=0.3)


def state(probs: dict[str, float], armed: dict[str, bool] | None = None) -> pd.DataFrame:
    armed = armed or {}
    return pd.DataFrame(
        {
            "lead_id": list(probs),
            "probability": list(probs.values()),
            "armed": [armed.get(k, True) for k in probs],
            "promotions": [0] * len(probs),
        }
    )


# -- the decision -------------------------------------------------------------------------------
def test_decide_promotes_armed_leads_over_the_threshold_highest_first_within_capacity() -> None:
    out = decide(state({"a": 0.6, "b": 0.9, "c": 0.4, "d": 0.7}), T, capacity=2)
    assert out.loc[out["promote"], "lead_id"].tolist() == ["b", "d"]
    assert out.loc[out["waiting"], "lead_id"].tolist() == ["a"]  # over the cap: waits
    assert out.set_index("lead_id")["armed"].to_dict() == {
        "a": True,
        "b": False,
        "c": True,
        "d": False,
    }
    assert out["promotions"].tolist() == [0, 1, 0, 1]


def test_decide_hysteresis_promotes_once_until_the_score_falls_below_rearm() -> None:
    s = state({"a": 0.6})
    s = decide(s, T, 10).drop(columns=["promote", "waiting"])
    for p in (0.55, 0.45, 0.31, 0.8):  # hovering above rearm: no second promotion
        s["probability"] = p
        s = decide(s, T, 10)
        assert not s["promote"].any()
        s = s.drop(columns=["promote", "waiting"])
    s["probability"] = 0.29  # below rearm: armed again, not promoted
    s = decide(s, T, 10).drop(columns=["promote", "waiting"])
    assert bool(s["armed"].iloc[0])
    s["probability"] = 0.51
    s = decide(s, T, 10)
    assert bool(s["promote"].iloc[0]) and int(s["promotions"].iloc[0]) == 2


def test_decide_with_no_capacity_promotes_nobody() -> None:
    out = decide(state({"a": 0.9}), T, capacity=0)
    assert not out["promote"].any() and out["waiting"].all() and out["armed"].all()


def stored(rows: dict[str, tuple[str, bool, int]]) -> pd.DataFrame:
    """``lead_state`` as loaded: lead id -> (fingerprint, armed, promotions)."""
    frame = pd.DataFrame(
        {
            "lead_id": list(rows),
            "probability": 0.4,
            "score": 40,
            "fingerprint": [f for f, _, _ in rows.values()],
            "reasons": "[]",
            "model_version": "m/1",
            "features_as_of": 1.6e9,
            "armed": [a for _, a, _ in rows.values()],
            "promotions": [n for _, _, n in rows.values()],
            "updated_at": 0.0,
        }
    )
    return frame.set_index("lead_id", drop=False)


def scored(rows: dict[str, tuple[float, str]]) -> pd.DataFrame:
    """Scores as read: lead id -> (probability, fingerprint)."""
    return pd.DataFrame(
        {
            "lead_id": list(rows),
            "probability": [p for p, _ in rows.values()],
            "fingerprint": [f for _, f in rows.values()],
            "reasons": [["Viewed pricing"]] * len(rows),
            "model_version": "m/2",
            "features_as_of": 1.7e9,
        }
    )


def test_only_new_and_changed_leads_are_rescored_and_keep_their_promotion_state() -> None:
    state = stored({"a": ("f1", False, 1), "b": ("f2", False, 2), "z": ("f3", True, 0)})
    scores = scored({"a": (0.9, "f1"), "b": (0.1, "f9"), "c": (0.7, "f4")})
    changed = changed_scores(scores, state, all_leads=False)
    assert changed["lead_id"].tolist() == ["b", "c"]  # a's fingerprint is the stored one
    assert len(changed_scores(scores, state, all_leads=True)) == 3
    merged, fresh = merge_scores(state, changed)
    assert fresh["lead_id"].tolist() == ["b", "c"] and fresh["score"].tolist() == [10, 70]
    assert json.loads(fresh["reasons"].iloc[0]) == ["Viewed pricing"]
    by_id = merged.set_index("lead_id")
    assert sorted(by_id.index) == ["a", "b", "c", "z"]
    assert by_id.loc["a", "probability"] == 0.4  # not rescored: the stored row as it was
    assert (by_id.loc["b", "armed"], by_id.loc["b", "promotions"]) == (False, 2)
    assert (by_id.loc["c", "armed"], by_id.loc["c", "promotions"]) == (True, 0)  # a new lead


def test_state_rows_are_the_fresh_leads_and_those_whose_armed_flag_changed() -> None:
    state = stored({"a": ("f1", False, 1), "z": ("f3", True, 0)})
    merged, fresh = merge_scores(state, scored({"c": (0.7, "f4")}))
    merged.loc[merged["lead_id"] == "a", "probability"] = 0.1  # below re-arm: armed again
    merged.loc[merged["lead_id"] == "c", "features_as_of"] = float("nan")  # scores from a file
    decided = decide(merged, T, capacity=10)
    rows = state_rows(decided, merged, fresh["lead_id"], now=123.0)
    assert [(r["lead_id"], r["armed"], r["promotions"]) for r in rows] == [
        ("a", True, 1),
        ("c", False, 1),  # promoted now
    ]
    assert {r["updated_at"] for r in rows} == {123.0} and rows[1]["features_as_of"] is None
    assert set(rows[0]) == {c.name for c in lead_state.columns}


def test_thresholds_default_to_the_models_and_reject_rearm_over_threshold() -> None:
    assert resolve_thresholds(PromotionConfig(), 0.4) == Thresholds(0.4, pytest.approx(0.3))
    assert resolve_thresholds(PromotionConfig(threshold=0.6, rearm_threshold=0.2), 0.4) == (
        Thresholds(0.6, 0.2)
    )
    with pytest.raises(ValueError, match="threshold is not set"):
        resolve_thresholds(PromotionConfig(), None)
    with pytest.raises(ValueError, match="rearm_threshold"):
        resolve_thresholds(PromotionConfig(rearm_threshold=0.5), 0.4)
    with pytest.raises(ConfigError, match="rearm_threshold"):
        load_config(
            overrides=["jobs.promotion.threshold=0.3", "jobs.promotion.rearm_threshold=0.4"]
        )


def test_config_rejects_an_unknown_promotion_destination() -> None:
    with pytest.raises(ConfigError, match="promotion.destination 'crm'"):
        load_config(overrides=["jobs.promotion.destination=crm"])


def test_read_scores_rejects_bad_files(tmp_path) -> None:
    path = tmp_path / "s.csv"
    pd.DataFrame({"lead_id": ["a"]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['probability'\]"):
        read_scores(path)
    pd.DataFrame({"lead_id": ["a", "b"], "probability": [0.2, 1.7]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"in \[0, 1\]; bad rows \[1\]"):
        read_scores(path)
    pd.DataFrame({"lead_id": ["a", "a"], "probability": [0.2, 0.3]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="lead_id repeats"):
        read_scores(path)


# -- destinations -------------------------------------------------------------------------------
def test_file_destination_skips_keys_it_holds_and_cuts_a_torn_last_line(tmp_path) -> None:
    path = tmp_path / "out.jsonl"
    dest = FileDestination("f", path)
    dest.send({"idempotency_key": "k1", "x": 1})
    dest.send({"idempotency_key": "k1", "x": 1})
    dest.close()
    with path.open("a") as fh:  # a crash in the middle of writing k2
        fh.write('{"idempotency_key": "k2", "x"')
    dest = FileDestination("f", path)
    dest.send({"idempotency_key": "k2", "x": 2})
    dest.send({"idempotency_key": "k1", "x": 1})
    dest.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [m["idempotency_key"] for m in lines] == ["k1", "k2"]


def test_csv_file_destination_keeps_one_header_across_reopens(tmp_path) -> None:
    path = tmp_path / "out.csv"
    for key in ("a", "b", "a"):
        dest = FileDestination("f", path, "csv")
        dest.send({"idempotency_key": key, "reasons": ["r1", "r2"], "score": 70})
        dest.close()
    frame = pd.read_csv(path)
    assert frame["idempotency_key"].tolist() == ["a", "b"]
    assert json.loads(frame["reasons"][0]) == ["r1", "r2"]


@pytest.mark.parametrize(
    ("behaviour", "error"),
    [
        ("500", TransientError),
        ("503", TransientError),
        ("429", TransientError),
        ("400", PermanentError),
        ("slow", TransientError),
        ("drop", TransientError),
    ],
)
def test_webhook_classifies_answers(behaviour: str, error: type[Exception]) -> None:
    receiver = Receiver(weights={behaviour: 1.0}).up()
    dest = WebhookDestination("w", receiver.url, "s3cret", timeout_s=0.3)
    try:
        with pytest.raises(error):
            dest.send({"idempotency_key": "k", "a": 1})
    finally:
        dest.close()
        receiver.down()


def test_webhook_signs_and_a_refused_connection_is_transient() -> None:
    receiver = Receiver(secret="s3cret").up()
    good = WebhookDestination("w", receiver.url, "s3cret")
    bad = WebhookDestination("w", receiver.url, "wrong")
    good.send({"idempotency_key": "k", "a": 1})
    with pytest.raises(PermanentError, match="HTTP 401"):
        bad.send({"idempotency_key": "k2", "a": 1})
    assert list(receiver.held) == ["k"] and receiver.bad_signatures == 1
    receiver.down()
    with pytest.raises(TransientError, match="connection failed"):
        good.send({"idempotency_key": "k3"})
    good.close()
    bad.close()
    body = b'{"a":1}'
    assert sign("s", "1", body) == sign("s", "1", body) != sign("s", "2", body)


def test_backoff_grows_exponentially_with_full_jitter_and_a_cap() -> None:
    rng = random.Random(0)
    draws = {a: [backoff_delay(a, 0.5, 4.0, rng) for _ in range(500)] for a in (1, 2, 3, 6)}
    assert max(draws[1]) <= 0.5 and max(draws[2]) <= 1.0 and max(draws[6]) <= 4.0
    assert 0.2 < sum(draws[1]) / 500 < 0.3 and 0.4 < sum(draws[2]) / 500 < 0.6
    assert min(draws[3]) < 0.5 < max(draws[3])  # jittered, not a fixed step


def test_email_hash_is_sha256_of_the_normalized_address() -> None:
    assert hash_email("  Ada@Example.COM ") == hash_email("ada@example.com")
    assert hash_email("ada@example.com") == hashlib.sha256(b"ada@example.com").hexdigest()


# -- the outbox -----------------------------------------------------------------------------------
def _retry(**kw: float) -> RetryConfig:
    return RetryConfig(**{"max_attempts": 4, "attempts_per_run": 2, "base_delay_s": 0.0, **kw})


def test_a_message_gets_the_tries_of_a_run_until_it_reaches_max_attempts() -> None:
    assert [tries_this_run(a, 3, 10) for a in (0, 7, 8, 10, 12)] == [3, 3, 2, 0, 0]


def test_outbox_dead_letters_a_refused_message_at_once_and_after_max_attempts(tmp_path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 's.db'}")
    with engine.begin() as conn:
        enqueue(conn, "w", [{"idempotency_key": "a"}, {"idempotency_key": "a"}], 0.0)
    assert len(rows_of(engine, outbox)) == 1  # one key, one message
    receiver = Receiver(weights={"400": 1.0}).up()
    dest = WebhookDestination("w", receiver.url, "s3cret", timeout_s=0.5)
    report = deliver(engine, dest, _retry())
    assert (report.dead, report.sent, len(receiver.deliveries)) == (1, 0, 1)  # no retry on 400
    receiver.weights = {"500": 1.0}
    with engine.begin() as conn:
        enqueue(conn, "w", [{"idempotency_key": "b"}], 0.0)
    first = deliver(engine, dest, _retry())  # 2 tries this run, then it waits
    assert first.stopped_early and first.pending == 1 and first.dead == 0
    second = deliver(engine, dest, _retry())  # 2 more: 4 = max_attempts
    assert second.dead == 1 and second.pending == 0
    letters = rows_of(engine, dead_letters)
    assert sorted(r["idempotency_key"] for r in letters) == ["a", "b"]
    assert "HTTP 500" in next(r["last_error"] for r in letters if r["idempotency_key"] == "b")
    receiver.weights = {"ok": 1.0}
    assert requeue_dead_letters(engine) == 2
    assert deliver(engine, dest, _retry()).sent == 2
    assert set(receiver.held) == {"a", "b"}
    dest.close()
    receiver.down()


def test_promote_from_scores_delivers_each_promotion_once_through_a_flaky_receiver(
    tmp_path, monkeypatch
) -> None:
    """Connections refused for the first runs, then 5xx, 429, timeouts after storing, and
    dropped connections; the job is rerun until the outbox is empty."""
    monkeypatch.setenv("FUNNEL_TEST_SECRET", "s3cret")
    receiver = Receiver(
        weights={"ok": 0.45, "500": 0.15, "503": 0.05, "429": 0.1, "slow": 0.15, "drop": 0.1},
        seed=3,
    )
    cfg = config_of(tmp_path, jobs_tree(tmp_path, webhook=receiver.url))
    scores = write_scores(tmp_path / "scores.parquet", 120, seed=1)
    expected = {f"mql-promotion:{i}:1" for i in scores.loc[scores["probability"] >= 0.5, "lead_id"]}
    assert len(expected) > 40
    runs = []
    for run in range(40):
        if run == 2:
            receiver.up()  # refused connections for the first two runs
        report = run_promotion(cfg, scores_file=tmp_path / "scores.parquet", progress=False)
        runs.append(report)
        if report.delivery.pending == 0 and run >= 2:
            break
    assert runs[0].promoted == len(expected) and all(r.promoted == 0 for r in runs[1:])
    assert runs[0].delivery.sent == 0 and runs[0].delivery.stopped_early
    assert set(receiver.held) == expected  # nothing lost, nothing extra
    assert all(
        receiver.held[k]["lead_id"] == k.split(":")[1] and receiver.held[k]["promotion_number"] == 1
        for k in expected
    )
    assert receiver.duplicates() > 0  # answers were lost: resends were recognised by key
    engine = open_engine(cfg.state_store_url)
    assert not rows_of(engine, dead_letters)
    sent = rows_of(engine, outbox)
    assert len(sent) == len(expected) and {r["status"] for r in sent} == {"sent"}
    with engine.connect() as conn:
        n = conn.execute(sa.select(sa.func.count()).select_from(promotions)).scalar_one()
    assert n == len(expected)
    receiver.down()


def test_daily_cap_makes_leads_wait_highest_score_first(tmp_path) -> None:
    cfg = config_of(tmp_path, jobs_tree(tmp_path, cap=5))
    scores = write_scores(tmp_path / "scores.parquet", 60, seed=2)
    hot = scores[scores["probability"] >= 0.5].sort_values("probability", ascending=False)
    day = 1_800_000_000.0
    first = run_promotion(
        cfg, scores_file=tmp_path / "scores.parquet", progress=False, clock=lambda: day
    )
    again = run_promotion(
        cfg, scores_file=tmp_path / "scores.parquet", progress=False, clock=lambda: day + 60
    )
    nextday = run_promotion(
        cfg, scores_file=tmp_path / "scores.parquet", progress=False, clock=lambda: day + 86_400
    )
    assert (first.promoted, again.promoted, nextday.promoted) == (5, 0, 5)
    assert first.waiting == len(hot) - 5 and again.changed == 0  # unchanged scores: not rescored
    sent = [json.loads(line)["lead_id"] for line in (tmp_path / "sales.jsonl").open()]
    assert sent == hot["lead_id"].tolist()[:10]


def test_promote_cli_reports_and_exits_3_when_the_lease_is_held(tmp_path) -> None:
    from click.testing import CliRunner

    from activation.state import Lease
    from app.cli import main

    cfg_path = tmp_path / "configs" / "jobs.yaml"
    cfg = config_of(tmp_path, jobs_tree(tmp_path))
    write_scores(tmp_path / "scores.parquet", 30, seed=4)
    args = [
        "--config",
        str(cfg_path),
        "jobs",
        "promote-leads",
        "--scores",
        str(tmp_path / "scores.parquet"),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "promoted" in result.output and "sent to sales" in result.output
    other = Lease(open_engine(cfg.state_store_url), "promote", 60)
    other.holder = "elsewhere:1:x"  # a live holder on another host
    other.acquire()
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 3 and "holds the lease" in result.output
    bad = CliRunner().invoke(main, [*args[:-1], str(tmp_path / "missing.parquet")])
    assert bad.exit_code != 0 and "scores file not found" in bad.output


def test_a_leased_run_records_its_end_and_frees_the_lease_however_the_job_ends(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    with leased_run(url, "job", 60) as job:
        job.run.summary = {"done": 1}
        with pytest.raises(LeaseHeldError), leased_run(url, "job", 60):
            pass  # a second process starting the same job stops here
    with pytest.raises(RuntimeError, match="broke"), leased_run(url, "job", 60):
        raise RuntimeError("the job broke")
    engine = open_engine(url)
    runs = sorted(rows_of(engine, job_runs), key=lambda r: r["id"])
    assert [r["status"] for r in runs] == ["ok", "failed"]
    assert json.loads(runs[0]["summary"]) == {"done": 1}
    assert json.loads(runs[1]["summary"])["error"] == "RuntimeError: the job broke"
    assert [r["expires_at"] for r in rows_of(engine, leases)] == [0.0]  # released


def test_promote_on_postgresql_state_store(tmp_path, monkeypatch, pg_state_store) -> None:
    monkeypatch.setenv("FUNNEL_TEST_SECRET", "s3cret")
    receiver = Receiver(weights={"ok": 0.6, "500": 0.2, "slow": 0.2}, seed=5).up()
    cfg = config_of(tmp_path, jobs_tree(tmp_path, webhook=receiver.url, state_store=pg_state_store))
    scores = write_scores(tmp_path / "scores.parquet", 80, seed=6)
    expected = {f"mql-promotion:{i}:1" for i in scores.loc[scores["probability"] >= 0.5, "lead_id"]}
    for _ in range(20):
        if (
            run_promotion(
                cfg, scores_file=tmp_path / "scores.parquet", progress=False
            ).delivery.pending
            == 0
        ):
            break
    assert set(receiver.held) == expected
    engine = open_engine(pg_state_store)
    assert engine.dialect.name == "postgresql"
    assert len(rows_of(engine, promotions)) == len(expected)
    receiver.down()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql+psycopg://u:pw@127.0.0.1:9/test", r"u:\*\*\*@127\.0\.0\.1:9/test .*refused"),
        ("nonsense", "Could not parse SQLAlchemy URL"),
    ],
)
def test_an_unreachable_state_store_is_one_clear_line(tmp_path, url: str, message: str) -> None:
    from click.testing import CliRunner

    from app.cli import main

    write_scores(tmp_path / "s.parquet", 5)
    result = CliRunner().invoke(
        main,
        [
            "--set",
            f"jobs.state_store={url}",
            "--set",
            "jobs.promotion.threshold=0.5",
            "jobs",
            "promote-leads",
            "--scores",
            str(tmp_path / "s.parquet"),
        ],
    )
    assert result.exit_code == 1
    assert re.search(rf"cannot open the jobs' state store .*{message}", result.output), (
        result.output
    )
    assert "pw" not in result.output
