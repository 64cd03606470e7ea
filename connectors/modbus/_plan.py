"""Coalescing: the points of one read, grouped into as few Modbus requests as the protocol allows.

Points in the same table are sorted by address and merged into one request while the unused
addresses between them stay within ``max_gap`` and the request within the protocol's limit
(125 registers, 2000 coils or discrete inputs per read). Overlapping points (several bits of one
register, a register read under two names) share the request. Each block then splits its answer
back into one value per point.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from connectors.modbus._config import Point, Table

__all__ = ["MAX_BITS_PER_READ", "MAX_REGISTERS_PER_READ", "Block", "Limits", "plan"]

#: Modbus application protocol v1.1b3, §6.1-6.4: quantity limits of a read request.
MAX_REGISTERS_PER_READ = 125
MAX_BITS_PER_READ = 2000


@dataclass(frozen=True, slots=True)
class Limits:
    """How far coalescing may go. ``max_gap_*`` counts unused addresses read between two points."""

    max_gap_registers: int = 16
    max_gap_bits: int = 256
    max_registers: int = MAX_REGISTERS_PER_READ
    max_bits: int = MAX_BITS_PER_READ
    coalesce: bool = True

    def gap(self, table: Table) -> int:
        return self.max_gap_bits if table.is_bits else self.max_gap_registers

    def size(self, table: Table) -> int:
        return self.max_bits if table.is_bits else self.max_registers


@dataclass(slots=True)
class Block:
    """One read request: ``count`` addresses of ``table`` from ``address``, serving ``members``
    (pairs of the index of the point in the read call and the point)."""

    table: Table
    address: int
    count: int
    members: list[tuple[int, Point]] = field(default_factory=list)
    _names: tuple[str, str] | None = field(default=None, repr=False, compare=False)

    @property
    def end(self) -> int:
        return self.address + self.count

    def names(self) -> tuple[str, str]:
        """``(resources, address)`` as an error names them (``"r0,r1"``, ``"HOLDING_REGISTERS[0:2]"``),
        worked out once: a block is read at every poll."""
        if self._names is None:
            resources = ",".join(p.resource for _, p in self.members)
            self._names = (resources, f"{self.table.name}[{self.address}:{self.end}]")
        return self._names

    def key(self) -> tuple[Table, int, int]:
        return (self.table, self.address, self.end)


def plan(
    points: Sequence[Point],
    limits: Limits,
    split: Iterable[tuple[Table, int, int]] = (),
) -> list[Block]:
    """Requests that read every point. ``split`` names blocks a device refused as a whole (it has a
    hole in that range); points that would fall in one of them are read one request each."""
    avoid = list(split)
    by_table: dict[Table, list[tuple[int, Point]]] = {}
    for i, p in enumerate(points):
        by_table.setdefault(p.table, []).append((i, p))
    blocks: list[Block] = []
    for table in sorted(by_table):
        members = sorted(by_table[table], key=lambda ip: (ip[1].address, ip[1].end))
        gap = limits.gap(table)
        size = limits.size(table)
        current: Block | None = None
        for i, p in members:
            alone = not limits.coalesce or any(
                t == table and lo <= p.address and p.end <= hi for t, lo, hi in avoid
            )
            if alone:
                blocks.append(Block(table, p.address, p.count, [(i, p)]))
                continue
            if current is not None:
                new_end = max(current.end, p.end)
                if p.address - current.end <= gap and new_end - current.address <= size:
                    current.count = new_end - current.address
                    current.members.append((i, p))
                    continue
                blocks.append(current)
            current = Block(table, p.address, p.count, [(i, p)])
        if current is not None:
            blocks.append(current)
    return blocks
