"""The console over HTTP (FastAPI's TestClient): sign-in and roles, CSRF, the audit trail, no
email in the logs, paging, every page's content, and clear errors."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from consolehelpers import ADMIN, ENV, VIEWER
from starlette.testclient import TestClient

from console.audit import recent
from console.auth import ConsoleAuthError, Users


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def sign_in(client: TestClient, who: tuple[str, str]) -> None:
    page = client.get("/login")
    r = client.post(
        "/login",
        data={"username": who[0], "password": who[1], "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text


@pytest.fixture
def admin(make_console: Any) -> TestClient:
    with TestClient(make_console()) as client:
        sign_in(client, ADMIN)
        yield client


@pytest.fixture
def viewer(make_console: Any) -> TestClient:
    with TestClient(make_console()) as client:
        sign_in(client, VIEWER)
        yield client


def test_users_come_from_the_environment() -> None:
    users = Users.from_env(ENV)
    assert users.check(*ADMIN).role == "admin"
    assert users.check(*VIEWER).role == "viewer"
    assert users.check(ADMIN[0], VIEWER[1]) is None
    assert users.check("nobody", ADMIN[1]) is None
    with pytest.raises(ConsoleAuthError, match="FUNNEL_UI_ADMIN=user:password"):
        Users.from_env({})
    with pytest.raises(ConsoleAuthError, match="FUNNEL_UI_VIEWERS: entry 2"):
        Users.from_env({"FUNNEL_UI_VIEWERS": "a:b,nocolon"})


def test_the_app_refuses_to_start_without_users(make_console: Any) -> None:
    with pytest.raises(ConsoleAuthError, match="no users"):
        make_console(env={})


def test_pages_need_a_signed_in_user(make_console: Any) -> None:
    with TestClient(make_console()) as client:
        for path in ("/funnel", "/leads", "/queue", "/audiences", "/experiments", "/models"):
            r = client.get(path, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
        page = client.get("/login")
        r = client.post("/login", data={"username": ADMIN[0], "password": "wrong",
                                        "csrf_token": csrf_of(page.text)})  # fmt: skip
        assert r.status_code == 401 and "Wrong user name or password" in r.text
        assert client.get("/queue", follow_redirects=False).status_code == 303


def test_login_without_a_csrf_token_is_refused(make_console: Any) -> None:
    with TestClient(make_console()) as client:
        client.get("/login")
        r = client.post("/login", data={"username": ADMIN[0], "password": ADMIN[1]})
        assert r.status_code == 403
        assert client.get("/funnel", follow_redirects=False).status_code == 303


def test_every_page_answers_for_a_viewer(viewer: TestClient, console_world: Any) -> None:
    expectations = {
        "/funnel": ["Conversion and drop-off", "awareness → consideration", "Ranked fixes"],
        "/leads": ["leads. An email typed here"],
        "/queue": ["Promoted", "Waiting over the cap", "Held out", "Dead letters"],
        "/audiences": ["hot_leads", "ads"],
        "/experiments": ["Campaigns &amp; experiments", "95% interval"],
        "/models": ["funnel-mql", "version 3", "roc auc", "funnel train churn"],
    }
    for path, texts in expectations.items():
        r = viewer.get(path)
        assert r.status_code == 200, (path, r.text[:500])
        assert "Server-Timing" in r.headers
        for text in texts:
            assert text in r.text, (path, text)
    assert viewer.get("/activity").status_code == 403  # the audit trail is for admins


def dead_lead_listed(html: str, world: Any) -> bool:
    return world.dead_lead in html and "unknown owner for this lead" in html


def test_queue_tabs_show_the_promotion_jobs_decisions(
    viewer: TestClient, console_world: Any, dead_letter: str
) -> None:
    promoted = viewer.get("/queue?tab=promoted").text
    assert console_world.promoted[1] in promoted  # best first: page 1 holds the top five
    waiting = viewer.get("/queue?tab=waiting").text
    assert console_world.waiting[0] in waiting or len(console_world.waiting) > 5
    held = viewer.get("/queue?tab=held_out").text
    assert console_world.held_out[0] in held
    dead = viewer.get("/queue?tab=dead_letters").text
    assert dead_lead_listed(dead, console_world)
    assert viewer.get("/queue?tab=nonsense").status_code == 404


def test_tables_are_paged(viewer: TestClient, console_world: Any) -> None:
    n = len(console_world.promoted)
    assert n > 5  # the world's page size is 5
    first = viewer.get("/queue?tab=promoted&page=1").text
    second = viewer.get("/queue?tab=promoted&page=2").text
    assert f"1–5 of {n}" in first and "page 1 of 2" in first
    rows = lambda html: set(re.findall(r'<td><a href="/leads/([^"]+)">', html))
    assert len(rows(first)) == 5 and rows(first).isdisjoint(rows(second))
    found = viewer.get("/leads?q=.").text  # every lead's domain has a dot
    assert "page 1 of" in found and "Next" in found


def test_a_lead_page_shows_score_grade_reasons_offer_and_history(
    viewer: TestClient, console_world: Any
) -> None:
    lead = console_world.promoted[1]
    page = viewer.get(f"/leads/{lead}").text
    score = int(re.search(r'<span class="big">(\d+)</span>', page).group(1))
    letter = re.search(r'class="grade grade-([A-E])"', page).group(1)
    from console.leads import grade

    assert letter == grade(score, console_world.cfg.ui.grades)
    assert 'id="reasons-for"' in page and 'id="reasons-against"' in page
    assert "Stage" in page and "Offer" in page
    assert "promoted to sales" in page  # the decision log
    history = viewer.get(f"/leads/{lead}/history").text
    scores = [int(s) for s in re.findall(r"<title>\d{4}-\d\d-\d\d: (\d+)</title>", history)]
    assert scores and all(0 <= s <= 100 for s in scores)


def test_search_by_company_and_hashed_email(viewer: TestClient, console_world: Any) -> None:
    from activation.destinations import hash_email
    from core.tables import read_table

    leads = read_table(console_world.cfg.raw_dir, "leads")
    row = leads.iloc[7]
    by_hash = viewer.get(f"/leads?q={hash_email(row['email'])}").text
    assert "Matched as hashed email" in by_hash and f">{row['lead_id']}<" in by_hash
    by_account = viewer.get(f"/leads?q={row['account_id']}").text
    assert "Matched as account id" in by_account and f">{row['lead_id']}<" in by_account


def test_an_unknown_lead_is_a_clear_404(viewer: TestClient) -> None:
    r = viewer.get("/leads/L-NOPE-404")
    assert r.status_code == 404
    assert "no lead with id &#39;L-NOPE-404&#39;" in r.text


def dead_letter_id(client: TestClient) -> int:
    page = client.get("/queue?tab=dead_letters").text
    found = re.search(r"/queue/dead-letters/(\d+)/requeue", page)
    assert found, "no dead letter listed"
    return int(found.group(1))


def test_a_viewer_cannot_requeue_and_is_recorded(viewer: TestClient, dead_letter: str) -> None:
    letter = dead_letter_id(viewer)
    token = csrf_of(viewer.get("/queue?tab=dead_letters").text)
    r = viewer.post(f"/queue/dead-letters/{letter}/requeue", data={"csrf_token": token})
    assert r.status_code == 403 and "read-only" in r.text
    assert dead_letter_id(viewer) == letter  # still there
    last = recent(viewer.app.state.sources.engine, 1)[0]
    assert (last["actor"], last["action"], last["outcome"]) == (
        VIEWER[0], "requeue_dead_letter", "refused",
    )  # fmt: skip


def test_an_action_without_csrf_token_is_refused(admin: TestClient, dead_letter: str) -> None:
    letter = dead_letter_id(admin)
    r = admin.post(f"/queue/dead-letters/{letter}/requeue", data={"csrf_token": "forged"})
    assert r.status_code == 403 and "security token" in r.text
    r = admin.post(f"/queue/dead-letters/{letter}/requeue")
    assert r.status_code == 403
    assert dead_letter_id(admin) == letter
    assert recent(admin.app.state.sources.engine, 1)[0]["outcome"] == "refused"


def test_an_admin_requeues_a_dead_letter_once_and_it_is_recorded(
    make_console: Any, console_world: Any, dead_letter: str, caplog: pytest.LogCaptureFixture
) -> None:
    import sqlalchemy as sa

    from activation.state import dead_letters, outbox

    with TestClient(make_console()) as admin:
        sign_in(admin, ADMIN)
        engine = admin.app.state.sources.engine
        letter = dead_letter_id(admin)
        token = csrf_of(admin.get("/queue?tab=dead_letters").text)
        with caplog.at_level(logging.INFO, logger="funnel.console"):
            r = admin.post(f"/queue/dead-letters/{letter}/requeue", data={"csrf_token": token})
        assert r.status_code == 200 and "back in the outbox" in r.text
        with engine.connect() as conn:
            left = conn.execute(sa.select(dead_letters.c.id)).scalars().all()
            pending = (
                conn.execute(sa.select(outbox.c.payload).where(outbox.c.status == "pending"))
                .scalars()
                .all()
            )
        assert letter not in left
        assert any(console_world.dead_lead in p for p in pending)
        last = recent(engine, 1)[0]
        assert (last["actor"], last["role"], last["action"], last["target"], last["outcome"]) == (
            ADMIN[0], "admin", "requeue_dead_letter", f"dead_letter:{letter}", "ok",
        )  # fmt: skip
        assert f"dead_letter:{letter}" in caplog.text
        again = admin.post(f"/queue/dead-letters/{letter}/requeue", data={"csrf_token": token})
        assert "is gone" in again.text
        assert "requeue_dead_letter" in admin.get("/activity").text


def test_no_email_or_password_reaches_the_logs(
    make_console: Any, console_world: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from core.tables import read_table

    emails = read_table(console_world.cfg.raw_dir, "leads")["email"].tolist()
    with caplog.at_level(logging.DEBUG), TestClient(make_console()) as client:
        page = client.get("/login")
        client.post("/login", data={"username": emails[0], "password": "secret-guess",
                                     "csrf_token": csrf_of(page.text)})  # fmt: skip
        sign_in(client, ADMIN)
        client.get(f"/leads?q={emails[3]}")
        client.get(f"/leads/{emails[4]}")
        for lead in console_world.promoted[:3]:
            client.get(f"/leads/{lead}")
        client.get("/queue?tab=dead_letters")
    # every server-side line (the test client's own request log, httpx, is not the server's)
    text = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))
    )
    assert "GET /leads" in text  # requests are logged...
    leaked = [e for e in emails if e in text]
    assert not leaked, leaked[:3]  # ...but no email, typed or stored
    assert "secret-guess" not in text and ADMIN[1] not in text
    assert "<email>" in text  # the failed sign-in's name was redacted


def test_reports_not_written_yet_give_the_command(make_console: Any, console_world: Any,
                                                  tmp_path: Any) -> None:  # fmt: skip
    from console.app import create_app
    from console.sources import Sources

    cfg = console_world.cfg.model_copy(update={
        "paths": console_world.cfg.paths.model_copy(update={"data_dir": tmp_path / "empty"}),
    })  # fmt: skip
    app = create_app(cfg, sources=Sources(cfg, store=console_world.store, models={},
                                          registry=list), environ=ENV, warm_up=False)  # fmt: skip
    with TestClient(app) as client:
        sign_in(client, VIEWER)
        assert "funnel report experiments" in client.get("/experiments").text
        assert "funnel report funnel" in client.get("/funnel").text
        assert "funnel data generate" in client.get("/leads").text
        assert "funnel jobs sync-audiences" in client.get("/audiences").text
        assert "funnel jobs promote-leads" in client.get("/queue").text
