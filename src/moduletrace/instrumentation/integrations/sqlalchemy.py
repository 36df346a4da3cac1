"""Keep a module's creation context with its row: a SQLAlchemy column type and a mixin.

::

    from moduletrace.instrumentation.integrations.sqlalchemy import TraceCarrierMixin

    class Module(Base, TraceCarrierMixin):
        __tablename__ = "modules"
        id: Mapped[str] = mapped_column(primary_key=True)

    with moduletrace.create_start(module_id):
        module = Module(id=module_id)
        module.capture_trace()                   # the current trace, as a W3C carrier
        session.add(module); session.commit()

    with moduletrace.load_request(module.id, parent=module.trace_carrier):   # continues it
        ...

The carrier is stored as JSON text (``{"traceparent": ..., "tracestate": ...}``), readable by any
service in any language; a row without one (created before tracing) loads with a new trace and
is matched to its creation by module id.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from moduletrace.instrumentation._guard import internal_error
from moduletrace.instrumentation.propagation import carrier

__all__ = ["CarrierType", "TraceCarrierMixin"]


class CarrierType(TypeDecorator[dict[str, str]]):
    """A W3C trace carrier in one text column (JSON); reads back as a dict, or None."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: dict[str, str] | None, dialect: Dialect) -> str | None:
        if not value:
            return None
        return json.dumps({k: v for k, v in value.items() if k in ("traceparent", "tracestate")})

    def process_result_value(self, value: Any, dialect: Dialect) -> dict[str, str] | None:
        if not value:
            return None
        try:
            loaded = json.loads(value)
        except (TypeError, ValueError):
            return None  # a damaged carrier: the load starts a new trace, matched by module id
        return {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else None


class TraceCarrierMixin:
    """A ``trace_carrier`` column and :meth:`capture_trace` for a model whose rows are modules."""

    trace_carrier: Mapped[dict[str, str] | None] = mapped_column(CarrierType, nullable=True, default=None)

    def capture_trace(self) -> None:
        """Store the current trace context (the creation's) in ``trace_carrier``; never raises."""
        try:
            self.trace_carrier = carrier() or None
        except Exception as exc:  # noqa: BLE001
            internal_error("capture_trace", exc)
