"""Who may use the console, and what they may do.

Users come from the environment, never from a file in the repository:

- ``FUNNEL_UI_ADMIN``: ``user:password`` (several separated by commas) with the admin role,
  which may act (requeue a dead letter);
- ``FUNNEL_UI_VIEWERS``: ``user:password,user:password`` with the read-only role of sales and
  marketing;
- ``FUNNEL_UI_SECRET``: the key that signs the session cookie (optional: without it a random
  key is drawn at start-up, so sessions end when the console restarts).

Passwords are compared with ``hmac.compare_digest`` against every user, so a wrong name and a
wrong password take the same time. Every form that changes something carries the session's
CSRF token, checked the same way.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from core.errors import FunnelError

ADMIN_ENV = "FUNNEL_UI_ADMIN"
VIEWERS_ENV = "FUNNEL_UI_VIEWERS"
SECRET_ENV = "FUNNEL_UI_SECRET"
Role = Literal["admin", "viewer"]


class ConsoleAuthError(FunnelError, ValueError):
    """The console's users are missing or malformed in the environment."""


@dataclass(frozen=True)
class User:
    name: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _parse(value: str, env: str, role: Role) -> list[tuple[str, str, Role]]:
    out = []
    for i, item in enumerate(part.strip() for part in value.split(",")):
        if not item:
            continue
        name, sep, password = item.partition(":")
        if not sep or not name.strip() or not password:
            raise ConsoleAuthError(
                f"{env}: entry {i + 1} is not user:password (a name, a colon, a non-empty password)"
            )
        out.append((name.strip(), password, role))
    return out


class Users:
    """The console's users and their roles, checked in constant time per user."""

    def __init__(self, entries: list[tuple[str, str, Role]]) -> None:
        if not entries:
            raise ConsoleAuthError(
                f"the console has no users: set {ADMIN_ENV}=user:password (may act) and/or "
                f"{VIEWERS_ENV}=user:password,... (read only) in the environment"
            )
        names = [e[0] for e in entries]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConsoleAuthError(
                f"user(s) {repeated} appear more than once in {ADMIN_ENV}/{VIEWERS_ENV}"
            )
        self._entries = [(n.encode(), p.encode(), r) for n, p, r in entries]

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Users:
        return cls(
            _parse(environ.get(ADMIN_ENV, ""), ADMIN_ENV, "admin")
            + _parse(environ.get(VIEWERS_ENV, ""), VIEWERS_ENV, "viewer")
        )

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, name: str, password: str) -> User | None:
        """The user with this name and password, else None. Every entry is compared, so the
        time taken does not tell which part was wrong."""
        given_name, given_password = name.encode(), password.encode()
        found: User | None = None
        for entry_name, entry_password, role in self._entries:
            name_ok = hmac.compare_digest(entry_name, given_name)
            password_ok = hmac.compare_digest(entry_password, given_password)
            if name_ok and password_ok:
                found = User(entry_name.decode(), role)
        return found

    def role_of(self, name: str) -> Role | None:
        """The role of a user still configured (a session outlives a removed user only until
        its next request)."""
        for entry_name, _, role in self._entries:
            if entry_name.decode() == name:
                return role
        return None


def session_secret(environ: Mapping[str, str]) -> str:
    """``FUNNEL_UI_SECRET`` or a fresh random key (sessions then end with the process)."""
    return environ.get(SECRET_ENV) or secrets.token_urlsafe(32)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(expected: str | None, given: str | None) -> bool:
    """The form's token equals the session's (both present), compared in constant time."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())
