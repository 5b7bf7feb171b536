"""Dashboard sessions: an API key logs in once; the browser then carries a signed cookie.

* **Session cookie** ``pw_session``: ``base64url(json) "." base64url(HMAC-SHA256)`` holding the
  API key id, its company, a random CSRF secret and the issue/expiry times. Signed with a key
  derived from the server's ``api_key_pepper`` (so rotating the pepper ends every session);
  ``HttpOnly``, ``SameSite=Strict``, ``Path=/ui``, ``Secure`` when the request came over HTTPS.
  Every request re-checks that the key still exists, is not revoked and still belongs to the
  same company: revoking a key ends its sessions at once.
* **CSRF**: every POST made with the session cookie must carry the session's CSRF token (form
  field ``csrf_token`` or header ``X-CSRF-Token``), and a foreign ``Origin`` is refused. The
  login form itself is protected by a double-submit token (cookie ``pw_login`` + form field).
* **API key without a session**: a request with ``Authorization: Bearer pwk_...`` or
  ``X-API-Key`` is authenticated like the BC-facing API; it needs no CSRF token (a browser
  never adds those headers by itself).

Everything a session sees or changes is scoped to its company (the same isolation as the API).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.responses import Response

from payweave.core.service.apikeys import ApiKeys, Principal
from payweave.core.service.context import ServiceContext
from payweave.core.service.security import api_keys

SESSION_COOKIE = "pw_session"
LOGIN_COOKIE = "pw_login"
COOKIE_PATH = "/ui"
#: A session lasts this long after login (then the API key is asked for again).
SESSION_SECONDS = 8 * 3600
LOGIN_TOKEN_SECONDS = 30 * 60
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
_VERSION = 1


#: Why the login form is shown again (``/ui/login?reason=<code>``): fixed sentences, so a link
#: can never put words of its own on the login page.
REASONS: dict[str, str] = {
    "login_required": "Log in with your API key to use the dashboard.",
    "invalid": "Your session is not valid; log in again.",
    "expired": "Your session has ended; log in again.",
    "revoked": "The API key of this session was revoked; log in with a valid key.",
    "bad_key": "The API key is not valid or was revoked.",
    "logged_out": "You are logged out.",
}


class DashboardAuthError(Exception):
    """Not logged in (or the session ended); pages redirect to the login form."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.message = REASONS[reason]
        super().__init__(self.message)


class CsrfError(Exception):
    """A state-changing request without the session's CSRF token, or from a foreign origin."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class DashboardUser:
    """Who uses the dashboard: an API key's principal, via a session cookie or the key itself."""

    principal: Principal
    csrf_token: str | None
    """The session's CSRF token (None when authenticated by an API key header)."""
    via: str
    """``session`` or ``api_key``."""
    expires_at: float | None = None

    @property
    def company_id(self) -> str:
        return self.principal.company_id

    @property
    def actor(self) -> str:
        return f"dashboard:{self.principal.actor}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signing_key(context: ServiceContext, purpose: str) -> bytes:
    pepper = context.settings.api_key_pepper.get_secret_value().encode()
    return hmac.new(pepper, f"payweave dashboard {purpose} v{_VERSION}".encode(), hashlib.sha256).digest()


