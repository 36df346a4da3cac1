"""The metrics archive: OTLP JSON lines of metrics, as the collector's file exporter writes them.

``collector/otelcol.yaml`` writes one (``file/metrics``): the services' pool metrics
(``db.client.connection.*``) and what ``collector/metrics/*.yaml`` scrape from the databases and
the brokers (RabbitMQ queues, Redis streams). Only the series the database evidence reads are kept
(:data:`KEPT_PREFIXES`), as flat samples; a record that cannot be read is skipped with a warning,
as in the span archive. Same containers as spans: plain, gzip or zstd JSON lines.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from moduletrace.errors import InputError
from moduletrace.samples import Sample
from moduletrace.sources.file import MAX_RECORD_BYTES, _loads, _zstd_decompress, expand, records_of
from moduletrace.sources.otlp_json import FormatError, attributes

#: The metric names the database evidence reads; everything else in the archive is passed over.
KEPT_PREFIXES = (
    "pg_",
    "postgresql.",
    "db.client.connection.",
    "rabbitmq_detailed_queue_",
    "rabbitmq_queue_",
    "redis_stream_",
)
#: Resource attributes that say whose sample it is (the scraped target, or the service).
_WHO = ("service.name", "service.instance.id")


def read_metrics(patterns: Sequence[str], warn: Callable[[str], None]) -> list[Sample]:
    """Every kept sample of the files ``patterns`` name (globs as in ``--file``), in time order."""
    samples: list[Sample] = []
    for path in expand(patterns, "--metrics"):
        samples.extend(_read(path, warn))
    samples.sort(key=lambda s: s.time_ns)
    return samples


def _read(path: str, warn: Callable[[str], None]) -> Iterator[Sample]:
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InputError(f"--metrics {path}: {exc.strerror or exc}") from None
    with raw:
        decoded = failed = 0
        pending: list[str] = []  # warnings wait for a first good record: a wrong file is one error
        try:
            for number, record, last in records_of(raw):
                try:
                    if record is None:
                        raise FormatError(f"longer than {MAX_RECORD_BYTES // 2**20} MiB (the limit), not read")
                    if record[:4] == b"\x28\xb5\x2f\xfd":
                        record = _zstd_decompress(record)
                    if record.lstrip()[:1] != b"{":
                        raise FormatError("not an OTLP JSON line")
                    samples = list(decode_metrics(_loads(record)))
                except (
                    ValueError,
                    UnicodeDecodeError,
                    RecursionError,
                    OverflowError,
                    KeyError,
                    AttributeError,
                    TypeError,
                ) as exc:
                    failed += 1
                    where = "last record" if last else f"record {number}"
                    (warn if decoded else pending.append)(
                        f"{path}: {where} skipped: {str(exc)[:200] or type(exc).__name__}"
                    )
                    continue
                decoded += 1
                for message in pending:
                    warn(message)
                pending.clear()
                yield from samples
        except (OSError, EOFError) as exc:
            raise InputError(f"--metrics {path}: {str(exc)[:200]}") from None
        if failed and not decoded:
            raise InputError(f"--metrics {path}: not OTLP JSON metrics lines (nothing could be decoded)")


def decode_metrics(payload: Any) -> Iterator[Sample]:
    """The kept samples of one ``{"resourceMetrics": [...]}`` object."""
    if not isinstance(payload, dict) or not isinstance(payload.get("resourceMetrics", []), list):
        raise FormatError("no resourceMetrics")
    for resource_metrics in payload.get("resourceMetrics", []):
        resource = attributes(((resource_metrics or {}).get("resource") or {}).get("attributes"))
        who = {k: resource[k] for k in _WHO if k in resource}
        for scope in resource_metrics.get("scopeMetrics") or []:
            for metric in (scope or {}).get("metrics") or []:
                name = metric.get("name") if isinstance(metric, dict) else None
                if isinstance(name, str) and name.startswith(KEPT_PREFIXES):
                    yield from _points(name, metric, who)


def _points(name: str, metric: Mapping[str, Any], who: Mapping[str, Any]) -> Iterator[Sample]:
    for kind in ("gauge", "sum"):
        for point in (metric.get(kind) or {}).get("dataPoints") or []:
            value = _number(point.get("asDouble", point.get("asInt")))
            if value is not None:
                yield Sample(name, _time(point), value, {**who, **attributes(point.get("attributes"))})
    for point in (metric.get("histogram") or {}).get("dataPoints") or []:
        labels = {**who, **attributes(point.get("attributes"))}
        for field in ("count", "sum", "max"):
            value = _number(point.get(field))
            if value is not None:
                yield Sample(f"{name}.{field}", _time(point), value, labels)


def _time(point: Mapping[str, Any]) -> int:
    value = point.get("timeUnixNano")
    try:
        number = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise FormatError(f"timeUnixNano {str(value)[:40]!r} is not a time") from None
    if not 0 < number < 2**64:
        raise FormatError(f"timeUnixNano {number} is out of range")
    return number


def _number(value: Any) -> float | None:
    """An OTLP JSON number: a JSON number, or a string (int64 as text; "NaN"); None when absent or not finite."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
