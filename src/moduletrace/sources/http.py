"""The HTTP side of the backend sources: auth, tenant, TLS, retries, and one-line errors.

Credentials come from flags or environment variables and are only ever put in request headers:
no error message, warning or ``--verbose`` line contains them (URLs are printed without userinfo
and query strings are never echoed with a token in them, a mistyped URL included; a reason quoted
from an error body, which a proxy may fill with the request's headers, is one line with the
credentials replaced by ``***``).

Every request is bounded: ``timeout`` is a deadline for the whole request (connect, headers and
body), not an idle timeout, and a body longer than ``max_body_bytes`` (after decompression) is
not read further. A scan's requests share one :class:`RequestBudget`: past it, the scan stops
asking and reports itself partial.
"""

from __future__ import annotations

import base64
import json as _json
import random
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

from moduletrace.errors import BackendError, BudgetExhausted
from moduletrace.redaction import redact
from moduletrace.spans import ResourceCache, Span, Wanted

_loads: Callable[[bytes], Any]
try:  # as in the file source: orjson when installed (moduletrace[fast])
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - depends on the environment
    _loads = _json.loads

_RETRYABLE_STATUS = {429, 502, 503, 504}
#: The largest answer body read (decompressed). A Jaeger search answers whole traces, up to
#: --limit of them: past this, the search window is split (Jaeger) or the answer is an error.
MAX_BODY_BYTES = 256 * 2**20
#: Requests one scan may make, over all its backends (--max-requests).
DEFAULT_MAX_REQUESTS = 10_000


class ResponseTooLarge(BackendError):
    """An answer longer than the body limit."""


class RequestBudget:
    """How many requests a scan may still make, shared by its backends."""

    def __init__(self, limit: int = DEFAULT_MAX_REQUESTS) -> None:
        self.limit = limit
        self.used = 0

    def take(self, name: str) -> None:
        if self.used >= self.limit:
            raise BudgetExhausted(
                f"stopped after {self.used} requests (--max-requests {self.limit}) while reading {name}: "
                "the rest of the window was not read"
            )
        self.used += 1


