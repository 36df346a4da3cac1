"""The database side of a failed load, from the metrics archive: connections, replica lag, pool,
statements, and the brokers' backlog in front of the indexer.

``diagnose --metrics`` attaches to each failed load what the databases and the pool looked like at
its failure (the sample nearest to it, within :data:`MAX_AGE_NS`, and how far from it that sample
was), and to the report a summary over the incident:

- connections by state and the server's limit (postgres_exporter's ``pg_stat_activity_count`` and
  ``pg_settings_max_connections``; the contrib receiver's ``postgresql.backends``);
- each replica's lag (``pg_replica_lag_seconds`` from ``collector/metrics/postgres-queries.yaml``;
  the primary's ``pg_replication_client_replay_lag_seconds``; the contrib ``postgresql.wal.lag``);
- the service's pool (``db.client.connection.count`` by state, ``.max``, ``.timeouts``,
  ``.wait_time``) from moduletrace's pool helpers;
- the slowest statements (``pg_stat_statements_*``), in the summary only;
- each RabbitMQ queue's depth (the rabbitmq_prometheus plugin's ``rabbitmq_detailed_queue_*`` from
  ``collector/metrics/rabbitmq.yaml``, or ``rabbitmq_queue_*`` from ``/metrics/per-object``);
- each Redis stream consumer group's backlog (redis_exporter's ``redis_stream_*`` from
  ``collector/metrics/redis.yaml``): entries waiting (``redis_stream_group_lag``, exporter >= 1.52)
  and how far behind delivery is, from the time in the last delivered entry's id.

Metrics are sampled (every 10 s by default): they show the state around a failure, never decide a
cause by themselves. The per-read replica lag on the span (``record_replica_lag``) is what
decides a stale read; these lines say what the servers looked like then.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from moduletrace.analysis.diagnosis import DiagnosisReport
from moduletrace.conventions import (
    DB_CLIENT_CONNECTION_COUNT,
    DB_CLIENT_CONNECTION_MAX,
    DB_CLIENT_CONNECTION_POOL_NAME,
    DB_CLIENT_CONNECTION_STATE,
    DB_CLIENT_CONNECTION_TIMEOUTS,
    DB_CLIENT_CONNECTION_WAIT_TIME,
)
from moduletrace.samples import Sample

#: The farthest a sample may be from the moment it describes.
MAX_AGE_NS = 60 * 10**9
#: At most this many lines of one kind (servers, replicas, pools, statements).
_MAX_LINES = 5

Key = tuple[str, tuple[tuple[str, str], ...]]


class DatabaseMetrics:
    """The kept samples of a metrics archive, as series by name and labels, searchable by time."""

    def __init__(self, samples: Iterable[Sample]) -> None:
        series: dict[Key, list[tuple[int, float]]] = defaultdict(list)
        for sample in samples:
            labels = tuple(sorted((str(k), str(v)) for k, v in sample.labels.items()))
            series[(sample.name, labels)].append((sample.time_ns, sample.value))
        self._series: dict[Key, tuple[list[int], list[float]]] = {}
        for key, points in series.items():
            points.sort()
            self._series[key] = ([t for t, _ in points], [v for _, v in points])
        self.samples = sum(len(times) for times, _ in self._series.values())

    def __bool__(self) -> bool:
        return bool(self._series)

    def at(self, time_ns: int) -> list[str]:
        """Evidence lines for a failure at ``time_ns``: connections, replicas, pools near that moment."""
        return [
            *self._connections(time_ns),
            *self._replicas(time_ns),
            *self._pools(time_ns),
            *self._queues(time_ns),
            *self._streams(time_ns),
        ]

    def summary(self, start_ns: int, end_ns: int) -> list[str]:
        """The incident as the metrics saw it between ``start_ns`` and ``end_ns``: peaks and the slowest statements."""
        lines = []
        for server, (peak_ns, total, states, limit) in self._peak_connections(start_ns, end_ns).items():
            text = _connections(total, states, limit, self._reserved(server, peak_ns))
            lines.append(f"PostgreSQL {self._role(server, peak_ns)}{server}: at most {text} (at {_clock(peak_ns)})")
        for who, (peak_ns, lag_s) in self._peak_lag(start_ns, end_ns).items():
            bound = "up to " if who.startswith("replica") else ""
            lines.append(f"{who}: at worst {bound}{lag_s * 1000:,.0f} ms behind (at {_clock(peak_ns)})")
        for key in self._named(DB_CLIENT_CONNECTION_TIMEOUTS):
            grown = self._growth(key, start_ns, end_ns)
            if grown:
                lines.append(f"pool {_pool_name(key)}: {grown:,.0f} waits for a connection timed out")
        lines.extend(self._statements(end_ns))
        lines.extend(self._broker_peaks(start_ns, end_ns))
        return lines

    # --- lookups ------------------------------------------------------------------------------

    def _named(self, name: str) -> list[Key]:
        return [key for key in self._series if key[0] == name]

    def _near(self, key: Key, time_ns: int) -> tuple[int, float] | None:
        """The sample of a series nearest to ``time_ns``, within MAX_AGE_NS."""
        times, values = self._series[key]
        i = bisect.bisect_left(times, time_ns)
        best = min((j for j in (i - 1, i) if 0 <= j < len(times)), key=lambda j: abs(times[j] - time_ns), default=None)
        if best is None or abs(times[best] - time_ns) > MAX_AGE_NS:
            return None
        return times[best], values[best]

    def _growth(self, key: Key, start_ns: int, end_ns: int) -> float:
        """How much a cumulative counter grew between two moments (0 without samples on both sides)."""
        times, values = self._series[key]
        before = bisect.bisect_right(times, start_ns) - 1
        after = bisect.bisect_right(times, end_ns) - 1
        if after < 0:
            return 0.0
        return max(0.0, values[after] - (values[before] if before >= 0 else 0.0))

    # --- connections by state ------------------------------------------------------------------

    def _server_states(self, time_ns: int) -> dict[str, tuple[int, dict[str, float], float | None]]:
        """server -> (sample time, connections by state, max_connections) at the sample nearest ``time_ns``."""
        nearest: dict[str, list[tuple[Key, int, float]]] = defaultdict(list)
        for key in self._named("pg_stat_activity_count") + self._named("postgresql.backends"):
            near = self._near(key, time_ns)
            if near is not None:
                nearest[_server(dict(key[1]))].append((key, *near))
        out: dict[str, tuple[int, dict[str, float], float | None]] = {}
        for server, found in nearest.items():
            # One scrape: the series of a server sampled at the moment nearest the failure (a
            # state missing from that scrape is not filled in from an older one).
            seen_ns = min((t for _, t, _ in found), key=lambda t: abs(t - time_ns))
            states: dict[str, float] = {}
            for key, sampled_ns, value in found:
                if sampled_ns == seen_ns:
                    state = dict(key[1]).get("state", "connected")
                    states[state] = states.get(state, 0.0) + value
            out[server] = (seen_ns, states, None)
        for name in ("pg_settings_max_connections", "postgresql.connection.max"):
            for key in self._named(name):
                server = _server(dict(key[1]))
                near = self._near(key, time_ns)
                if server in out and near is not None:
                    seen_ns, states, _ = out[server]
                    out[server] = (seen_ns, states, near[1])
        return out

    def _role(self, server: str, time_ns: int) -> str:
        """ "replica " or "primary " when the archive says which (pg_replica_in_recovery), else ""."""
        key = self._named_like("pg_replica_in_recovery", {"server": server})
        near = self._near(key, time_ns) if key else None
        return "" if near is None else ("replica " if near[1] else "primary ")

    def _reserved(self, server: str, time_ns: int) -> float | None:
        """Slots only superusers may take (superuser_reserved_connections): clients get max minus these."""
        key = next(
            (k for k in self._named("pg_settings_superuser_reserved_connections") if _server(dict(k[1])) == server),
            None,
        )
        near = self._near(key, time_ns) if key else None
        return near[1] if near else None

    def _connections(self, time_ns: int) -> list[str]:
        lines = []
        for server, (seen_ns, states, limit) in sorted(self._server_states(time_ns).items())[:_MAX_LINES]:
            total = sum(states.values())
            text = _connections(total, states, limit, self._reserved(server, time_ns))
            lines.append(f"PostgreSQL {self._role(server, time_ns)}{server}{_when(seen_ns, time_ns)}: {text}")
        return lines

    def _peak_connections(
        self, start_ns: int, end_ns: int
    ) -> dict[str, tuple[int, float, dict[str, float], float | None]]:
        moments = sorted(
            {
                t
                for key in self._named("pg_stat_activity_count")
                for t in self._series[key][0]
                if start_ns <= t <= end_ns
            }
        )
        peaks: dict[str, tuple[int, float, dict[str, float], float | None]] = {}
        for moment in moments:
            for server, (seen_ns, states, limit) in self._server_states(moment).items():
                total = sum(states.values())
                if server not in peaks or total > peaks[server][1]:
                    peaks[server] = (seen_ns, total, states, limit)
        return dict(sorted(peaks.items())[:_MAX_LINES])

    # --- replicas ------------------------------------------------------------------------------

    def _lag_series(self) -> list[tuple[Key, str, float]]:
        """(series, who, scale to seconds) for every replica-lag series the archive has."""
        found = []
        for key in self._named("pg_replica_lag_seconds"):
            labels = dict(key[1])
            recovery = self._named_like("pg_replica_in_recovery", labels)
            if recovery is not None and not any(self._series[recovery][1]):
                continue  # a primary: its lag is 0 by definition
            found.append((key, f"replica {_server(labels)}", 1.0))
        for key in self._named("pg_replication_client_replay_lag_seconds"):
            labels = dict(key[1])
            found.append((key, f"standby {labels.get('application_name', '?')} of {_server(labels)}", 1.0))
        for key in self._named("postgresql.wal.lag"):
            labels = dict(key[1])
            if labels.get("operation", "replay") == "replay":
                found.append((key, f"standby {labels.get('replication_client', '?')} of {_server(labels)}", 1.0))
        return found

    def _named_like(self, name: str, labels: Mapping[str, str]) -> Key | None:
        server = _server(labels)
        return next((k for k in self._named(name) if _server(dict(k[1])) == server), None)

    def _replicas(self, time_ns: int) -> list[str]:
        lines = []
        for key, who, scale in self._lag_series()[:_MAX_LINES]:
            near = self._near(key, time_ns)
            if near is None:
                continue
            pending = self._named_like("pg_replica_pending_bytes", dict(key[1])) if who.startswith("replica") else None
            waiting = self._near(pending, time_ns) if pending is not None else None
            extra = f", {waiting[1]:,.0f} bytes of WAL not applied yet" if waiting and waiting[1] else ""
            bound = "up to " if who.startswith("replica") else ""  # since its last applied commit: a bound
            lines.append(f"{who}{_when(near[0], time_ns)}: {bound}{near[1] * scale * 1000:,.0f} ms behind{extra}")
        return lines

    def _peak_lag(self, start_ns: int, end_ns: int) -> dict[str, tuple[int, float]]:
        peaks: dict[str, tuple[int, float]] = {}
        for key, who, scale in self._lag_series():
            times, values = self._series[key]
            window = [(v * scale, t) for t, v in zip(times, values, strict=True) if start_ns <= t <= end_ns]
            if window:
                lag, moment = max(window)
                if lag > 0 and (who not in peaks or lag > peaks[who][1]):
                    peaks[who] = (moment, lag)
        return dict(sorted(peaks.items())[:_MAX_LINES])

    # --- the service's pool ----------------------------------------------------------------------

    def _pools(self, time_ns: int) -> list[str]:
        pools: dict[str, dict[str, Any]] = defaultdict(dict)
        for key in self._named(DB_CLIENT_CONNECTION_COUNT):
            near = self._near(key, time_ns)
            if near is not None:
                state = dict(key[1]).get(DB_CLIENT_CONNECTION_STATE, "used")
                pools[_pool_name(key)][state] = near
        for name, field in ((DB_CLIENT_CONNECTION_MAX, "max"), (DB_CLIENT_CONNECTION_TIMEOUTS, "timeouts")):
            for key in self._named(name):
                near = self._near(key, time_ns)
                if near is not None:
                    pools[_pool_name(key)][field] = near
        waits: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, float("inf")])  # count, sum, time
        for key in self._named(DB_CLIENT_CONNECTION_WAIT_TIME + ".count"):
            # One series per outcome (a wait that ended in an exception carries error.type): all count.
            total = self._named_like_pool(DB_CLIENT_CONNECTION_WAIT_TIME + ".sum", key)
            counted, summed = self._near(key, time_ns), self._near(total, time_ns) if total else None
            if counted and summed:
                wait = waits[_pool_name(key)]
                wait[0] += counted[1]
                wait[1] += summed[1]
                wait[2] = min(wait[2], counted[0])
        for pool, (waited, total_s, seen_ns) in waits.items():
            if waited:
                pools[pool]["mean_wait_s"] = (int(seen_ns), total_s / waited)
        lines = []
        for pool, fields in sorted(pools.items())[:_MAX_LINES]:
            parts = []
            if "used" in fields:
                limit = fields.get("max")
                of = f" of {limit[1]:,.0f}" if limit else ""
                idle = f" ({fields['idle'][1]:,.0f} idle)" if "idle" in fields else ""
                parts.append(f"{fields['used'][1]:,.0f}{of} connections in use{idle}")
            if "timeouts" in fields:
                parts.append(f"{fields['timeouts'][1]:,.0f} waits timed out so far")
            if "mean_wait_s" in fields:
                parts.append(f"mean wait {fields['mean_wait_s'][1] * 1000:,.1f} ms")
            seen_ns = min(point[0] for point in fields.values())
            lines.append(f"pool {pool}{_when(seen_ns, time_ns)}: " + ", ".join(parts))
        return lines

    def _named_like_pool(self, name: str, key: Key) -> Key | None:
        return next((k for k in self._named(name) if k[1] == key[1]), None)

    # --- statements ----------------------------------------------------------------------------

    def _statements(self, time_ns: int) -> list[str]:
        rows = []
        for key in self._named("pg_stat_statements_max_seconds"):
            labels = dict(key[1])
            near = self._near(key, time_ns)
            if near is None or not labels.get("query") or "pg_" in labels["query"]:
                continue  # no statement, or a monitoring query on the catalogs
            stats = {"max": near[1]}
            for field in ("calls", "mean_seconds"):
                other = next(
                    (
                        k
                        for k in self._named(f"pg_stat_statements_{field}")
                        if dict(k[1]).get("queryid") == labels.get("queryid") and _server(dict(k[1])) == _server(labels)
                    ),
                    None,
                )
                value = self._near(other, time_ns) if other else None
                if value is not None:
                    stats[field] = value[1]
            rows.append((near[1], _server(labels), labels["query"], stats))
        rows.sort(key=lambda row: -row[0])
        lines = []
        for _, server, query, stats in rows[:3]:
            calls = f"{stats['calls']:,.0f} calls, " if "calls" in stats else ""
            mean = f"mean {stats['mean_seconds'] * 1000:,.1f} ms, " if "mean_seconds" in stats else ""
            lines.append(f"statement on {server}: {query[:120]}: {calls}{mean}max {stats['max'] * 1000:,.1f} ms")
        return lines

    # --- brokers: what waited in front of the indexer -------------------------------------------

    def _queue_figures(self, time_ns: int) -> dict[tuple[str, str, str], dict[str, tuple[int, float]]]:
        """(server, vhost, queue) -> ready / unacked / consumers at the samples nearest ``time_ns``."""
        queues: dict[tuple[str, str, str], dict[str, tuple[int, float]]] = defaultdict(dict)
        for field in ("messages_ready", "messages_unacked", "consumers"):
            for prefix in _RABBITMQ_QUEUE:
                for key in self._named(prefix + field):
                    labels = dict(key[1])
                    near = self._near(key, time_ns)
                    if near is not None:
                        queues[(_server(labels), labels.get("vhost", ""), labels.get("queue", ""))].setdefault(
                            field, near
                        )
        return queues

    def _queues(self, time_ns: int) -> list[str]:
        """The queues holding messages, deepest first; a node whose queues were all empty, in one line."""
        found = self._queue_figures(time_ns)
        busy = sorted(
            ((key, f) for key, f in found.items() if _value(f, "messages_ready") or _value(f, "messages_unacked")),
            key=lambda kf: -_value(kf[1], "messages_ready"),
        )
        lines = []
        for (server, vhost, queue), fields in busy[:_MAX_LINES]:
            seen_ns = min(point[0] for point in fields.values())
            parts = [f"{_value(fields, 'messages_ready'):,.0f} messages ready"]
            if "messages_unacked" in fields:
                parts.append(f"{_value(fields, 'messages_unacked'):,.0f} unacknowledged")
            if "consumers" in fields:
                consumers = _value(fields, "consumers")
                parts.append(f"{consumers:,.0f} consumer{'' if consumers == 1 else 's'}")
            lines.append(
                f"RabbitMQ {_queue_name(vhost, queue)} on {server}{_when(seen_ns, time_ns)}: {', '.join(parts)}"
            )
        sampled: dict[str, list[int]] = defaultdict(list)  # server -> when each of its queues was sampled
        for (server, _, _), fields in found.items():
            sampled[server].append(min(point[0] for point in fields.values()))
        for server in sorted(sampled)[:_MAX_LINES]:
            if not any(key[0] == server for key, _ in busy):
                count = len(sampled[server])
                queues = "its queue" if count == 1 else f"its {count:,} queues"
                lines.append(f"RabbitMQ {server}{_when(min(sampled[server]), time_ns)}: no message waiting in {queues}")
        return lines

    def _group_figures(self, time_ns: int) -> dict[tuple[str, str, str, str], dict[str, tuple[int, float]]]:
        """(server, db, stream, group) -> lag / pending / last delivered / newest at the samples nearest ``time_ns``."""
        groups: dict[tuple[str, str, str, str], dict[str, tuple[int, float]]] = defaultdict(dict)
        newest: dict[tuple[str, str, str], tuple[int, float]] = {}
        for key in self._named("redis_stream_last_generated_id"):
            labels = dict(key[1])
            near = self._near(key, time_ns)
            if near is not None:
                newest[(_server(labels), labels.get("db", ""), labels.get("stream", ""))] = near
        for name, field in (
            ("redis_stream_group_lag", "lag"),
            ("redis_stream_group_messages_pending", "pending"),
            ("redis_stream_group_last_delivered_id", "delivered_ms"),
        ):
            for key in self._named(name):
                labels = dict(key[1])
                near = self._near(key, time_ns)
                if near is not None:
                    stream = (_server(labels), labels.get("db", ""), labels.get("stream", ""))
                    group = groups[(*stream, labels.get("group", ""))]
                    group[field] = near
                    if stream in newest:
                        group["newest_ms"] = newest[stream]
        return groups

    def _streams(self, time_ns: int) -> list[str]:
        """Each stream consumer group: entries waiting, how far behind delivery is, what is unacknowledged."""
        rows = []
        for (server, db, stream, group), fields in self._group_figures(time_ns).items():
            seen_ns = min(point[0] for point in fields.values())
            where = f"{server}{'' if db in ('', 'db0') else ' ' + db}"
            line = f"Redis stream {stream!r} group {group!r} on {where}{_when(seen_ns, time_ns)}: {_backlog(fields)}"
            rows.append((-(_behind_ms(fields) or _value(fields, "lag")), line))
        return [line for _, line in sorted(rows)[:_MAX_LINES]]

    def _broker_peaks(self, start_ns: int, end_ns: int) -> list[str]:
        """The deepest each queue got and the furthest behind each stream group got, within the window."""
        deepest: dict[tuple[str, str, str], tuple[float, int]] = {}
        for prefix in _RABBITMQ_QUEUE:
            for key in self._named(prefix + "messages_ready"):
                labels = dict(key[1])
                where = (_server(labels), labels.get("vhost", ""), labels.get("queue", ""))
                for t, ready in zip(*self._series[key], strict=True):
                    if start_ns <= t <= end_ns and ready > deepest.get(where, (0.0, 0))[0]:
                        deepest[where] = (ready, t)
        lines = [
            f"RabbitMQ {_queue_name(vhost, queue)} on {server}: at most {ready:,.0f} messages ready (at {_clock(t)})"
            for (server, vhost, queue), (ready, t) in sorted(deepest.items(), key=lambda kv: -kv[1][0])[:_MAX_LINES]
        ]
        worst: dict[tuple[str, str, str, str], tuple[float, int, dict[str, tuple[int, float]]]] = {}
        moments = {
            t
            for name in ("redis_stream_group_last_delivered_id", "redis_stream_group_lag")
            for key in self._named(name)
            for t in self._series[key][0]
            if start_ns <= t <= end_ns
        }
        for moment in sorted(moments):
            for group_key, fields in self._group_figures(moment).items():
                behind = _behind_ms(fields) or _value(fields, "lag")  # by time when the ids tell it, else by count
                if behind > worst.get(group_key, (0.0, 0, {}))[0]:
                    worst[group_key] = (behind, moment, fields)
        for (server, _db, stream, group), (_, t, fields) in sorted(worst.items(), key=lambda kv: -kv[1][0])[
            :_MAX_LINES
        ]:
            lines.append(
                f"Redis stream {stream!r} group {group!r} on {server}: at worst {_backlog(fields)} (at {_clock(t)})"
            )
        return lines


#: RabbitMQ's per-queue series: /metrics/detailed (collector/metrics/rabbitmq.yaml), then /metrics/per-object.
_RABBITMQ_QUEUE = ("rabbitmq_detailed_queue_", "rabbitmq_queue_")


def _value(fields: Mapping[str, tuple[int, float]], name: str) -> float:
    return fields[name][1] if name in fields else 0.0


def _queue_name(vhost: str, queue: str) -> str:
    if not queue:
        return "(all queues)"  # /metrics without per-object metrics sums them
    return f"queue {queue!r}" + ("" if vhost in ("", "/") else f" (vhost {vhost})")


def _backlog(fields: Mapping[str, tuple[int, float]]) -> str:
    """A stream group's backlog in words: entries waiting, how far behind, what is unacknowledged."""
    behind = _behind_ms(fields)
    parts = [f"{_value(fields, 'lag'):,.0f} entries waiting"] if "lag" in fields else []
    if behind is None:
        parts += ["nothing delivered yet"] if "delivered_ms" in fields else []
    else:
        parts.append(f"up to {behind:,.0f} ms behind" if behind else "caught up")
    if _value(fields, "pending"):
        parts.append(f"{_value(fields, 'pending'):,.0f} delivered, not acknowledged")
    return ", ".join(parts)


