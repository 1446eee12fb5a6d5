"""Which stopped VMs a resume powers on now (domain/resume_room.py): room under the target
less the headroom, in priority order, and a reason for every VM that waits."""

from __future__ import annotations

from vsphere_preemption.domain.model import EntityUsage, MoRef, Resources
from vsphere_preemption.domain.policy import Targets
from vsphere_preemption.domain.resume_room import fit

CLUSTER = MoRef("domain-c1", "ClusterComputeResource")
# 100 GB of memory, 60 GB used: a target of 80% less 10 points leaves room for 10 GB.
USE = EntityUsage(CLUSTER, Resources(10_000, 100_000), Resources(5_000, 60_000))
MEMORY_80 = Targets(memory=80)


def shares(**gb: float | None) -> dict[str, Resources | None]:
    return {
        name: None if size is None else Resources(100, size * 1000) for name, size in gb.items()
    }


def test_vms_come_back_while_they_fit_and_the_first_that_does_not_stops_the_rest() -> None:
    sized = shares(a=4, b=4, c=4, d=1)
    found = fit(list(sized), sized.get, USE, MEMORY_80, 10, limit=10)
    assert found.now == ["a", "b"]
    (first, why), (last, behind) = found.waiting
    assert (first, last) == ("c", "d"), "d would fit, but waits behind c (higher priority)"
    assert why == (
        "would bring memory to 72.0% (72000 of 100000 MB), above the target 80% less the "
        "headroom of 10 points (70%)"
    )
    assert behind == "waits behind a VM of higher priority"


def test_a_batch_takes_at_most_its_size_and_the_rest_are_for_the_next() -> None:
    sized = shares(a=1, b=1, c=1)
    found = fit(list(sized), sized.get, USE, MEMORY_80, 10, limit=2)
    assert found.now == ["a", "b"] and found.waiting == []


def test_a_larger_headroom_leaves_less_room() -> None:
    sized = shares(a=4, b=4)
    assert fit(list(sized), sized.get, USE, MEMORY_80, 0, limit=5).now == ["a", "b"]
    assert fit(list(sized), sized.get, USE, MEMORY_80, 15, limit=5).now == ["a"]
    assert fit(list(sized), sized.get, USE, MEMORY_80, 20, limit=5).now == []


def test_every_targeted_resource_must_have_room() -> None:
    # CPU: 5,000 of 10,000 MHz used; a CPU target of 55% less 5 leaves no room for 100 MHz.
    both = Targets(cpu=55, memory=80)
    sized = shares(a=1)
    found = fit(list(sized), sized.get, USE, both, 5, limit=5)
    assert found.now == []
    assert found.waiting[0][1].startswith("would bring cpu to 51.0% (5100 of 10000 MHz)")


def test_missing_figures_are_not_guessed_and_say_which() -> None:
    sized = shares(a=1, b=None)
    unread = fit(list(sized), sized.get, None, MEMORY_80, 10, limit=5)
    assert unread.now == []
    assert [why for _, why in unread.waiting] == ["the entity's use could not be read"] * 2
    blind = EntityUsage(CLUSTER, Resources(10_000, None), Resources(5_000, 60_000))
    assert fit(list(sized), sized.get, blind, MEMORY_80, 10, limit=5).waiting[0][1] == (
        "vCenter gave no memory figure for domain-c1"
    )
    unknown = fit(list(sized), sized.get, USE, MEMORY_80, 10, limit=5)
    assert unknown.now == ["a"]
    assert unknown.waiting == [("b", "its memory use is not known")]


def test_nothing_waiting_is_an_empty_fit() -> None:
    nothing: list[str] = []
    found = fit(nothing, lambda _: None, USE, MEMORY_80, 10, limit=5)
    assert found.now == [] and found.waiting == []
