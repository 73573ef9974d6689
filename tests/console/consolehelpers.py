"""The console tests' users and switches (a module of its own: ``conftest`` is a name every
test folder has, so importing from it picks whichever folder's came first)."""

from __future__ import annotations

import os

ADMIN = ("ada", "admin-pass-1")
VIEWER = ("sam", "viewer-pass-2")
ENV = {
    "FUNNEL_UI_ADMIN": f"{ADMIN[0]}:{ADMIN[1]}",
    "FUNNEL_UI_VIEWERS": f"{VIEWER[0]}:{VIEWER[1]}",
    "FUNNEL_UI_SECRET": "console-test-secret",
}


def screenshots_wanted() -> bool:
    """``FUNNEL_SCREENSHOTS=1``: the browser tests write docs/images/console-<page>.png."""
    return os.environ.get("FUNNEL_SCREENSHOTS", "") in ("1", "true", "yes")
