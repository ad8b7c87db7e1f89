"""IPv4 address sets as sorted, merged intervals, and the values a firewall takes.

Invariants of `AddressSet.intervals`: sorted by start, inclusive bounds,
disjoint and never adjacent (adjacent intervals are merged), so two equal
sets always have equal tuples and `len(intervals)` is the fewest values that
spell the set: each interval becomes one `ip.value` (an IP, a CIDR with no
host bits, or an `a-b` range), which is what Liqo's agent accepts.
"""

from __future__ import annotations

import bisect
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

MAX_IP = 2**32 - 1


def ip_to_int(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def int_to_ip(value: int) -> str:
    return socket.inet_ntoa(value.to_bytes(4, "big"))


def parse_value(text: str) -> tuple[int, int]:
    """Parse a firewall ip value (IP, CIDR or `a-b` range) into an interval.

    A CIDR with host bits set is rejected: the agent compares the masked
    packet address with the unmasked value, so such a match never fires.
    """
    text = text.strip()
    if "-" in text:
        start_text, end_text = text.split("-", 1)
        start, end = ip_to_int(start_text), ip_to_int(end_text)
        if start > end:
            raise ValueError(f"range {text!r} ends before it starts")
        return start, end
    if "/" in text:
        net = ipaddress.IPv4Network(text, strict=True)
        return int(net.network_address), int(net.broadcast_address)
    value = ip_to_int(text)
    return value, value


def cidr_prefix(start: int, end: int) -> int | None:
    """The prefix length of [start, end] when it is a CIDR of more than one address, else None."""
    size = end - start + 1
    if start != end and size & (size - 1) == 0 and start % size == 0:
        return 32 - (size.bit_length() - 1)
    return None


def format_interval(start: int, end: int) -> str:
    """The one value that spells [start, end]: an IP, a CIDR, or a range."""
    if start == end:
        return int_to_ip(start)
    prefix = cidr_prefix(start, end)
    if prefix is not None:
        return f"{int_to_ip(start)}/{prefix}"
    return f"{int_to_ip(start)}-{int_to_ip(end)}"


def _merge(intervals: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[tuple[int, int]] = []
    for interval in sorted(intervals):
        start, end = interval
        if merged and start <= merged[-1][1] + 1:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            # An interval kept as it is, is kept as the same tuple: the sets of one compile (groups,
            # atoms, their unions) and the caches keyed by them then share their pods' intervals.
            merged.append(interval if type(interval) is tuple else (start, end))
    return tuple(merged)


@dataclass(frozen=True, slots=True)  # many live in compiles kept per peering: no __dict__ each
class AddressSet:
    intervals: tuple[tuple[int, int], ...] = ()

    @classmethod
    def of(cls, values: Iterable[str]) -> AddressSet:
        """From IPs, CIDRs and ranges, in any order, overlapping or not."""
        return cls(_merge(parse_value(v) for v in values))

    @classmethod
    def from_intervals(cls, intervals: Iterable[tuple[int, int]]) -> AddressSet:
        return cls(_merge(intervals))

    @classmethod
    def universe(cls) -> AddressSet:
        return cls(((0, MAX_IP),))

    def __bool__(self) -> bool:
        return bool(self.intervals)

    def __contains__(self, ip: object) -> bool:
        value = ip_to_int(ip) if isinstance(ip, str) else ip
        if not isinstance(value, int):
            return False
        i = bisect.bisect_right(self.intervals, (value, MAX_IP + 1)) - 1
        return i >= 0 and self.intervals[i][0] <= value <= self.intervals[i][1]

    def size(self) -> int:
        return sum(end - start + 1 for start, end in self.intervals)

    def union(self, other: AddressSet) -> AddressSet:
        if not other.intervals:
            return self
        if not self.intervals:
            return other
        return AddressSet(_merge(self.intervals + other.intervals))

    def complement(self) -> AddressSet:
        gaps: list[tuple[int, int]] = []
        cursor = 0
        for start, end in self.intervals:
            if start > cursor:
                gaps.append((cursor, start - 1))
            cursor = end + 1
        if cursor <= MAX_IP:
            gaps.append((cursor, MAX_IP))
        return AddressSet(tuple(gaps))

    def intersection(self, other: AddressSet) -> AddressSet:
        out: list[tuple[int, int]] = []
        a, b = self.intervals, other.intervals
        i = j = 0
        while i < len(a) and j < len(b):
            start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
            if start <= end:
                out.append((start, end))
            if a[i][1] < b[j][1]:
                i += 1
            else:
                j += 1
        return AddressSet(tuple(out))

    def difference(self, other: AddressSet) -> AddressSet:
        return self.intersection(other.complement())

    def values(self) -> list[str]:
        return [format_interval(start, end) for start, end in self.intervals]

    def first(self) -> str | None:
        return int_to_ip(self.intervals[0][0]) if self.intervals else None


EMPTY = AddressSet()
