"""Who may use the desk: the password (Argon2), the signed session cookie, the CSRF tokens
of its forms, and the loopback rule.

Owns: `hash_password`, `verify_password`, `Sessions`, `Guard`, `is_loopback`,
`MIN_PASSWORD`. Imports `web.forms` (the CSRF signer) and `web.limits`.

Local-only by default: bound to a loopback address the desk answers only requests whose
Host is a loopback name (no DNS rebinding), and needs no login. With `[preview]
password_hash` set (required when bound to any other address) nothing but the login page
(and its style sheet) and the health check answers without a session: the cookie is `<issued>.<id>.<signature>`,
HMAC-signed with a secret drawn when the desk starts, HttpOnly and SameSite=Strict. Every
form carries a CSRF token signed to the session (or to the local editor). Wrong passwords
are counted per client address with the web app's rate limiter.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

MIN_PASSWORD = 12
COOKIE = "desk_session"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
#: Paths that answer without a session: the login form, its style sheet, the health check.
OPEN_PATHS = {"/login", "/desk.css", "/healthz"}
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """The Argon2id hash of `password`; `ValueError` when it is shorter than `MIN_PASSWORD`."""
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"the password has {len(password)} characters; at least {MIN_PASSWORD} are needed")
    return _hasher.hash(password)


def verify_password(stored: str, given: str) -> bool:
    """Whether `given` is the password of the hash `stored` (False for a broken hash)."""
    try:
        return _hasher.verify(stored, given)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Sessions:
    """Signed session cookies that last `max_age` seconds."""

    def __init__(self, secret: str, *, max_age: int) -> None:
        self._key = hashlib.sha256(b"newsletter-desk-session\0" + secret.encode("utf-8")).digest()
        self.max_age = max_age

    def _sign(self, issued: int, session: str) -> str:
        digest = hmac.new(self._key, f"{issued}.{session}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")

    def issue(self, *, now: int) -> str:
        session = secrets.token_urlsafe(18)
        return f"{now}.{session}.{self._sign(now, session)}"

    def session_of(self, cookie: str, *, now: int) -> str:
        """The session id of a valid, unexpired cookie, else ""."""
        issued, _, rest = cookie.partition(".")
        session, _, signature = rest.partition(".")
        if not issued.isdigit() or len(issued) > 12 or not session or not signature:
            return ""
        if not hmac.compare_digest(signature, self._sign(int(issued), session)):
            return ""
        if now - int(issued) > self.max_age or int(issued) > now + 60:
            return ""
        return session


def editor_of(request: Request) -> str:
    """Whom the CSRF tokens of this request's forms are signed to: its session, or the
    local editor when the desk needs no login."""
    return str(request.scope.get("desk_session") or "editor")


class Guard:
    """ASGI middleware: the loopback host check, or the login; and the headers every answer
    of the desk carries."""

    def __init__(self, app: Any, *, sessions: Sessions | None, allowed_hosts: set[str], clock: Any) -> None:
        self.app = app
        self.sessions = sessions
        self.allowed_hosts = allowed_hosts
        self.clock = clock

    def _refusal(self, scope: Any) -> Response | None:
        headers = dict(scope.get("headers", []))
        if self.sessions is None:
            host = headers.get(b"host", b"").decode("latin-1").rsplit(":", 1)[0].lower()
            if host not in self.allowed_hosts:
                return PlainTextResponse("The desk answers only on localhost.", status_code=421)
            return None
        request = Request(scope)
        session = self.sessions.session_of(request.cookies.get(COOKIE, ""), now=int(self.clock().timestamp()))
        if session:
            scope["desk_session"] = session
            return None
        if scope["path"] in OPEN_PATHS:
            return None
        if scope["method"] == "GET" and scope["path"] == "/":
            return RedirectResponse("/login", status_code=303)
        return PlainTextResponse("The desk needs a login: open /login.", status_code=401)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, self._with_headers(send))
                return
        await self.app(scope, receive, self._with_headers(send))

    @staticmethod
    def _with_headers(send: Any) -> Any:
        async def wrapped(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"referrer-policy", b"no-referrer"),
                                      (b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store")]
            await send(message)

        return wrapped
