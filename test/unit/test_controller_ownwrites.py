"""OwnWrites: our write's answer stands in for the cache only while the cache shows what the write replaced."""

from __future__ import annotations

from typing import Any

from liqosec.controller.ownwrites import OwnWrites


def fc(version: str, *, rules: int = 1) -> dict[str, Any]:
    meta = {"name": "liqosec-rome", "namespace": "liqo-tenant-rome", "resourceVersion": version}
    return {"metadata": meta, "spec": {"rules": rules}}


def fresher(own: OwnWrites, cached: dict[str, Any] | None) -> dict[str, Any] | None:
    found = own.fresher("liqo-tenant-rome", "liqosec-rome", cached)
    return None if found is None else dict(found)


def test_a_create_stands_in_for_an_empty_cache_until_the_cache_holds_it() -> None:
    own = OwnWrites()
    answer = fc("5")
    own.wrote("liqo-tenant-rome/rome", answer)
    assert fresher(own, None) == answer
    own.seen(answer)  # the echo
    assert fresher(own, None) is None  # the answer is let go: the cache is the truth from here on
    assert own.writer_of(answer) == "liqo-tenant-rome/rome"  # the echo is still known as ours


def test_an_update_stands_in_only_for_the_version_it_replaced() -> None:
    own = OwnWrites()
    answer = fc("7", rules=2)
    own.wrote("liqo-tenant-rome/rome", answer, replaced="6")
    assert fresher(own, fc("6")) == answer  # the cache is behind our write
    newer = fc("8", rules=3)  # someone wrote after us (an agent's report): the cache is ahead
    assert fresher(own, newer) == newer
    assert fresher(own, fc("7", rules=2)) == answer


def test_another_writers_version_seen_drops_the_answer() -> None:
    own = OwnWrites()
    own.wrote("liqo-tenant-rome/rome", fc("7"), replaced="6")
    own.seen(fc("9"))
    assert fresher(own, fc("6")) == fc("6")  # a relist showing an old copy again is not ours to mend


def test_a_deleted_firewall_is_forgotten() -> None:
    own = OwnWrites()
    own.wrote("liqo-tenant-rome/rome", fc("5"))
    own.gone(fc("5"))
    assert fresher(own, None) is None
    assert own.writer_of(fc("5")) is None
