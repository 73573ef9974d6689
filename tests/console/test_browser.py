"""The console in a real browser: Playwright drives Debian's Chromium (``/usr/bin/chromium``)
against the console served by uvicorn on a free port, over the tiny pipeline.

It signs in, opens every page, follows a lead from the MQL queue to its page, requeues a dead
letter as an admin and is refused as a read-only user. With ``FUNNEL_SCREENSHOTS=1`` it saves
a screenshot of each page to ``docs/images/console-<page>.png`` (the docs show them).

Without Chromium the tests skip, except in CI (``CI=true``), where they fail: ``.ci/run``
installs the ``chromium`` package when it is missing.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from consolehelpers import ADMIN, ENV, VIEWER, screenshots_wanted

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "docs" / "images"
pytestmark = pytest.mark.e2e


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = None
    if not CHROMIUM.is_file():
        reason = f"{CHROMIUM} not found (apt-get install chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright is not installed (uv sync --dev)"
    if reason:
        if _in_ci():
            pytest.fail(f"{reason}: the browser tests need it in CI")
        pytest.skip(reason)
    with sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield launched
        launched.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(console_world: Any) -> Iterator[str]:
    """The console (the same app ``funnel ui`` runs, over the test world) on a free port."""
    import uvicorn

    from console.app import create_app
    from console.models import Champion
    from console.sources import Sources

    def registry() -> list[Champion]:
        return [
            Champion("mql", "funnel-mql", version="3", created="2026-10-05 09:12 UTC",
                     aliases=["champion"], metrics=[("test_roc_auc", 0.812), ("test_pr_auc", 0.41),
                     ("test_brier", 0.061), ("threshold", 0.38)],
                     mlflow_url="http://127.0.0.1:5000/#/models/funnel-mql/versions/3"),
            Champion("churn", "funnel-churn", problem="no 'champion' version of funnel-churn "
                     "yet: run `funnel train churn`"),
        ]  # fmt: skip

    sources = Sources(
        console_world.cfg, store=console_world.store, models=console_world.models,
        registry=registry,
    )  # fmt: skip
    app = create_app(console_world.cfg, sources=sources, environ=ENV, warm_up=True)
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            access_log=False)  # fmt: skip
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline:
            pytest.fail("the console did not start within 20 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def _sign_in(browser: Any, base: str, who: tuple[str, str]) -> Any:
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{base}/queue")  # not signed in: sent to the sign-in page
    assert "/login" in page.url
    page.fill("input[name=username]", who[0])
    page.fill("input[name=password]", who[1])
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/queue")  # back where the user was going
    return page


def _shot(page: Any, name: str) -> None:
    if screenshots_wanted():
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"console-{name}.png"), full_page=True)


def test_every_page_opens_and_a_lead_is_followed_from_the_queue(
    browser: Any, server: str, dead_letter: str
) -> None:
    page = _sign_in(browser, server, VIEWER)
    assert page.locator("h1").inner_text() == "MQL queue"

    page.goto(f"{server}/funnel")
    page.wait_for_selector("text=Conversion and drop-off")
    for _ in range(40):  # the stage counts are computed in the background
        if page.locator("#stages-pending").count() == 0:
            break
        time.sleep(0.25)
        page.reload()
    assert page.locator("svg[aria-label='leads per stage at each snapshot'] rect").count() > 0
    _shot(page, "funnel")

    page.goto(f"{server}/queue")
    _shot(page, "queue")
    first = page.locator("#queue-promoted tbody tr td a").first
    lead_id = first.inner_text()
    first.click()
    page.wait_for_url(f"{server}/leads/{lead_id}")
    assert page.locator("h1").inner_text() == f"Lead {lead_id}"
    assert page.locator(".score .big").inner_text().isdigit()
    assert page.locator(".score .grade").inner_text() in "ABCDE"
    # the score history arrives after the page (fetched by the page's script)
    page.wait_for_selector("#history-part svg circle")
    assert page.locator("#history-part svg circle").count() >= 2
    _shot(page, "lead")

    page.goto(f"{server}/leads")
    page.fill("input[name=q]", lead_id)
    page.press("input[name=q]", "Enter")
    page.wait_for_selector("#lead-results")
    assert page.locator("#lead-results tbody tr").count() == 1
    _shot(page, "leads")

    for path, heading, selector, name in (
        ("/audiences", "Audiences", "#audiences", "audiences"),
        ("/experiments", "Campaigns & experiments", "#readouts", "experiments"),
        ("/models", "Models", "#model-mql", None),  # a stub registry: no screenshot
    ):
        page.goto(f"{server}{path}")
        assert page.locator("h1").inner_text() == heading
        assert page.locator(selector).count() == 1
        if name:
            _shot(page, name)
    page.goto(f"{server}/queue?tab=dead_letters")
    _shot(page, "dead-letters")
    page.close()


def test_requeue_is_refused_read_only_and_done_as_admin(
    browser: Any, server: str, dead_letter: str
) -> None:
    viewer = _sign_in(browser, server, VIEWER)
    viewer.goto(f"{server}/queue?tab=dead_letters")
    rows = viewer.locator("#dead-letters tbody tr")
    assert rows.count() >= 1
    assert dead_letter in rows.first.inner_text()
    viewer.locator("#dead-letters button").first.click()
    viewer.wait_for_selector("text=your role is read-only")
    viewer.goto(f"{server}/queue?tab=dead_letters")
    assert viewer.locator("#dead-letters tbody tr").count() == rows.count()
    viewer.close()

    admin = _sign_in(browser, server, ADMIN)
    admin.goto(f"{server}/queue?tab=dead_letters")
    before = admin.locator("#dead-letters tbody tr").count()
    admin.locator("#dead-letters button").first.click()
    admin.wait_for_selector("text=back in the outbox")
    assert admin.locator("#dead-letters tbody tr").count() == before - 1
    admin.goto(f"{server}/activity")
    assert "requeue_dead_letter" in admin.locator("#activity").inner_text()
    assert "refused" in admin.locator("#activity").inner_text()
    admin.close()
