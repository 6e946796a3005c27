"""IPVS `wrr`, weighted round robin (PURE): net/netfilter/ipvs/ip_vs_wrr.c.

The gcd-stepped interleaved WRR: `di` = gcd of the weights > 0 (1 if none), `mw` = max weight -
(di - 1), `cw` = the current weight, `cl` = the current position (the list head first). A pick
walks on from `cl` and returns the first dest not overloaded whose weight >= cw; at the end of
the list cw drops by di (back to mw below 1) and the walk restarts from the head. Weights 4, 3, 2
give A A B A B C A B C. When every dest is overloaded the walk stops after a last pass with
cw <= di ("all destinations are overloaded") and returns None; all weights 0: None at once.

How the position survives changes, as in the kernel (ip_vs_wrr_dest_changed, the add, del and
upd hook): cl goes back to the head, di and mw are recomputed, and cw is kept when it still fits
(cw > mw or 0: cw = mw; else with di > 1: cw = (cw // di) * di + 1).
"""

from __future__ import annotations

import math

from halb.balancing.base import Peer, PickContext, register
from halb.balancing.ipvs_common import IpvsBalancer

HEAD = -1


@register
class IpvsWeightedRoundRobin(IpvsBalancer):
    name = "wrr"

    def init_service(self) -> None:
        self.cl = HEAD  # index in self.dests, HEAD = the list head
        self._weights()
        self.cw = self.mw

    def _weights(self) -> None:
        g = 0
        for d in self.dests:
            if d.weight > 0:
                g = math.gcd(g, d.weight)
        self.di = g or 1
        self.mw = max((d.weight for d in self.dests), default=0) - (self.di - 1)

    def _changed(self) -> None:
        self.cl = HEAD
        self._weights()
        if self.cw > self.mw or self.cw == 0:
            self.cw = self.mw
        elif self.di > 1:
            self.cw = (self.cw // self.di) * self.di + 1

    def dest_added(self, peer: Peer) -> None:
        self._changed()

    def dest_removed(self, peer: Peer, index: int) -> None:
        self._changed()

    def dest_updated(self, peer: Peer) -> None:
        self._changed()

    def pick(self, ctx: PickContext) -> Peer | None:
        dests = self.dests
        if self.mw == 0:
            return None
        last = pos = self.cl
        stop: int | None = None
        last_pass = restarted = False
        while True:
            for i in range(pos + 1, len(dests)):
                d = dests[i]
                if not d.overloaded and d.weight >= self.cw:
                    self.cl = i
                    return d
                if i == stop:
                    self.cl = i
                    return None
            pos = HEAD
            self.cw -= self.di
            if self.cw <= 0:
                self.cw = self.mw
                # stop after a pass with cw <= di from the first dest, or if we began at the head
                if last_pass or last == HEAD:
                    self.cl = HEAD
                    return None
                restarted = True
            last_pass = self.cw <= self.di
            if last_pass and restarted and last != HEAD:
                stop = last  # the first traversal for weight >= 1 missed the dests up to `last`
