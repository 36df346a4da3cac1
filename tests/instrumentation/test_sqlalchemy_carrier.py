"""A module's creation context kept in its row (SQLAlchemy, a real SQLite database) and continued by a load."""

from __future__ import annotations

from pathlib import Path

from opentelemetry.trace import format_trace_id
from sqlalchemy import String, create_engine, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import moduletrace
from moduletrace.instrumentation.integrations.sqlalchemy import TraceCarrierMixin
from tests.conftest import Recorded


class Base(DeclarativeBase):
    pass


class Module(Base, TraceCarrierMixin):
    __tablename__ = "modules"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)


def test_a_load_continues_the_trace_kept_in_the_module_row(spans: Recorded, tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'modules.db'}")
    Base.metadata.create_all(engine)
    with moduletrace.create_start("m-1"), Session(engine) as session:
        module = Module(id="m-1")
        module.capture_trace()
        with moduletrace.db_commit("m-1"):
            session.add(module)
            session.commit()
    with Session(engine) as session:  # another request, later: only the row carries the context
        row = session.get(Module, "m-1")
        assert row is not None and set(row.trace_carrier or {}) == {"traceparent"}
        with moduletrace.load_request("m-1", parent=row.trace_carrier):
            pass
    create, load = spans.one("module_create_start"), spans.one("module_load_request")
    assert format_trace_id(load.context.trace_id) == format_trace_id(create.context.trace_id)
    assert load.parent is not None and load.parent.span_id == create.context.span_id


def test_a_row_without_a_carrier_or_with_a_damaged_one_loads_with_a_new_trace(spans: Recorded, tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'modules.db'}")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(Module(id="m-old"))  # created before tracing: no carrier
        session.commit()
        session.execute(text("INSERT INTO modules (id, trace_carrier) VALUES ('m-bad', '{not json')"))
        session.commit()
    with Session(engine) as session:
        for module_id in ("m-old", "m-bad"):
            row = session.get(Module, module_id)
            assert row is not None and row.trace_carrier is None
            with moduletrace.load_request(module_id, parent=row.trace_carrier):
                pass
    assert len({s.context.trace_id for s in spans.named("module_load_request")}) == 2
