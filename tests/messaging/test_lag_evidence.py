"""How races and diagnose carry a consumer's recorded lag (no broker needed: spans built by hand)."""

from __future__ import annotations

from opentelemetry.semconv._incubating.attributes import messaging_attributes as semconv

from moduletrace import conventions
from moduletrace.analysis.diagnosis import Diagnoser
from moduletrace.analysis.races import RaceDetector
from moduletrace.cli.render import as_json, as_table, diagnosis_json
from moduletrace.conventions import CACHE_HIT, LINK_CREATION, MODULE_LINK_TYPE
from moduletrace.spans import Link
from tests.support.builders import creation, load, span

LAG = {
    conventions.MESSAGING_SYSTEM: "redis",
    conventions.MESSAGING_DESTINATION_NAME: "modules",
    conventions.MESSAGING_LAG_MS: 840.25,
    conventions.MESSAGING_LAG_CLOCK: "publisher",
    conventions.MESSAGING_QUEUE_DEPTH: 1200,
}
MISSED = {CACHE_HIT: False}


def consumed(module: str, trace: str, start_ms: float, end_ms: float, **options: object) -> list:  # type: ignore[type-arg]
    """A creation whose cache update is a consumer's, with its recorded lag."""
    spans = creation(module, trace, 10)
    spans.append(span("cache_update", module, trace, start_ms, end_ms, attributes=dict(LAG), **options))  # type: ignore[arg-type]
    return spans


def test_the_standard_messaging_keys_are_the_semantic_conventions() -> None:
    assert conventions.MESSAGING_SYSTEM == semconv.MESSAGING_SYSTEM
    assert conventions.MESSAGING_DESTINATION_NAME == semconv.MESSAGING_DESTINATION_NAME
    assert conventions.MESSAGING_MESSAGE_ID == semconv.MESSAGING_MESSAGE_ID
    assert conventions.MESSAGING_CONSUMER_GROUP_NAME == semconv.MESSAGING_CONSUMER_GROUP_NAME
    assert conventions.MESSAGING_OPERATION_TYPE == semconv.MESSAGING_OPERATION_TYPE


def test_a_load_that_raced_a_lagging_consumer_names_the_lag_and_the_depth() -> None:
    detector = RaceDetector()
    detector.add_all([*consumed("m-1", "a", 900, 905), *load("m-1", "a", 20, failed=True, query_attributes=MISSED)])
    report = detector.report()
    (race,) = report.races
    (lag,) = race.consumer_lag
    assert (lag.stage, lag.lag_ms, lag.queue_depth, lag.system, lag.destination) == (
        "cache_update",
        840.25,
        1200,
        "redis",
        "modules",
    )
    cache = next(c for c in race.checks if c.stage == "cache_update")
    assert cache.explanation.endswith(
        "; the consumer of redis 'modules' took the event 840.2 ms after it was published (publisher's clock); "
        "queue depth 1,200 at receipt"
    )
    (document,) = as_json(report)["races"]
    evidence = {c["stage"]: c for c in document["evidence"]}
    assert evidence["cache_update"]["consumer_lag_ms"] == 840.25
    assert evidence["cache_update"]["queue_depth"] == 1200
    assert evidence["cache_update"]["consumer_lag_clock"] == "publisher"
    assert "consumer_lag_ms" not in evidence["db_commit"]
    assert "cache_update by 878.0 ms [cache_update: consumer lag 840.2 ms, depth 1,200]" in as_table(report)


def test_diagnose_gives_the_lag_as_evidence_of_the_race() -> None:
    diagnoser = Diagnoser()
    diagnoser.add_all([*consumed("m-1", "a", 900, 905), *load("m-1", "a", 20, failed=True, query_attributes=MISSED)])
    (diagnosis,) = diagnosis_json(diagnoser.report())["failed_loads"]
    assert diagnosis["cause"] == "race" and diagnosis["strength"] == "data version"
    assert any("took the event 840.2 ms after it was published" in line for line in diagnosis["evidence"])


def test_without_recorded_lag_nothing_is_added() -> None:
    detector = RaceDetector()
    detector.add_all([*creation("m-1", "a", 10, 900), *load("m-1", "a", 20, failed=True, query_attributes=MISSED)])
    (race,) = detector.report().races
    assert race.consumer_lag == ()
    assert all("consumer" not in c.explanation for c in race.checks)
    (document,) = as_json(detector.report())["races"]
    assert all("consumer_lag_ms" not in c for c in document["evidence"])


def test_a_depth_without_a_publish_time_is_still_named() -> None:
    detector = RaceDetector()
    spans = creation("m-1", "a", 10)
    attributes = {conventions.MESSAGING_QUEUE_DEPTH: 7, conventions.MESSAGING_SYSTEM: "rabbitmq"}
    spans.append(span("cache_update", "m-1", "a", 900, 905, attributes=attributes))
    detector.add_all([*spans, *load("m-1", "a", 20, failed=True, query_attributes=MISSED)])
    (race,) = detector.report().races
    cache = next(c for c in race.checks if c.stage == "cache_update")
    assert cache.explanation.endswith("; the consumer of rabbitmq recorded no publish time; queue depth 7 at receipt")
    assert "consumer lag" not in as_table(detector.report())


def test_a_consumer_that_links_the_creation_is_judged_as_the_creation_s_cache_update() -> None:
    link = Link("a".rjust(32, "0"), "1".rjust(16, "0"), {MODULE_LINK_TYPE: LINK_CREATION})
    detector = RaceDetector()
    spans = creation("m-1", "a", 10)
    spans.append(span("cache_update", "m-1", "c", 900, 905, attributes=dict(LAG), links=(link,)))
    detector.add_all([*spans, *load("m-1", "a", 20, failed=True, query_attributes=MISSED)])
    report = detector.report()
    (race,) = report.races
    assert race.preceded == ["cache_update"] and race.same_trace and race.consumer_lag
    assert not report.unmatched


def test_a_request_link_on_a_consumer_does_not_move_it_to_another_creation() -> None:
    link = Link("b".rjust(32, "0"), "1".rjust(16, "0"), {MODULE_LINK_TYPE: "request"})
    detector = RaceDetector()
    spans = creation("m-1", "a", 10)
    spans.append(span("cache_update", "m-1", "a", 900, 905, attributes=dict(LAG), links=(link,)))
    detector.add_all([*spans, *load("m-1", "a", 20, failed=True, query_attributes=MISSED)])
    (race,) = detector.report().races
    assert race.preceded == ["cache_update"]
