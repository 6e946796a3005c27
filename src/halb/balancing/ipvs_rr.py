"""IPVS `rr`, round robin (PURE): net/netfilter/ipvs/ip_vs_rr.c.

The cursor (`svc->sched_data`) is a position in the circular destination list: the list head
at first, then the last dest returned. A pick walks on from the dest after the cursor, round the
list, back to the cursor itself, and returns the first dest not overloaded with weight > 0; the
cursor moves there. Nothing found: None ("no destination available"), the cursor stays.

How the position survives changes, as in the kernel: rr has no add/update hook, so a weight
change (0 included) or a new dest (linked at the head) leaves the cursor where it is; a new dest
is reached when the walk wraps round. Deleting the dest under the cursor moves the cursor to the
dest before it (or to the head if it was first): ip_vs_rr_del_dest's `p->next->prev`.
"""

from __future__ import annotations

from halb.balancing.base import Peer, PickContext, register
from halb.balancing.ipvs_common import IpvsBalancer


@register
class IpvsRoundRobin(IpvsBalancer):
    name = "rr"

    def init_service(self) -> None:
        self.cursor: Peer | None = None  # None: the list head

    def dest_removed(self, peer: Peer, index: int) -> None:
        if self.cursor is peer:
            self.cursor = self.dests[index - 1] if index > 0 else None

    def pick(self, ctx: PickContext) -> Peer | None:
        dests = self.dests
        if self.cursor is None:
            order = dests
        else:
            i = self._index(self.cursor)
            order = dests[i + 1:] + dests[:i + 1]
        for d in order:
            if not d.overloaded and d.weight > 0:
                self.cursor = d
                return d
        return None
