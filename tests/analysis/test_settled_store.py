"""The store of settled modules' creations: what goes in comes back whole, from memory or from disk."""

from __future__ import annotations

import pytest

from moduletrace.analysis.races import Creation, StageSpan
from moduletrace.analysis.report import ConsumerLag
from moduletrace.analysis.settled import SettledCreations
from tests.support.builders import PROCESS_A, PROCESS_B


def summary(n: int) -> tuple[Creation, ...]:
    lag = ConsumerLag("cache_update", 840.5, "broker", 1200, "redis", "modules")
    commit = StageSpan(f"{n:016x}", n, n + 10, True, PROCESS_A, "", n, None)
    cache = StageSpan(f"{n + 1:016x}", n + 10, n + 20, False, PROCESS_B, "TimeoutError", f"v{n}", lag)
    return (Creation(f"{n:032x}", n, [commit], [cache]), Creation(f"{n + 7:032x}", None, [], []))


def test_what_goes_to_disk_comes_back_equal_with_the_same_resource_objects() -> None:
    store = SettledCreations(in_memory=4)
    for n in range(50):
        store.put(f"m-{n}", summary(n))
    assert len(store) == 50 and store.on_disk >= 45
    back = store.pop("m-0")
    assert back == summary(0)
    assert back is not None and back[0].commits[0].resource is PROCESS_A  # interned resources stay shared
    assert store.pop("m-0") is None and len(store) == 49
    assert [store.pop(f"m-{n}") for n in range(1, 50)] == [summary(n) for n in range(1, 50)]
    assert len(store) == 0 and store.on_disk == 0
    store.close()


def test_a_module_back_in_flight_settles_again_with_its_new_summary() -> None:
    store = SettledCreations(in_memory=2)
    for n in range(10):
        store.put(f"m-{n}", summary(n))
    assert store.pop("m-1") == summary(1)  # from disk: a late span brought it back
    store.put("m-1", summary(100))  # settled again
    for n in range(10, 20):
        store.put(f"m-{n}", summary(n))  # m-1 goes to disk a second time
    assert store.pop("m-1") == summary(100) and store.pop("m-missing") is None


def test_the_bound_is_at_least_one() -> None:
    with pytest.raises(ValueError):
        SettledCreations(in_memory=0)


def test_a_summary_the_disk_cannot_keep_stays_in_memory() -> None:
    class Version:  # a caller's own object as a recorded version: marshal does not keep it
        pass

    odd = Version()
    store = SettledCreations(in_memory=2)
    store.put("m-odd", (Creation("f" * 32, 1, [StageSpan("a" * 16, 1, 2, True, PROCESS_A, "", odd, None)], []),))
    for n in range(10):
        store.put(f"m-{n}", summary(n))
    assert len(store) == 11 and store.on_disk == 8  # 2 in memory, 1 held back
    back = store.pop("m-odd")
    assert back is not None and back[0].commits[0].version is odd