def _behind_ms(fields: Mapping[str, tuple[int, float]]) -> float | None:
    """How far behind a stream group's delivery was when sampled: the age of the last entry it was given
    (the time in its id, on Redis's clock) while newer entries waited; 0 when none waited; None when it
    was given nothing yet or the ids were not sampled. An upper bound of the oldest waiting entry's age.
    (Not from ``lag``: an exporter reads 0 there from a Redis before 7, which does not count.)
    """
    if "delivered_ms" not in fields or not fields["delivered_ms"][1]:
        return None
    sampled_ns, delivered_ms = fields["delivered_ms"]
    if "newest_ms" in fields and fields["newest_ms"][1] <= delivered_ms:
        return 0.0
    return max(0.0, sampled_ns / 1e6 - delivered_ms)


def _server(labels: Mapping[str, str]) -> str:
    """Which server a sample describes: the exporter's ``server`` label, else the scraped instance."""
    return labels.get("server") or labels.get("service.instance.id") or labels.get("service.name") or "?"


def _pool_name(key: Key) -> str:
    labels = dict(key[1])
    name = labels.get(DB_CLIENT_CONNECTION_POOL_NAME, "?")
    service = labels.get("service.name")
    return f"{name} ({service})" if service else name


def _connections(total: float, states: Mapping[str, float], limit: float | None, reserved: float | None) -> str:
    busy = ", ".join(f"{v:,.0f} {s}" for s, v in sorted(states.items(), key=lambda kv: -kv[1]) if v)
    of = f" of max_connections {limit:,.0f}" if limit else ""
    of += f" ({reserved:,.0f} reserved)" if limit and reserved else ""
    return f"{total:,.0f} connections{of}" + (f" ({busy})" if busy else "")


def _when(seen_ns: int, time_ns: int) -> str:
    gap_s = (seen_ns - time_ns) / 1e9
    return f", {abs(gap_s):.1f} s {'after' if gap_s >= 0 else 'before'} the failure"


def _clock(time_ns: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(time_ns / 1e9, datetime.timezone.utc).strftime("%H:%M:%S.%f")[:-3] + "Z"


def attach(report: DiagnosisReport, metrics: DatabaseMetrics) -> None:
    """Add the database side to each failed load (near its failure) and to the report (over the incident)."""
    if not report.diagnoses:
        return
    report.diagnoses[:] = [dataclasses.replace(d, database=tuple(metrics.at(d.failed_at_ns))) for d in report.diagnoses]
    times = [d.failed_at_ns for d in report.diagnoses]
    report.database = metrics.summary(min(times) - MAX_AGE_NS, max(times) + MAX_AGE_NS)
