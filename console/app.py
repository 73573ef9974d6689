"""The web console for marketing and sales (``funnel ui``): server-rendered pages over the same
stores as everything else.

Pages: the funnel (stages over time, conversion and drop-off, the ranked fixes), leads (search,
a lead's score with its grade, reasons, score over past snapshots, stage and next best offer),
the MQL queue (promoted, waiting over the daily cap, held out, dead letters), audiences,
experiment readouts and models. Everyone signed in reads; only an admin acts (requeues a dead
letter). Every form carries a CSRF token; every sign-in and action is recorded
(``console.audit``). Requests are logged by path only (no query string, which could hold a
searched email) with their server time, which is also sent as a ``Server-Timing`` header.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import uvicorn
from fastapi import FastAPI, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from activation.destinations import redact_emails
from activation.outbox import requeue_dead_letter
from console import audit, queue
from console.auth import User, Users, csrf_ok, new_csrf_token, session_secret
from console.leads import grade, history_entities, sparkline, split_reasons
from console.models import KINDS, metric_label, metric_value
from console.readouts import (
    EXPERIMENTS_JSON,
    FUNNEL_JSON,
    Missing,
    funnel_view,
    money,
    pct,
    readout_rows,
    stacked_bars,
)
from console.sources import Sources, Unavailable
from core.config import Config
from serving.schemas import LeadScoreRequest, NextBestOfferRequest

HERE = Path(__file__).resolve().parent
log = logging.getLogger("funnel.console")
SESSION_COOKIE = "funnel_console"
SESSION_MAX_AGE_S = 8 * 3600
NAV = (
    ("funnel", "/funnel", "Funnel"),
    ("leads", "/leads", "Leads"),
    ("queue", "/queue", "MQL queue"),
    ("audiences", "/audiences", "Audiences"),
    ("experiments", "/experiments", "Campaigns & experiments"),
    ("models", "/models", "Models"),
)


class LoginRequired(Exception):
    """The request has no signed-in user: sign in first."""


class Refused(Exception):
    """The user may not do this (403), with the reason shown."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def create_app(
    cfg: Config, *, users: Users | None = None, sources: Sources | None = None,
    environ: Mapping[str, str] | None = None, warm_up: bool = True,
) -> FastAPI:  # fmt: skip
    """The console's ASGI app. Users come from the environment (``console.auth``) unless given;
    no user at all refuses to build the app (``ConsoleAuthError``)."""
    env = os.environ if environ is None else environ
    users = users if users is not None else Users.from_env(env)
    sources = sources or Sources(cfg)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> Any:
        if warm_up:
            sources.warm_up()
        yield
        sources.close()

    app = FastAPI(title="funnel console", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)  # fmt: skip
    app.state.cfg, app.state.users, app.state.sources = cfg, users, sources
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.globals.update(
        nav=NAV, pct=pct, money=money, when=queue.when, metric_label=metric_label,
        metric_value=metric_value, tab_titles=queue.TAB_TITLES, quote=quote,
    )  # fmt: skip
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    # -- helpers ------------------------------------------------------------------------------
    def user_of(request: Request) -> User:
        name = request.session.get("user")
        role = users.role_of(name) if name else None
        if role is None:
            request.session.pop("user", None)
            raise LoginRequired()
        return User(name, role)

    def csrf_token(request: Request) -> str:
        token = request.session.get("csrf")
        if not token:
            token = request.session["csrf"] = new_csrf_token()
        return token

    def render(
        request: Request, name: str, context: dict[str, Any], status: int = 200,
        user: User | None = None, active: str = "",
    ) -> HTMLResponse:  # fmt: skip
        context = {
            "user": user, "active": active, "csrf_token": csrf_token(request),
            "cfg": cfg, **context,
        }  # fmt: skip
        return templates.TemplateResponse(request, name, context, status_code=status)

    def missing(request: Request, user: User, active: str, title: str, hint: Missing) -> Response:
        return render(request, "missing.html", {"title": title, "hint": hint}, user=user,
                      active=active)  # fmt: skip

    def check_form(request: Request, user: User, token: str, action: str, target: str) -> None:
        if not csrf_ok(request.session.get("csrf"), token):
            audit.record(sources.engine, actor=user.name, role=user.role, action=action,
                         target=target, outcome="refused", detail="missing or stale CSRF token")  # fmt: skip
            raise Refused("the form's security token is missing or stale: reload the page and "
                          "try again")  # fmt: skip

    def page_size() -> int:
        return cfg.ui.page_size

    # -- errors and logging -------------------------------------------------------------------
    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, _exc: LoginRequired) -> Response:
        target = request.url.path
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> Response:
        user = None
        try:
            user = user_of(request)
        except LoginRequired:
            pass
        return render(request, "error.html", {"title": "Refused", "message": exc.reason},
                      status=403, user=user)  # fmt: skip

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        user = None
        try:
            user = user_of(request)
        except LoginRequired:
            pass
        title = "Not found" if exc.status_code == 404 else f"Error {exc.status_code}"
        message = (
            exc.detail
            if exc.status_code != 404 or exc.detail != "Not Found"
            else (f"nothing at {request.url.path}")
        )
        return render(request, "error.html", {"title": title, "message": message},
                      status=exc.status_code, user=user)  # fmt: skip

    @app.middleware("http")
    async def _timing(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        ms = (time.perf_counter() - started) * 1000
        response.headers["Server-Timing"] = f"app;dur={ms:.1f}"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        if not request.url.path.startswith("/static/"):
            log.info("%s %s %d %.1f ms", request.method, redact_emails(request.url.path),
                     response.status_code, ms)  # fmt: skip
        return response

    # the session middleware wraps the timing one: the handlers above see request.session
    app.add_middleware(
        SessionMiddleware, secret_key=session_secret(env), session_cookie=SESSION_COOKIE,
        max_age=SESSION_MAX_AGE_S, same_site="strict", https_only=False,
    )  # fmt: skip

    # -- sign in / out --------------------------------------------------------------------------
    @app.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request, next: str = "/") -> Response:
        return render(request, "login.html", {"next": _local(next), "error": None})

    @app.post("/login")
    async def login(
        request: Request, username: str = Form(""), password: str = Form(""),
        csrf_token: str = Form(""), next: str = Form("/"),
    ) -> Response:  # fmt: skip
        if not csrf_ok(request.session.get("csrf"), csrf_token):
            return render(request, "login.html", {
                "next": _local(next), "error": "The form expired: please sign in again.",
            }, status=403)  # fmt: skip
        user = users.check(username, password)
        if user is None:
            await run_in_threadpool(audit.record, sources.engine, actor=username or "-",
                                    role="-", action="sign_in", outcome="refused")  # fmt: skip
            return render(request, "login.html", {
                "next": _local(next), "error": "Wrong user name or password.",
            }, status=401)  # fmt: skip
        request.session.clear()
        request.session.update(user=user.name, csrf=new_csrf_token())
        await run_in_threadpool(audit.record, sources.engine, actor=user.name, role=user.role,
                                action="sign_in")  # fmt: skip
        return RedirectResponse(_local(next), status_code=303)

    @app.post("/logout")
    async def logout(request: Request, csrf_token: str = Form("")) -> Response:
        user = user_of(request)
        check_form(request, user, csrf_token, "sign_out", "")
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @app.get("/")
    async def home(request: Request) -> Response:
        user_of(request)
        return RedirectResponse("/funnel", status_code=303)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # -- funnel -------------------------------------------------------------------------------
    @app.get("/funnel", response_class=HTMLResponse)
    def funnel_page(request: Request) -> Response:
        user = user_of(request)
        document = sources.json.read(cfg.data_dir / FUNNEL_JSON)
        counts = sources.stage_counts()
        stages = None
        if counts is not None and not isinstance(counts, str):
            stages = {
                "columns": list(counts.columns),
                "rows": [
                    (idx.strftime("%Y-%m-%d"), [int(v) for v in row])
                    for idx, row in zip(counts.index, counts.to_numpy(), strict=True)
                ],
            }
            stages["chart"] = stacked_bars(stages["rows"], stages["columns"])
        return render(request, "funnel.html", {
            "view": funnel_view(document) if document else None,
            "hint": Missing("the funnel report", "funnel report funnel"),
            "stages": stages,
            "stages_problem": counts if isinstance(counts, str) else None,
            "stages_pending": counts is None,
        }, user=user, active="funnel")  # fmt: skip

    # -- leads --------------------------------------------------------------------------------
    @app.get("/leads", response_class=HTMLResponse)
    def leads_page(request: Request, q: str = "", page: int = 1) -> Response:
        user = user_of(request)
        try:
            directory = sources.directory()
        except Unavailable as exc:
            return missing(
                request, user, "leads", "Leads", Missing(str(exc), "funnel data generate")
            )
        found, how = directory.search(q)
        page = queue.clamp_page(page)
        size = page_size()
        shown = found.iloc[(page - 1) * size : page * size].drop(columns="email")
        rows = shown.to_dict("records")
        listing = queue.Page(rows, len(found), page, size)
        return render(request, "leads.html", {
            "q": q, "how": how, "listing": listing, "total_leads": len(directory),
        }, user=user, active="leads")  # fmt: skip

    @app.get("/leads/{lead_id}", response_class=HTMLResponse)
    def lead_page(request: Request, lead_id: str) -> Response:
        user = user_of(request)
        try:
            directory = sources.directory()
        except Unavailable as exc:
            return missing(
                request, user, "leads", "Leads", Missing(str(exc), "funnel data generate")
            )
        lead = directory.get(lead_id)
        if lead is None:
            raise StarletteHTTPException(
                404, f"no lead with id '{lead_id}' in {cfg.raw_dir}; search by company or "
                "hashed email on the Leads page",
            )  # fmt: skip
        decided = queue.lead_decisions(sources.engine, lead_id)
        live, problem, offer = None, None, None
        try:
            scoring = sources.scoring.get()
            results, _ = scoring.scorer.score([LeadScoreRequest(lead_id=lead_id)])
            data, _ = scoring.scorer.features([LeadScoreRequest(lead_id=lead_id)])
            if results and data:
                model = scoring.model
                n = len(model.feature_names)
                _, reasons = model.predict_explain(data, top_k=n, num_threads=1)
                up, down = split_reasons(reasons[0])
                score = results[0].score
                live = {
                    "score": score, "grade": grade(score, cfg.ui.grades),
                    "probability": results[0].probability, "is_mql": results[0].is_mql,
                    "threshold": results[0].threshold, "model_version": results[0].model_version,
                    "features_as_of": results[0].features_as_of, "for": up, "against": down,
                }  # fmt: skip
            else:
                problem = (
                    "the online store has no features for this lead: run `funnel "
                    "features materialize`"
                )
            if scoring.ranker is not None:
                offer = scoring.ranker.recommend(NextBestOfferRequest(lead_id=lead_id))
            elif scoring.nbo_problem:
                offer = scoring.nbo_problem
        except Unavailable as exc:
            problem = str(exc)
        return render(request, "lead.html", {
            "lead": lead, "live": live, "problem": problem, "offer": offer,
            "state": decided["state"], "decisions": decided["decisions"],
            "grades": cfg.ui.grades,
        }, user=user, active="leads")  # fmt: skip

    @app.get("/leads/{lead_id}/history", response_class=HTMLResponse)
    def lead_history(request: Request, lead_id: str) -> Response:
        user = user_of(request)
        lead = sources.directory().get(lead_id)
        if lead is None:
            raise StarletteHTTPException(404, f"no lead with id '{lead_id}'")
        try:
            ticks = sources.snapshot_ticks()
            entities = history_entities(lead_id, lead["account_id"], lead["created_at"], ticks)
            scored = sources.score_history(entities)
        except Unavailable as exc:
            return render(request, "history.html", {"problem": str(exc), "points": []},
                          user=user)  # fmt: skip
        points = [
            (ts.strftime("%Y-%m-%d"), round(100 * float(p)))
            for ts, p in zip(scored["event_timestamp"], scored["probability"], strict=True)
        ]
        return render(request, "history.html", {
            "problem": None, "points": points, "line": sparkline(points),
        }, user=user)  # fmt: skip

    # -- MQL queue ----------------------------------------------------------------------------
    @app.get("/queue", response_class=HTMLResponse)
    def queue_page(
        request: Request, tab: str = "promoted", day: str = "", page: int = 1
    ) -> Response:
        user = user_of(request)
        if tab not in queue.TABS:
            raise StarletteHTTPException(
                404, f"no queue tab '{tab}'; tabs: {', '.join(queue.TABS)}"
            )
        engine = sources.engine
        day = day or queue.utc_day(time.time())
        page = queue.clamp_page(page)
        threshold = queue.promotion_threshold(engine)
        size = page_size()
        listing = {
            "promoted": lambda: queue.promoted_page(engine, day, page, size),
            "held_out": lambda: queue.held_out_page(engine, day, page, size),
            "waiting": lambda: queue.waiting_page(engine, threshold, page, size),
            "dead_letters": lambda: queue.dead_letter_page(engine, page, size),
        }[tab]()
        for row in listing.rows:
            if "score_now" in row or "score" in row:
                score = (
                    row.get("score_now")
                    if row.get("score_now") is not None
                    else (row.get("score") if "score" in row else round(100 * row["probability"]))
                )
                row["grade"] = grade(score, cfg.ui.grades)
                row["score_shown"] = score
        return render(request, "queue.html", {
            "tab": tab, "day": day, "listing": listing, "threshold": threshold,
            "counts": queue.queue_counts(engine, day, threshold),
            "days": queue.promotion_days(engine), "cap": cfg.jobs.promotion.daily_cap,
            "message": request.session.pop("flash", None),
        }, user=user, active="queue")  # fmt: skip

    @app.post("/queue/dead-letters/{letter_id}/requeue")
    def requeue(request: Request, letter_id: int, csrf_token: str = Form("")) -> Response:
        user = user_of(request)
        target = f"dead_letter:{letter_id}"
        check_form(request, user, csrf_token, "requeue_dead_letter", target)
        if not user.is_admin:
            audit.record(sources.engine, actor=user.name, role=user.role,
                         action="requeue_dead_letter", target=target, outcome="refused",
                         detail="read-only role")  # fmt: skip
            raise Refused("your role is read-only: an admin requeues dead letters")
        done = requeue_dead_letter(sources.engine, letter_id)
        audit.record(sources.engine, actor=user.name, role=user.role,
                     action="requeue_dead_letter", target=target,
                     outcome="ok" if done else "not_found")  # fmt: skip
        request.session["flash"] = (
            f"Dead letter {letter_id} is back in the outbox: the next promotion run sends it."
            if done
            else f"Dead letter {letter_id} is gone (already requeued?)."
        )
        return RedirectResponse("/queue?tab=dead_letters", status_code=303)

    # -- audiences ----------------------------------------------------------------------------
    @app.get("/audiences", response_class=HTMLResponse)
    def audiences_page(request: Request) -> Response:
        user = user_of(request)
        rows = queue.audience_overview(sources.engine)
        return render(request, "audiences.html", {"rows": rows}, user=user, active="audiences")

    @app.get("/audiences/{name}", response_class=HTMLResponse)
    def audience_page(
        request: Request, name: str, destination: str = "", page: int = 1
    ) -> Response:
        user = user_of(request)
        known = [r for r in queue.audience_overview(sources.engine) if r["audience"] == name]
        if not known:
            raise StarletteHTTPException(404, f"no synced audience '{name}': run `funnel jobs "
                                         "sync-audiences`")  # fmt: skip
        listing = queue.audience_members_page(
            sources.engine, name, destination or None, queue.clamp_page(page), page_size()
        )
        return render(request, "audience.html", {
            "name": name, "syncs": known, "listing": listing, "destination": destination,
        }, user=user, active="audiences")  # fmt: skip

    # -- experiments --------------------------------------------------------------------------
    @app.get("/experiments", response_class=HTMLResponse)
    def experiments_page(request: Request) -> Response:
        user = user_of(request)
        document = sources.json.read(cfg.data_dir / EXPERIMENTS_JSON)
        if document is None:
            return missing(request, user, "experiments", "Campaigns & experiments",
                           Missing("the experiment readouts", "funnel report experiments"))  # fmt: skip
        return render(request, "experiments.html", {
            "document": document, "rows": readout_rows(document),
        }, user=user, active="experiments")  # fmt: skip

    # -- models -------------------------------------------------------------------------------
    @app.get("/models", response_class=HTMLResponse)
    def models_page(request: Request) -> Response:
        user = user_of(request)
        try:
            found = sources.champions()
            problem = None
        except Exception as exc:  # noqa: BLE001 - an unreachable registry is shown, not raised
            found, problem = [], f"cannot read the MLflow registry: {str(exc).splitlines()[0]}"
        return render(request, "models.html", {"champions": found, "problem": problem},
                      user=user, active="models")  # fmt: skip

    @app.get("/models/{kind}/card")
    def model_card(request: Request, kind: str) -> Response:
        user_of(request)
        if kind not in KINDS:
            raise StarletteHTTPException(404, f"no model kind '{kind}'; kinds: {', '.join(KINDS)}")
        path = cfg.data_dir / "reports" / f"model-{kind}.html"
        if not path.is_file():
            raise StarletteHTTPException(
                404, f"no model card for {kind} yet: run `funnel report model {kind}`"
            )
        return FileResponse(path, media_type="text/html")

    # -- audit trail --------------------------------------------------------------------------
    @app.get("/activity", response_class=HTMLResponse)
    def activity_page(request: Request) -> Response:
        user = user_of(request)
        if not user.is_admin:
            raise Refused("the activity log is for admins")
        rows = audit.recent(sources.engine, 100)
        return render(request, "activity.html", {"rows": rows}, user=user, active="activity")

    return app


def _local(target: str) -> str:
    """Only a path on this site (no scheme, no host): a login link cannot send anyone away."""
    parts = urlsplit(target or "/")
    if parts.scheme or parts.netloc or not (parts.path or "/").startswith("/"):
        return "/"
    return parts.path + (f"?{parts.query}" if parts.query else "")


def run_console(app: FastAPI, host: str, port: int) -> None:
    """Serve the console with uvicorn until stopped; requests are logged by the console itself
    (path only), so uvicorn's access log, which would show query strings, stays off."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")
