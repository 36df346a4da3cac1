"""The store of settled modules' creations: what goes in comes back whole, from memory or from disk."""

from __future__ import annotations

import sqlite3

import pytest

from moduletrace.analysis import _spill
from moduletrace.analysis._spill import Disk
from moduletrace.analysis.creation import Creation, StageSpan
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


class FailingDisk:
    """A fault, injected: the temporary file cannot be opened, written or read (no writable
    temporary directory, a full disk). SQLite's own error type, as the real one raises."""

    errors = sqlite3.Error

    def __init__(self, fail_on: str, after: int = 0) -> None:
        self.fail_on, self.after = fail_on, after
        self.real = Disk()
        self.errors, self.undecodable = self.real.errors, self.real.undecodable

    def put(self, items: list[tuple[str, tuple[Creation, ...]]]) -> list[tuple[str, tuple[Creation, ...]]]:
        if self.fail_on == "put" and self.after <= 0:
            raise sqlite3.OperationalError("database or disk is full")
        self.after -= 1
        return self.real.put(items)

    def pop(self, module_id: str) -> tuple[Creation, ...] | None:
        if self.fail_on == "pop":
            raise sqlite3.OperationalError("disk I/O error")
        return self.real.pop(module_id)

    def close(self) -> None:
        self.real.close()


def test_with_no_temporary_file_every_summary_stays_in_memory_and_the_problem_is_said(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unopenable() -> None:
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(_spill, "Disk", unopenable)
    store = SettledCreations(in_memory=4)
    for n in range(30):
        store.put(f"m-{n}", summary(n))
    assert len(store) == 30 and store.on_disk == 0
    assert "unable to open database file" in store.problem and "TMPDIR" in store.problem
    assert [store.pop(f"m-{n}") for n in range(30)] == [summary(n) for n in range(30)]


def test_a_full_disk_keeps_the_batch_it_could_not_write_and_what_it_wrote_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_spill, "Disk", lambda: FailingDisk("put", after=1))
    store = SettledCreations(in_memory=4)
    for n in range(30):
        store.put(f"m-{n}", summary(n))
    assert "disk is full" in store.problem and store.on_disk == 2 and len(store) == 30
    assert [store.pop(f"m-{n}") for n in range(30)] == [summary(n) for n in range(30)]


def test_a_disk_that_cannot_be_read_is_given_up_and_what_it_held_is_said_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_spill, "Disk", lambda: FailingDisk("pop"))
    store = SettledCreations(in_memory=2)
    for n in range(10):
        store.put(f"m-{n}", summary(n))
    on_disk = store.on_disk
    assert store.pop("m-0") is None and store.on_disk == 0
    assert f"{on_disk} settled modules' summaries were lost" in store.problem and "never a race" in store.problem
    for n in range(10, 40):  # from then on, in memory
        store.put(f"m-{n}", summary(n))
    assert store.on_disk == 0 and store.pop("m-39") == summary(39)


def test_a_full_disk_keeps_what_it_stored_before_readable() -> None:
    # A real full disk: SQLite's own page limit on the store's file, reached by a later batch.
    store = SettledCreations(in_memory=20)
    for n in range(200):
        store.put(f"m-{n}", summary(n))
    assert store.on_disk > 150
    disk = store._disk  # noqa: SLF001 - the fault is put into the real file
    assert disk is not None
    pages = disk._db.execute("PRAGMA page_count").fetchone()[0]  # noqa: SLF001
    disk._db.execute(f"PRAGMA max_page_count = {pages}")  # noqa: SLF001
    for n in range(200, 400):
        store.put(f"m-{n}", summary(n))
    assert "disk is full" in store.problem or "full" in store.problem
    assert len(store) == 400
    assert [store.pop(f"m-{n}") for n in range(400)] == [summary(n) for n in range(400)]


def test_a_summary_damaged_on_disk_comes_back_empty_so_its_module_is_not_counted_twice() -> None:
    store = SettledCreations(in_memory=2)
    for n in range(10):
        store.put(f"m-{n}", summary(n))
    disk = store._disk  # noqa: SLF001 - the damage is put into the real file
    assert disk is not None
    disk._db.execute("UPDATE settled SET creations = x'00' WHERE module_id = 'm-0'")  # noqa: SLF001
    assert store.pop("m-0") == () and "lost in its temporary file" in store.problem
    assert store.pop("m-1") == summary(1)
