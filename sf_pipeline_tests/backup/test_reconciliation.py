"""The id reconciliation by counts (`find_differences`), as plain data: what it finds and what it costs."""

from __future__ import annotations

import bisect
import random

from sf_pipeline.backup.reconciliation import find_differences


class _Org:
    """An org's ids and the two questions the reconciliation asks it, counted like API calls."""

    def __init__(self, ids: list[str]):
        self.ids = sorted(ids)
        self.calls = 0

    def count(self, low, high) -> int:
        self.calls += 1
        first = 0 if low is None else bisect.bisect_left(self.ids, low)
        stop = len(self.ids) if high is None else bisect.bisect_left(self.ids, high)
        return stop - first

    def fetch(self, ranges, expected) -> set[str]:
        self.calls += 3 + expected // 50_000 if expected > 10_000 else max(len(ranges), expected // 2000 + 1)
        return {i for i in self.ids if any((lo is None or i >= lo) and (hi is None or i < hi) for lo, hi in ranges)}


def _ids(n: int) -> list[str]:
    return [f"006{i:012d}AAA" for i in range(n)]


def test_equal_orgs_cost_one_count():
    mirror = _ids(5000)
    org = _Org(mirror)
    diff = find_differences(mirror, org.count, org.fetch)
    assert (diff.vanished, diff.missing_from_backup, org.calls) == ([], [], 1)


def test_ten_hard_deleted_among_a_hundred_thousand_are_found_exactly_and_cheaply():
    mirror = _ids(100_000)
    gone = sorted(random.Random(3).sample(mirror, 10))
    org = _Org([i for i in mirror if i not in set(gone)])
    diff = find_differences(mirror, org.count, org.fetch)
    assert diff.vanished == gone
    assert diff.missing_from_backup == []
    assert org.calls <= 50, org.calls


def test_one_record_gone_descends_to_a_small_range_instead_of_reading_every_id():
    mirror = _ids(200_000)
    org = _Org(mirror[:123_456] + mirror[123_457:])
    diff = find_differences(mirror, org.count, org.fetch)
    assert diff.vanished == [mirror[123_456]]
    assert diff.fetched_ids < 50_000
    assert org.calls <= 30, org.calls


def test_records_the_backup_lacks_are_reported_apart_from_vanished_ones():
    mirror = _ids(3000)
    org = _Org(mirror[2:] + ["006999999999999AAA"])
    diff = find_differences(mirror, org.count, org.fetch)
    assert diff.vanished == mirror[:2]
    assert diff.missing_from_backup == ["006999999999999AAA"]


def test_ten_gone_among_a_million_cost_at_most_50_calls_and_read_far_fewer_ids_than_an_export():
    mirror = _ids(1_000_000)
    gone = set(random.Random(1).sample(mirror, 10))
    org = _Org([i for i in mirror if i not in gone])
    diff = find_differences(mirror, org.count, org.fetch)
    assert sorted(diff.vanished) == sorted(gone)
    assert org.calls <= 50, org.calls
    assert diff.fetched_ids < 500_000
