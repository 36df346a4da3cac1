"""The HTTP side of the backend sources: auth, tenant, TLS, retries, and one-line errors.

Credentials come from flags or environment variables and are only ever put in request headers:
no error message, warning or ``--verbose`` line contains them (URLs are printed without userinfo
and query strings are never echoed with a token in them; a reason quoted from an error body, which
a proxy may fill with the request's headers, is one line with the credentials replaced by ``***``).
"""

from __future__ import annotations

import base64
import random
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from moduletrace.errors import BackendError
from moduletrace.redaction import redact
from moduletrace.spans import ResourceCache

_RETRYABLE_STATUS = {429, 502, 503, 504}


@dataclass(frozen=True)
class Auth:
    """How to authenticate to a backend. ``repr`` never shows the secrets."""

    token: str | None = None  # bearer
    user: str | None = None  # basic, with password
    password: str | None = None
    tenant: str | None = None  # X-Scope-OrgID (Tempo multi-tenancy; also accepted by Jaeger proxies)
    verify: bool | str = True  # False, or a CA bundle path

    def __repr__(self) -> str:
        return (
            f"Auth(token={'***' if self.token else None}, user={self.user!r}, "
            f"password={'***' if self.password else None}, tenant={self.tenant!r}, verify={self.verify!r})"
        )


def safe_url(url: str) -> str:
    """The URL without userinfo and query string, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class Backend:
    """A small JSON-over-HTTP client with bounded retries for transient failures."""

    def __init__(
        self,
        base_url: str,
        auth: Auth,
        name: str,
        timeout: float = 30.0,
        retries: int = 3,
        log: Callable[[str], None] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{name} URL must be http(s)://host[:port][/path], got {safe_url(base_url)!r}")
        headers = {"Accept": "application/json", "User-Agent": "moduletrace"}
        if auth.token:
            headers["Authorization"] = f"Bearer {auth.token}"
        if auth.tenant:
            headers["X-Scope-OrgID"] = auth.tenant
        verify: bool | ssl.SSLContext = (
            auth.verify if isinstance(auth.verify, bool) else ssl.create_default_context(cafile=auth.verify)
        )
        user, password = (auth.user, auth.password or "") if auth.user else (parts.username, parts.password or "")
        basic = httpx.BasicAuth(user, password) if user else None  # --user, else user:password@host in the URL
        # A backend may echo a request header in its error body: what we sent is never repeated.
        secrets = [auth.token, auth.password, parts.password]
        if user:
            secrets.append(base64.b64encode(f"{user}:{password}".encode()).decode())
        self._secrets = tuple(sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True))
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        self.base_url = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self.name = name
        self.retries = retries
        self.log = log
        self.requests = 0
        self._client = httpx.Client(
            headers=headers, auth=basic, verify=verify, timeout=timeout, transport=transport, follow_redirects=True
        )

    def close(self) -> None:
        self._client.close()

    def get(
        self, path: str, params: Mapping[str, Any] | None = None, ok_statuses: tuple[int, ...] = ()
    ) -> httpx.Response:
        """GET with retries; a non-2xx status outside ``ok_statuses`` is a BackendError (exit 3)."""
        url = self.base_url + path
        last: str = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(4.0, 0.25 * 2**attempt) * random.uniform(0.8, 1.2))
            self.requests += 1
            try:
                response = self._client.get(url, params=params)
            except httpx.TimeoutException:
                last = f"{self.name} at {safe_url(url)} timed out"
                continue
            except httpx.TransportError as exc:
                last = f"{self.name} at {safe_url(url)} unreachable ({type(exc).__name__})"
                if isinstance(exc, httpx.UnsupportedProtocol):
                    break
                continue
            if self.log is not None:
                self.log(f"GET {safe_url(url)} -> {response.status_code} ({len(response.content)} bytes)")
            status = response.status_code
            if status in _RETRYABLE_STATUS or status >= 500:
                last = f"{self.name} at {safe_url(url)} answered HTTP {status}{self._reason_suffix(response)}"
                continue
            if response.is_success or status in ok_statuses:
                return response
            raise BackendError(f"{self.name} at {safe_url(url)} answered HTTP {status}{self._reason_suffix(response)}")
        raise BackendError(f"{last} after {self.retries + 1} attempts")

    def json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise BackendError(f"{self.name} at {safe_url(str(response.url))} did not answer JSON") from None

    def reason(self, response: httpx.Response) -> str:
        """The error body's reason on one line, credentials replaced by ``***``; '' when there is none."""
        text = " ".join(_reason(response).split())
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return redact(text)[:200]

    def _reason_suffix(self, response: httpx.Response) -> str:
        text = self.reason(response)
        return f": {text}" if text else ""


def _reason(response: httpx.Response) -> str:
    """The reason in an error body (Jaeger: {"error": {"message"}}, {"errors": [{"msg"}]}; Tempo: text)."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip().splitlines()[0] if response.text.strip() else ""
        return text if "<" not in text[:1] else ""
    message = ""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            message = str(error.get("message", ""))
        errors = body.get("errors")
        if not message and isinstance(errors, list) and errors and isinstance(errors[0], dict):
            message = str(errors[0].get("msg", ""))
    return message


class BackendSource:
    """What the Jaeger and Tempo sources share: the client, the window, the filters, what was partial."""

    name = "backend"

    def __init__(
        self,
        backend: Backend,
        start_ns: int,
        end_ns: int,
        service: str | None = None,
        limit: int = 1000,
        warn: Callable[[str], None] = lambda message: None,
    ) -> None:
        self.backend = backend
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.service = service
        self.limit = limit
        self.warn = warn
        self.resources = ResourceCache()
        #: What could not be read whole (a search that could not be split further, a partial trace).
        self.partial: list[str] = []

    def describe(self) -> str:
        where = f"{self.name} at {self.backend.base_url}"
        return f"{where} (service {self.service})" if self.service else where

    def progress(self) -> str:
        return ""

    def close(self) -> None:
        self.backend.close()