class _DeadlinePassed(Exception):
    """The request ran past its deadline."""


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
    """The URL without userinfo and query string, for messages; a mistyped URL (``http:/u:p@h``,
    ``http//u:p@h``, a password with a ``/`` or ``#``) loses everything before its last ``@``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return _scrubbed(url)
    if not parts.scheme or not host or "@" in parts.path:
        return _scrubbed(url)
    if port:
        host = f"{host}:{port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


_SCHEME_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:?/*")


def _scrubbed(url: str) -> str:
    text = url.split("?", 1)[0]
    if "@" not in text:
        return text.split("#", 1)[0]
    prefix = _SCHEME_PREFIX.match(text)
    return (prefix.group(0) if prefix else "") + "***@" + text.rsplit("@", 1)[1].split("#", 1)[0]


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
        budget: RequestBudget | None = None,
        max_body_bytes: int | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        try:
            port = parts.port
        except ValueError:  # urllib's message quotes the "port", which may be part of a password
            raise ValueError(f"{name} URL has no valid port, got {safe_url(base_url)!r}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.path:
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
        secrets = [auth.token, auth.password, parts.password, unquote(parts.password or "")]
        if user:
            secrets.append(base64.b64encode(f"{user}:{password}".encode()).decode())
        self._secrets = tuple(sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True))
        netloc = parts.hostname + (f":{port}" if port else "")
        self.base_url = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self.name = name
        self.retries = retries
        self.log = log
        self.requests = 0
        self.timeout = timeout
        self.budget = budget or RequestBudget()
        self.max_body_bytes = MAX_BODY_BYTES if max_body_bytes is None else max_body_bytes
        self._client_options: dict[str, Any] = dict(
            headers=headers, auth=basic, verify=verify, timeout=timeout, transport=transport, follow_redirects=True
        )
        self._client = self._new_client()

    def _new_client(self) -> httpx.Client:
        return httpx.Client(**self._client_options)

    def close(self) -> None:
        self._client.close()

    def get(
        self, path: str, params: Mapping[str, Any] | None = None, ok_statuses: tuple[int, ...] = ()
    ) -> httpx.Response:
        """GET with retries; a non-2xx status outside ``ok_statuses`` is a BackendError (exit 3).

        The response's body is read (at most ``max_body_bytes``) before it is returned.
        """
        url = self.base_url + path
        last: str = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(4.0, 0.25 * 2**attempt) * random.uniform(0.8, 1.2))
            self.budget.take(self.name)
            self.requests += 1
            try:
                response = self._fetch(url, params)
            except (httpx.TimeoutException, _DeadlinePassed):
                last = f"{self.name} at {safe_url(url)} timed out"
                continue
            except httpx.TransportError as exc:
                last = f"{self.name} at {safe_url(url)} unreachable ({type(exc).__name__})"
                if isinstance(exc, httpx.UnsupportedProtocol):
                    break
                continue
            except httpx.TooManyRedirects:
                raise BackendError(f"{self.name} at {safe_url(url)} redirected too many times (a loop?)") from None
            except httpx.DecodingError:
                raise BackendError(
                    f"{self.name} at {safe_url(url)} answered a body its Content-Encoding does not decode"
                ) from None
            except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
                raise BackendError(
                    f"{self.name} at {safe_url(url)}: the request failed ({type(exc).__name__})"
                ) from None
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

    def _fetch(self, url: str, params: Mapping[str, Any] | None) -> httpx.Response:
        """One request, whole, within the deadline.

        httpx's timeouts are per socket operation: a backend trickling a byte at a time never
        trips them. The request runs in a worker thread the caller waits for until the deadline;
        past it, the worker is left to end on its own (it stops at its next piece of body) with
        the client it holds, and later requests use a new client.
        """
        deadline = time.monotonic() + self.timeout
        client = self._client
        outcome: list[Any] = []
        abandoned = threading.Event()

        def work() -> None:
            try:
                outcome.append(self._read(client, url, params, deadline))
            except BaseException as exc:  # handed to the caller
                outcome.append(exc)
            finally:
                if abandoned.is_set():
                    client.close()

        worker = threading.Thread(target=work, name="moduletrace-request", daemon=True)
        worker.start()
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive() or not outcome:
            abandoned.set()
            self._client = self._new_client()
            if not worker.is_alive():
                client.close()
            raise _DeadlinePassed()
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]  # type: ignore[no-any-return]

    def _read(
        self, client: httpx.Client, url: str, params: Mapping[str, Any] | None, deadline: float
    ) -> httpx.Response:
        with client.stream("GET", url, params=params) as streamed:
            pieces: list[bytes] = []
            size = 0
            for piece in streamed.iter_bytes():
                size += len(piece)
                if size > self.max_body_bytes:
                    pieces.clear()  # the exception's traceback keeps this frame alive, not the body
                    raise ResponseTooLarge(
                        f"{self.name} at {safe_url(url)} answered more than {self.max_body_bytes // 2**20} MiB"
                    )
                if time.monotonic() > deadline:
                    raise _DeadlinePassed()
                pieces.append(piece)
        headers = [(k, v) for k, v in streamed.headers.items() if k.lower() not in _BODY_HEADERS]
        return httpx.Response(streamed.status_code, headers=headers, content=b"".join(pieces), request=streamed.request)

    def json(self, response: httpx.Response) -> Any:
        try:
            return _loads(response.content)
        except (ValueError, RecursionError):
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


#: What no longer describes a body read whole and decoded.
_BODY_HEADERS = {"content-encoding", "content-length", "transfer-encoding"}


def _reason(response: httpx.Response) -> str:
    """The reason in an error body (Jaeger: {"error": {"message"}}, {"errors": [{"msg"}]}; Tempo: text)."""
    try:
        body = _loads(response.content)
    except (ValueError, RecursionError):
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

    def spans(self, wanted: Wanted | None = None) -> Iterator[Span]:
        raise NotImplementedError

    def batches(self, wanted: Wanted | None = None) -> Iterator[list[Span]]:
        """One span at a time: a request budget may end the read in the middle of an answer."""
        for span in self.spans(wanted):
            yield [span]

    def close(self) -> None:
        self.backend.close()
