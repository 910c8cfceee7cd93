"""In which order to insert objects, and which references to set in a second pass. Plain data, no org.

Parents go before children so that every lookup can be remapped to an id that already exists in the
target org. A reference that closes a cycle (an object pointing to itself, such as `Account.ParentId`,
or two objects pointing to each other) cannot be satisfied that way: those fields are left empty on
insert and set by an update once every record exists. Only fields that may be empty can be deferred.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sf_pipeline.seeding.errors import SeedingError


@dataclass(frozen=True)
class Reference:
    """One reference field of an object: the objects it may point to, and whether it may be empty."""

    field: str
    targets: tuple[str, ...]
    nillable: bool = True


@dataclass
class InsertOrder:
    objects: list[str]
    deferred: dict[str, set[str]] = field(default_factory=dict)  # object -> reference fields set afterwards

    def is_deferred(self, sobject: str, name: str) -> bool:
        return name in self.deferred.get(sobject, ())


def insert_order(references: Mapping[str, Sequence[Reference]]) -> InsertOrder:
    """Objects (the keys of `references`) parents first; among equals, in the order given."""
    objects = list(references)
    wanted = set(objects)
    deferred: dict[str, set[str]] = {o: set() for o in objects}
    for obj, refs in references.items():
        for ref in refs:
            if obj in ref.targets and ref.nillable:
                deferred[obj].add(ref.field)  # a self-reference: the parent may be a record of this very batch

    def parents(obj: str) -> set[str]:
        return {
            t
            for ref in references[obj]
            if ref.field not in deferred[obj]
            for t in ref.targets
            if t in wanted and t != obj
        }

    for obj, refs in references.items():
        for ref in refs:
            if obj in ref.targets and not ref.nillable:
                raise SeedingError(
                    f"{obj}.{ref.field} is a required reference to {obj} itself: no insert order can satisfy it"
                )
    placed: list[str] = []
    remaining = list(objects)
    while remaining:
        ready = [o for o in remaining if parents(o) <= set(placed)]
        if ready:
            placed.extend(ready)
            remaining = [o for o in remaining if o not in ready]
            continue
        # A cycle: defer the empty-able references of the first object that has some into the rest.
        for obj in remaining:
            breakable = [
                ref.field
                for ref in references[obj]
                if ref.nillable
                and ref.field not in deferred[obj]
                and any(t in remaining and t != obj for t in ref.targets)
            ]
            if breakable:
                deferred[obj].update(breakable)
                break
        else:
            cycle = ", ".join(f"{o} -> {sorted(parents(o) & set(remaining))}" for o in remaining)
            raise SeedingError(
                f"the objects reference each other only through required fields ({cycle}); seed "
                "them in separate runs or leave one of them out"
            )
    return InsertOrder(placed, {o: f for o, f in deferred.items() if f})
