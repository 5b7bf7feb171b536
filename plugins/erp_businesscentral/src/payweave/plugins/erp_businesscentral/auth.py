"""OAuth2 client credentials against Entra ID (service-to-service, BC online 18.3+).

``POST {token_url}`` form-encoded ``grant_type=client_credentials&client_id=..&client_secret=..
&scope=https://api.businesscentral.dynamics.com/.default``. The token is cached until
``refresh_margin`` seconds before it expires (at most half its lifetime), shared by threads,
and refreshed early when BC answers 401 (``invalidate``). Secrets stay ``SecretStr`` and are
never logged or put in exception messages.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
from payweave.hooks.errors import TemporarilyUnavailable
from payweave.hooks.retry import RetryPolicy, send_with_retries
from pydantic import SecretStr

from . import bcjson
from .errors import BCAuthenticationError, BCUnavailable, token_error_from_response


class TokenProvider:
    def __init__(self, *, token_url: str, client_id: str, client_secret: SecretStr, scope: str, http: httpx.Client,
                 policy: RetryPolicy, refresh_margin: float = 300.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._url = token_url
        self._client_id = client_id
        self._secret = client_secret
        self._scope = scope
        self._http = http
        self._policy = policy
        self._margin = refresh_margin
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._token: SecretStr | None = None
        self._refresh_at = 0.0
        self._expires_at = 0.0
        #: how many tokens were fetched (tests, benchmarks)
        self.fetches = 0

    def __repr__(self) -> str:
        return f"TokenProvider(client_id={self._client_id!r}, token_url={self._url!r})"

    def token(self) -> SecretStr:
        with self._lock:
            now = self._clock()
            if self._token is None or now >= self._refresh_at:
                self._fetch(now)
            assert self._token is not None
            return self._token

    def invalidate(self, token: SecretStr | None = None) -> None:
        """Drop the cached token (only if it is still ``token``, when given)."""
        with self._lock:
            if token is None or (self._token is not None and self._token.get_secret_value() == token.get_secret_value()):
                self._token = None

    def _fetch(self, now: float) -> None:
        form = {"grant_type": "client_credentials", "client_id": self._client_id,
                "client_secret": self._secret.get_secret_value(), "scope": self._scope}

        def send() -> httpx.Response:
            return self._http.post(self._url, data=form, headers={"Accept": "application/json"})

        try:
            response = send_with_retries(send, policy=self._policy, sleep=self._sleep, what="Entra ID")
        except TemporarilyUnavailable as exc:
            raise BCUnavailable(f"The token endpoint is unavailable: {exc.message}", retry_after=exc.retry_after) from None
        if response.status_code != 200:
            raise token_error_from_response(response)
        try:
            body = bcjson.loads(response.content)
            token = body["access_token"]
            lifetime = float(body.get("expires_in", 3599))
        except (ValueError, KeyError, TypeError):
            raise BCAuthenticationError("The token endpoint answered without an access_token.",
                                        status=response.status_code) from None
        if not isinstance(token, str) or not token:
            raise BCAuthenticationError("The token endpoint answered an empty access_token.", status=response.status_code)
        self.fetches += 1
        self._token = SecretStr(token)
        margin = min(self._margin, lifetime / 2)
        self._refresh_at = now + lifetime - margin
        self._expires_at = now + lifetime
