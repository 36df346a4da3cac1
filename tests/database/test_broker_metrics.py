"""The brokers in the metrics archive: what waited in front of the indexer near each failed load.

Lines in the collector file exporter's shape (checked against our collector scraping a real RabbitMQ
node and a real redis_exporter in tests/messaging/test_diagnose_brokers.py); the names are the
rabbitmq_prometheus plugin's (RabbitMQ 3.10: /metrics/detailed, /metrics/per-object, /metrics) and
redis_exporter's (1.45 as Debian ships it; ``redis_stream_group_lag`` from 1.52).
"""

from __future__ import annotations

import json
from typing import Any

from moduletrace.sources.metrics import decode_metrics
from tests.database.test_metrics_archive import T0, S, gauge, line, metrics

NODE = {"service": "rabbitmq", "instance": "mq-1:15692"}
EXPORTER = {"service": "redis", "instance": "cache-1:9121"}
T0_MS = T0 // 10**6


def queue(name: str, queue_name: str, points: list[tuple[int, float]], vhost: str = "/") -> dict[str, Any]:
    return gauge(name, [(t, v, {"vhost": vhost, "queue": queue_name}) for t, v in points])


def group(
    name: str, points: list[tuple[int, float]], stream: str = "modules", group_name: str = "indexer"
) -> dict[str, Any]:
    return gauge(name, [(t, v, {"db": "db0", "stream": stream, "group": group_name}) for t, v in points])


def test_the_broker_series_are_kept_and_the_rest_of_their_exporters_is_passed_over() -> None:
    payload = json.loads(
        line(
            queue("rabbitmq_detailed_queue_messages_ready", "modules", [(T0, 3)]),
            queue("rabbitmq_queue_messages_ready", "modules", [(T0, 3)]),
            gauge("rabbitmq_erlang_processes_used", [(T0, 400, {})]),
            group("redis_stream_group_messages_pending", [(T0, 1)]),
            gauge("redis_up", [(T0, 1, {})]),
            gauge("redis_connected_clients", [(T0, 4, {})]),
        )
    )
    assert sorted(s.name for s in decode_metrics(payload)) == [
        "rabbitmq_detailed_queue_messages_ready",
        "rabbitmq_queue_messages_ready",
        "redis_stream_group_messages_pending",
    ]


def test_a_queue_line_gives_its_depth_unacknowledged_and_consumers_at_the_nearest_scrape() -> None:
    db = metrics(
        line(
            queue("rabbitmq_detailed_queue_messages_ready", "modules", [(T0, 0), (T0 + 10 * S, 1200)]),
            queue("rabbitmq_detailed_queue_messages_unacked", "modules", [(T0, 0), (T0 + 10 * S, 1)]),
            queue("rabbitmq_detailed_queue_consumers", "modules", [(T0, 1), (T0 + 10 * S, 1)]),
            **NODE,
        )
    )
    assert db.at(T0 + 8 * S) == [
        "RabbitMQ queue 'modules' on mq-1:15692, 2.0 s after the failure: 1,200 messages ready, 1 unacknowledged, "
        "1 consumer"
    ]
    assert db.at(T0 + 2 * S) == ["RabbitMQ mq-1:15692, 2.0 s before the failure: no message waiting in its queue"]


def test_the_deepest_queues_come_first_and_empty_ones_are_not_listed_beside_them() -> None:
    db = metrics(
        line(
            *(queue("rabbitmq_queue_messages_ready", f"q{n}", [(T0, n * 10)], vhost="orders") for n in range(8)),
            **NODE,
        )
    )
    lines = db.at(T0)
    assert len(lines) == 5 and lines[0].startswith("RabbitMQ queue 'q7' (vhost orders) on mq-1:15692, 0.0 s after")
    assert [int(line.split(": ")[1].split(" ")[0]) for line in lines] == [70, 60, 50, 40, 30]