def sign(context: ServiceContext, purpose: str, payload: dict[str, Any]) -> str:
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    mac = hmac.new(_signing_key(context, purpose), body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def unsign(context: ServiceContext, purpose: str, token: str | None) -> dict[str, Any] | None:
    """The payload of a token this server signed for ``purpose``; None if forged or malformed."""
    if not token or token.count(".") != 1 or len(token) > 4096:
        return None
    body, mac = token.split(".")
    expected = _b64(hmac.new(_signing_key(context, purpose), body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected, mac):
        return None
    try:
        payload = json.loads(_unb64(body))
    except (ValueError, UnicodeDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path=COOKIE_PATH, httponly=True, samesite="strict",
                        secure=_secure(request))


def clear_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(name, path=COOKIE_PATH, httponly=True, samesite="strict", secure=_secure(request))


# ------------------------------------------------------------------------------ login token
def issue_login_token(context: ServiceContext) -> tuple[str, str]:
    """A fresh double-submit token for the login form: (the form field, the cookie value)."""
    nonce = secrets.token_urlsafe(24)
    return nonce, sign(context, "login", {"n": nonce, "e": int(time.time()) + LOGIN_TOKEN_SECONDS})


def set_login_cookie(response: Response, request: Request, cookie_value: str) -> None:
    _set_cookie(response, request, LOGIN_COOKIE, cookie_value, LOGIN_TOKEN_SECONDS)


def check_login_token(context: ServiceContext, request: Request, submitted: str | None) -> None:
    check_origin(context, request)
    payload = unsign(context, "login", request.cookies.get(LOGIN_COOKIE))
    if payload is None or not submitted or int(payload.get("e", 0)) < time.time():
        raise CsrfError("The login form expired or was not sent by this site; reload the page and log in again.")
    if not hmac.compare_digest(str(payload.get("n", "")), submitted):
        raise CsrfError("The login form expired or was not sent by this site; reload the page and log in again.")


# ------------------------------------------------------------------------------ sessions
def start_session(context: ServiceContext, request: Request, response: Response, principal: Principal) -> DashboardUser:
    now = int(time.time())
    csrf = secrets.token_urlsafe(32)
    payload = {"k": principal.key_id, "c": principal.company_id, "x": csrf, "i": now, "e": now + SESSION_SECONDS}
    _set_cookie(response, request, SESSION_COOKIE, sign(context, "session", payload), SESSION_SECONDS)
    clear_cookie(response, request, LOGIN_COOKIE)
    return DashboardUser(principal=principal, csrf_token=csrf, via="session", expires_at=payload["e"])


def _keys(context: ServiceContext) -> ApiKeys:
    return api_keys(context)


def _presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    header = request.headers.get("x-api-key", "").strip()
    return header or None


def authenticate(context: ServiceContext, request: Request) -> DashboardUser:
    """The dashboard user of this request (blocking: reads the store). Raises
    :class:`DashboardAuthError` when there is no valid session and no valid API key."""
    presented = _presented_key(request)
    if presented is not None:
        found = _keys(context).authenticate(presented)
        if found is None:
            raise DashboardAuthError("bad_key")
        return DashboardUser(principal=found, csrf_token=None, via="api_key")
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise DashboardAuthError("login_required")
    payload = unsign(context, "session", token)
    if payload is None:
        raise DashboardAuthError("invalid")
    key_id, company_id, csrf, expires = payload.get("k"), payload.get("c"), payload.get("x"), payload.get("e")
    if not (isinstance(key_id, str) and isinstance(company_id, str) and isinstance(csrf, str)
            and isinstance(expires, int)):
        raise DashboardAuthError("invalid")
    if expires < time.time():
        raise DashboardAuthError("expired")
    key = next((k for k in _keys(context).list(company_id) if k.id == key_id), None)
    if key is None or not key.active:
        raise DashboardAuthError("revoked")
    principal = Principal(key_id=key.id, company_id=key.company_id, name=key.name)
    return DashboardUser(principal=principal, csrf_token=csrf, via="session", expires_at=expires)


def _origin_of(url: str) -> str:
    parts = url.split("/", 3)
    return "/".join(parts[:3]) if len(parts) >= 3 else url


def check_origin(context: ServiceContext, request: Request) -> None:
    """Refuse a POST whose ``Origin`` (or, without one, ``Referer``) names another site than
    this one (as the request reached it, or the configured public base URL behind a proxy)."""
    origin = request.headers.get("origin")
    if origin is None:
        referer = request.headers.get("referer")
        origin = _origin_of(referer) if referer else None
    if origin is None:  # a same-origin form post from an old browser; the tokens still apply
        return
    allowed = {f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}",
               _origin_of(context.settings.service.public_base_url.rstrip("/"))}
    if origin not in allowed:
        raise CsrfError("This request came from another site and was refused.")


def check_csrf(context: ServiceContext, request: Request, user: DashboardUser, submitted: str | None) -> None:
    """A POST made with the session cookie must carry the session's CSRF token."""
    if user.via != "session":
        return
    check_origin(context, request)
    token = submitted or request.headers.get(CSRF_HEADER)
    if not token or user.csrf_token is None or not hmac.compare_digest(token, user.csrf_token):
        raise CsrfError("The form is missing its security token or it is out of date; reload the page and try again.")


__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "COOKIE_PATH",
    "CsrfError",
    "DashboardAuthError",
    "DashboardUser",
    "LOGIN_COOKIE",
    "REASONS",
    "SESSION_COOKIE",
    "authenticate",
    "check_csrf",
    "check_login_token",
    "check_origin",
    "clear_cookie",
    "issue_login_token",
    "set_login_cookie",
    "start_session",
    "unsign",
]
