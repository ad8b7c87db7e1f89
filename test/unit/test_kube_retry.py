"""retry_on_conflict: read again after a conflict, stop when nothing needs writing, give up after the attempts."""

from __future__ import annotations

import pytest

from liqosec.kube import errors
from liqosec.kube.retry import Stale, retry_on_conflict


def conflict() -> errors.Conflict:
    return errors.Conflict(409, "Conflict", "the object has been modified")


def test_a_conflict_is_retried_on_a_fresh_read() -> None:
    reads, writes = iter([2, 3]), []

    def write(value: int) -> str:
        writes.append(value)
        if len(writes) < 2:
            raise conflict()
        return f"wrote {value}"

    heard: list[int] = []
    out = retry_on_conflict(lambda: next(reads), lambda n: n * 10, write, current=1, what="x", on_conflict=heard.append)
    assert (out, writes, heard) == ("wrote 20", [10, 20], [0])


def test_nothing_to_write_writes_nothing() -> None:
    def write(value: int) -> None:
        raise AssertionError("no write expected")

    assert retry_on_conflict(lambda: 0, lambda n: None, write, current=1, what="x") is None


def test_a_write_holding_the_fresh_copy_spares_the_read() -> None:
    seen: list[int | None] = []

    def mutate(n: int | None) -> int:
        seen.append(n)
        return 0 if n is None else n

    def write(value: int) -> str:
        if not seen[1:]:
            raise Stale(None)
        return "created"

    def read() -> int | None:
        raise AssertionError("no read expected")

    assert retry_on_conflict(read, mutate, write, current=5, what="x") == "created"
    assert seen == [5, None]


def test_past_the_attempts_the_conflict_names_the_object() -> None:
    def write(value: int) -> None:
        raise conflict()

    with pytest.raises(errors.Conflict, match="FirewallConfiguration ns/a kept changing"):
        retry_on_conflict(lambda: 0, lambda n: n, write, current=0, what="FirewallConfiguration ns/a", attempts=2)
    with pytest.raises(ValueError, match="at least 1"):
        retry_on_conflict(lambda: 0, lambda n: n, write, current=0, what="x", attempts=0)