def test_the_summed_figure_of_plain_metrics_is_said_as_all_queues() -> None:
    db = metrics(line(gauge("rabbitmq_queue_messages_ready", [(T0, 42, {})]), **NODE))
    assert db.at(T0) == ["RabbitMQ (all queues) on mq-1:15692, 0.0 s after the failure: 42 messages ready"]


def test_a_stream_group_is_as_far_behind_as_the_last_entry_it_was_given_is_old() -> None:
    db = metrics(
        line(
            group("redis_stream_group_last_delivered_id", [(T0, T0_MS - 2500), (T0 + 10 * S, T0_MS + 9000)]),
            gauge(
                "redis_stream_last_generated_id",
                [
                    (T0, T0_MS - 10, {"db": "db0", "stream": "modules"}),
                    (T0 + 10 * S, T0_MS + 9000, {"db": "db0", "stream": "modules"}),
                ],
            ),
            group("redis_stream_group_messages_pending", [(T0, 1), (T0 + 10 * S, 0)]),
            **EXPORTER,
        )
    )
    assert db.at(T0) == [
        "Redis stream 'modules' group 'indexer' on cache-1:9121, 0.0 s after the failure: up to 2,500 ms behind, "
        "1 delivered, not acknowledged"
    ]
    # Once the newest entry is the last one delivered, nothing waits, whatever its age.
    assert db.at(T0 + 10 * S) == [
        "Redis stream 'modules' group 'indexer' on cache-1:9121, 0.0 s after the failure: caught up"
    ]


def test_a_newer_exporter_s_lag_gives_the_entries_waiting_and_a_group_given_nothing_yet_says_so() -> None:
    db = metrics(
        line(
            group("redis_stream_group_lag", [(T0, 412)]),
            group("redis_stream_group_last_delivered_id", [(T0, 0)]),
            **EXPORTER,
        )
    )
    assert db.at(T0) == [
        "Redis stream 'modules' group 'indexer' on cache-1:9121, 0.0 s after the failure: 412 entries waiting, "
        "nothing delivered yet"
    ]


def test_a_zero_lag_from_a_redis_before_7_does_not_hide_a_group_that_is_behind() -> None:
    db = metrics(
        line(
            group("redis_stream_group_lag", [(T0, 0)]),
            group("redis_stream_group_last_delivered_id", [(T0, T0_MS - 800)]),
            gauge("redis_stream_last_generated_id", [(T0, T0_MS, {"db": "db0", "stream": "modules"})]),
            **EXPORTER,
        )
    )
    (stream,) = db.at(T0)
    assert stream.endswith(": 0 entries waiting, up to 800 ms behind")


def test_the_summary_gives_each_queue_s_deepest_and_each_group_s_furthest_behind() -> None:
    db = metrics(
        line(
            queue("rabbitmq_detailed_queue_messages_ready", "modules", [(T0, 5), (T0 + 5 * S, 900), (T0 + 9 * S, 0)]),
            queue("rabbitmq_detailed_queue_messages_ready", "idle", [(T0, 0), (T0 + 5 * S, 0)]),
            **NODE,
        ),
        line(
            group("redis_stream_group_last_delivered_id", [(T0, T0_MS - 100), (T0 + 5 * S, T0_MS - 100)]),
            gauge(
                "redis_stream_last_generated_id",
                [(t, T0_MS + 4000, {"db": "db0", "stream": "modules"}) for t in (T0, T0 + 5 * S)],
            ),
            **EXPORTER,
        ),
    )
    summary = db.summary(T0 - S, T0 + 10 * S)
    assert summary == [
        "RabbitMQ queue 'modules' on mq-1:15692: at most 900 messages ready (at 00:53:25.000Z)",
        "Redis stream 'modules' group 'indexer' on cache-1:9121: at worst up to 5,100 ms behind (at 00:53:25.000Z)",
    ]
    assert db.summary(T0 + 20 * S, T0 + 30 * S) == []
