"""What ``with stage(...) as q`` gives: the stage's span, plus one-liners for what the stage saw or wrote.

::

    with moduletrace.load_db_query(module_id) as q:
        row = db.get(module_id)
        q.found(row is not None)                 # decides the race rule without clocks

    with moduletrace.db_commit(module_id) as c:
        version = db.insert(row)
        c.wrote(version)

The handle is an OpenTelemetry :class:`~opentelemetry.trace.Span` (every span method passes
through), so code that set attributes on the span keeps working. Its helpers never raise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.trace import INVALID_SPAN, Span, SpanContext
from opentelemetry.trace.status import Status, StatusCode
from opentelemetry.util import types

from moduletrace.conventions import (
    CACHE_HIT,
    CACHE_UPDATE,
    CACHE_VERSION,
    DATA_FOUND,
    DATA_OBSERVED_VERSION,
    DATA_VERSION,
)
from moduletrace.instrumentation._guard import internal_error


class StageHandle(Span):
    """The span of an open stage, with :meth:`found`, :meth:`cache_hit` and :meth:`wrote`."""

    __slots__ = ("_span", "_stage")

    def __init__(self, span: Span, stage: str) -> None:
        self._span = span
        self._stage = stage

    @property
    def span(self) -> Span:
        """The OpenTelemetry span itself."""
        return self._span

    # -- what the stage saw or wrote ------------------------------------------------------------

    def found(self, found: bool, version: Any = None) -> None:
        """On a read: whether it found the module's row (and the version it saw, when known)."""
        self._record(DATA_FOUND, bool(found), DATA_OBSERVED_VERSION, version)

    def cache_hit(self, hit: bool, version: Any = None) -> None:
        """On a cache read: hit or miss (and the version it saw, when known)."""
        self._record(CACHE_HIT, bool(hit), DATA_OBSERVED_VERSION, version)

    def wrote(self, version: Any) -> None:
        """On a commit or a cache update: the version written (row version, LSN, log position)."""
        key = CACHE_VERSION if self._stage == CACHE_UPDATE else DATA_VERSION
        self._record(key, version, "", None)

    def _record(self, key: str, value: Any, version_key: str, version: Any) -> None:
        span = self._span
        try:
            if not span.is_recording() or value is None:
                return
            span.set_attribute(key, _attribute(value))
            if version is not None and version_key:
                span.set_attribute(version_key, _attribute(version))
        except Exception as exc:  # noqa: BLE001 - recording evidence never breaks the read
            internal_error("recording what a stage saw", exc)

    # -- the span interface, passed through ------------------------------------------------------

    def end(self, end_time: int | None = None) -> None:
        self._span.end(end_time)

    def get_span_context(self) -> SpanContext:
        return self._span.get_span_context()

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        self._span.set_attributes(attributes)

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        self._span.set_attribute(key, value)

    def add_event(self, name: str, attributes: types.Attributes = None, timestamp: int | None = None) -> None:
        self._span.add_event(name, attributes, timestamp)

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        self._span.add_link(context, attributes)

    def update_name(self, name: str) -> None:
        self._span.update_name(name)

    def is_recording(self) -> bool:
        return self._span.is_recording()

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        self._span.set_status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        self._span.record_exception(exception, attributes, timestamp, escaped)

    def __getattr__(self, name: str) -> Any:
        # SDK-only members (name, attributes, links, ...) of the span underneath.
        return getattr(self._span, name)

    def __repr__(self) -> str:
        return f"StageHandle({self._span!r})"


def _attribute(value: Any) -> types.AttributeValue:
    if isinstance(value, (bool, int, float, str)):
        return value
    try:
        return str(value)
    except Exception:  # noqa: BLE001 - the caller's object, not our bug: name it instead
        return f"<unprintable {type(value).__name__}>"


#: What a stage gives when tracing is off: every call is a no-op on a non-recording span.
OFF = StageHandle(INVALID_SPAN, "")
