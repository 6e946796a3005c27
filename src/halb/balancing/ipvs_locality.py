"""The locality table lblc and lblcr share (PURE): ip_vs_lblc.c / ip_vs_lblcr.c's hash table of
destination addresses and its garbage-collection timer, driven by the caller's clock.

Entries are keyed by the packet's destination address in 1024 buckets (`hash_32(ntohl(addr),
10)`, CONFIG_IP_VS_LBLC[R]_TAB_BITS = 10); at most max_size = 1024 * 16 entries are created
(the kernel refuses a new entry while `entries > max_size`, and schedules without caching it).

The kernel's periodic timer fires every 60 s from the table's creation. halb has no clock: each
pick, and `expire(now)`, first runs every firing due up to `now`, in order, exactly as the
handler does: every 30th firing a full check drops every entry unused for `expiration`
(`now >= lastuse + expiration`; the lblc_expiration / lblcr_expiration sysctl, 24 h by default)
and resets the count; otherwise, only while the table holds more than max_size entries, it drops
entries unused for 6 minutes, bucket by bucket from the rover, until (entries - max_size) * 4 / 3
(at most max_size / 2) are gone. The timer's start is `start` if given, else the first `now` seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, Protocol, TypeVar

from halb.balancing.ipvs_common import addr_key, hash_32

TAB_BITS = 10
TAB_SIZE = 1 << TAB_BITS
TAB_MASK = TAB_SIZE - 1
MAX_SIZE = TAB_SIZE * 16
CHECK_EXPIRE_INTERVAL = 60.0
ENTRY_TIMEOUT = 6 * 60.0
DEFAULT_EXPIRATION = 24 * 60 * 60.0
COUNT_FOR_FULL_EXPIRATION = 30


class Entry(Protocol):
    lastuse: float


E = TypeVar("E", bound=Entry)


class LocalityTable(Generic[E]):
    """Destination address → entry, with the kernel's expiry."""

    def __init__(self, expiration: float = DEFAULT_EXPIRATION, max_size: int = MAX_SIZE,
                 start: float | None = None) -> None:
        self.expiration = expiration
        self.max_size = max_size
        self.buckets: dict[int, dict[bytes, E]] = {}
        self.entries = 0
        self.rover = 0
        self.counter = 1
        self.next_check = None if start is None else start + CHECK_EXPIRE_INTERVAL

    @staticmethod
    def bucket_of(addr: bytes) -> int:
        return hash_32(addr_key(addr), TAB_BITS)

    def get(self, addr: bytes) -> E | None:
        b = self.buckets.get(self.bucket_of(addr))
        return None if b is None else b.get(addr)

    def add(self, addr: bytes, entry: E) -> bool:
        """Insert a new entry; False (not cached) while the table is over max_size."""
        if self.entries > self.max_size:
            return False
        self.buckets.setdefault(self.bucket_of(addr), {})[addr] = entry
        self.entries += 1
        return True

    def remove(self, addr: bytes, *, count: bool = True) -> None:
        """Drop an entry. count=False is ip_vs_lblc_new()'s replacement, which unlinks the old
        entry without decrementing the entry count (so the kernel's count drifts upward)."""
        h = self.bucket_of(addr)
        b = self.buckets.get(h)
        if b is not None and b.pop(addr, None) is not None:
            if count:
                self.entries -= 1
            if not b:
                del self.buckets[h]

    def __len__(self) -> int:
        """The entries actually held (the kernel's `entries` count may be higher, see remove)."""
        return sum(len(b) for b in self.buckets.values())

    def __iter__(self) -> Iterator[tuple[bytes, E]]:
        for h in sorted(self.buckets):
            yield from self.buckets[h].items()

    # -- the periodic timer --------------------------------------------------------------------

    def expire(self, now: float) -> None:
        """Run every timer firing due at or before `now`."""
        if self.next_check is None:
            self.next_check = now + CHECK_EXPIRE_INTERVAL
            return
        while self.next_check <= now:
            t = self.next_check
            if self.counter % COUNT_FOR_FULL_EXPIRATION == 0:
                self._sweep(lambda lastuse, t=t: t >= lastuse + self.expiration)
                self.counter = 1
            elif self.entries <= self.max_size:
                # nothing changes until the next full check: jump to it (or past now)
                due = int((now - t) // CHECK_EXPIRE_INTERVAL) + 1
                steps = min(due, COUNT_FOR_FULL_EXPIRATION - self.counter)
                self.counter += steps
                self.next_check += steps * CHECK_EXPIRE_INTERVAL
                continue
            else:
                goal = min((self.entries - self.max_size) * 4 // 3, self.max_size // 2)
                self._sweep(lambda lastuse, t=t: t >= lastuse + ENTRY_TIMEOUT, goal)
            self.next_check += CHECK_EXPIRE_INTERVAL

    def _sweep(self, stale: Callable[[float], bool], goal: int | None = None) -> None:
        """Walk the buckets from the one after the rover, dropping stale entries; with a goal,
        stop after the bucket where it is reached."""
        j = self.rover
        for _ in range(TAB_SIZE):
            j = (j + 1) & TAB_MASK
            b = self.buckets.get(j)
            if b:
                for addr in [a for a, en in b.items() if stale(en.lastuse)]:
                    del b[addr]
                    self.entries -= 1
                    if goal is not None:
                        goal -= 1
                if not b:
                    del self.buckets[j]
            if goal is not None and goal <= 0:
                break
        self.rover = j
