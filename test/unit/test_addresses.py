"""Address sets: merging, algebra, and the fewest firewall values that spell a set."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liqosec.firewall.addresses import MAX_IP, AddressSet, format_interval, ip_to_int, parse_value


def test_adjacent_pod_ips_aggregate_into_one_cidr() -> None:
    s = AddressSet.of([f"10.0.0.{i}" for i in range(8, 16)])
    assert s.values() == ["10.0.0.8/29"]


def test_unaligned_runs_become_ranges_and_singletons_stay_ips() -> None:
    s = AddressSet.of(["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.9"])
    assert s.values() == ["10.0.0.1-10.0.0.3", "10.0.0.9"]


def test_cidr_with_host_bits_is_rejected() -> None:
    with pytest.raises(ValueError):
        parse_value("10.0.0.1/24")


def test_reversed_range_is_rejected() -> None:
    with pytest.raises(ValueError, match="ends before it starts"):
        parse_value("10.0.0.9-10.0.0.1")


def test_complement_of_empty_is_universe() -> None:
    assert AddressSet().complement() == AddressSet.universe()
    assert AddressSet.universe().complement() == AddressSet()


def test_membership() -> None:
    s = AddressSet.of(["10.0.0.0/24", "192.168.1.7"])
    assert "10.0.0.255" in s and "192.168.1.7" in s
    assert "10.0.1.0" not in s and "192.168.1.8" not in s


intervals = st.lists(st.tuples(st.integers(0, 300), st.integers(0, 40)).map(lambda t: (t[0], t[0] + t[1])), max_size=8)


@given(intervals, intervals, st.integers(0, 400))
def test_algebra_agrees_with_membership(a: list[tuple[int, int]], b: list[tuple[int, int]], x: int) -> None:
    sa, sb = AddressSet.from_intervals(a), AddressSet.from_intervals(b)
    assert (x in sa.union(sb)) == (x in sa or x in sb)
    assert (x in sa.intersection(sb)) == (x in sa and x in sb)
    assert (x in sa.difference(sb)) == (x in sa and x not in sb)
    assert (x in sa.complement()) == (x not in sa)


@given(intervals)
def test_values_round_trip_exactly(a: list[tuple[int, int]]) -> None:
    s = AddressSet.from_intervals(a)
    assert AddressSet.of(s.values()) == s
    for start, end in s.intervals:
        assert parse_value(format_interval(start, end)) == (start, end)


def test_whole_space_formats_as_default_route() -> None:
    assert format_interval(0, MAX_IP) == "0.0.0.0/0"
    assert ip_to_int("255.255.255.255") == MAX_IP


def test_intervals_kept_as_they_are_are_the_same_tuples() -> None:
    """Sets derived from others (unions, atoms) share their intervals instead of copying them."""
    a, b = (10, 10), (20, 30)
    merged = AddressSet.from_intervals([b, a, (31, 40)])
    assert merged.intervals == ((10, 10), (20, 40))
    assert merged.intervals[0] is a
    assert AddressSet.from_intervals([[5, 6]]).intervals == ((5, 6),)  # a list is made a tuple
