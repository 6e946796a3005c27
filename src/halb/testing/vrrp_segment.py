"""An in-memory Ethernet segment of VRRP routers with a fake clock (PURE; for tests and labs).

`Segment` links N `Machine`s the way a LAN links keepalived nodes: every SendAdvert is encoded
with halb.vrrp.packet, multicast to every other live node that the current partition lets it
reach (optionally after a latency and with random loss), decoded and checked there exactly as the
I/O layer will (packet.decode + packet.check), then handed to that node's machine. Time only moves
in `run`/`advance`, which process deliveries and timer deadlines in time order, so a test can
assert that a failover happens exactly Master_Down_Interval after the master's last advert.

Faults to inject: `crash` (the host disappears silently: no priority-0 advert, its VIPs vanish),
`restart`, `stop` (graceful: the machine's shutdown actions run), `partition(*groups)` / `heal`,
`loss` (a probability, drawn from a seeded RNG), `set_priority` (tracking), `fault`.
"""

from __future__ import annotations

import heapq
import ipaddress
import random
from dataclasses import dataclass, field
from typing import Any

from halb.vrrp import packet
from halb.vrrp.machine import (
    Action,
    AddVips,
    DelVips,
    Log,
    Machine,
    Params,
    SendAdvert,
    SendGratuitous,
    State,
    StateChanged,
)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
VIP = ipaddress.IPv4Address("198.18.0.100")


@dataclass(eq=False)
class Node:
    """One router on the segment and everything it did."""

    name: str
    params: Params
    vips: tuple[Address, ...]
    auth: tuple[int, bytes] = (packet.AUTH_NONE, bytes(packet.AUTH_LEN))
    machine: Machine = field(init=False)
    alive: bool = False
    holds_vips: bool = False
    transitions: list[tuple[float, State, State]] = field(default_factory=list)
    adverts: list[tuple[float, int]] = field(default_factory=list)  # (time, priority) sent
    gratuitous: list[tuple[float, int]] = field(default_factory=list)
    logs: list[tuple[float, str]] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)  # receive drops per reason

    def __post_init__(self) -> None:
        self.machine = Machine(self.params)

    @property
    def address(self) -> Address:
        return self.params.address

    @property
    def state(self) -> State:
        return self.machine.state if self.alive else State.STOP


class Segment:
    """N VRRP machines on one in-memory LAN with a fake clock starting at `start`."""

    def __init__(self, *, latency: float = 0.0, loss: float = 0.0, seed: int = 0,
                 start: float = 1000.0) -> None:
        self.now = start
        self.latency = latency
        self.loss = loss
        self.rng = random.Random(seed)
        self.nodes: dict[str, Node] = {}
        self._groups: list[frozenset[str]] | None = None
        self._queue: list[tuple[float, int, str, str, Address, bytes]] = []
        self._seq = 0

    # -- building ------------------------------------------------------------------------------

    def add(self, name: str, priority: int = 100, *, address: str | Address | None = None,
            vips: tuple[Address, ...] = (VIP,), password: str | None = None,
            **params: Any) -> Node:
        """A router; `params` are machine.Params fields (version, advert_int_cs, ...)."""
        if address is None:
            address = f"198.18.0.{len(self.nodes) + 1}"
        addr = ipaddress.ip_address(address)
        node = Node(name, Params(addr, priority=priority, **params), vips)
        if password is not None:
            node.auth = (packet.AUTH_PASS, packet.password(password))
        self.nodes[name] = node
        return node

    def start(self, *names: str) -> None:
        for name in names or tuple(self.nodes):
            node = self.nodes[name]
            node.alive = True
            self._apply(node, node.machine.start(self.now))

    # -- faults --------------------------------------------------------------------------------

    def crash(self, name: str) -> None:
        node = self.nodes[name]
        node.alive = False
        node.holds_vips = False

    def restart(self, name: str) -> None:
        node = self.nodes[name]
        node.machine = Machine(node.params)
        node.alive = True
        self._apply(node, node.machine.start(self.now))

    def stop(self, name: str) -> None:
        node = self.nodes[name]
        self._apply(node, node.machine.shutdown(self.now))
        node.alive = False

    def partition(self, *groups: set[str] | frozenset[str] | list[str]) -> None:
        """Only nodes in one group hear each other; nodes in no group hear nobody."""
        self._groups = [frozenset(g) for g in groups]

    def heal(self) -> None:
        self._groups = None

    def set_priority(self, name: str, priority: int) -> None:
        node = self.nodes[name]
        self._apply(node, node.machine.set_priority(priority, self.now))

    def fault(self, name: str, on: bool) -> None:
        node = self.nodes[name]
        self._apply(node, node.machine.fault(on, self.now))

    # -- time ------------------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        self.run(self.now + seconds)

    def run(self, until: float) -> None:
        """Process every delivery and timer due up to `until`, in time order."""
        steps = 0
        while True:
            t_rx = self._queue[0][0] if self._queue else None
            due = [(n.machine.next_deadline, n.name) for n in self.nodes.values()
                   if n.alive and n.machine.next_deadline is not None]
            t_timer, who = min(due) if due else (None, "")
            # at equal times timers go first: a datagram sent at t arrives just after t, so
            # two backups whose down timers expire together both become master (RFC 5798 tie)
            if t_rx is not None and (t_timer is None or t_rx < t_timer):
                if t_rx > until:
                    break
                self.now = max(self.now, t_rx)
                self._deliver(heapq.heappop(self._queue))
            elif t_timer is not None and t_timer <= until:
                self.now = max(self.now, t_timer)
                node = self.nodes[who]
                self._apply(node, node.machine.tick(self.now))
            else:
                break
            steps += 1
            if steps > 1_000_000:
                raise RuntimeError("segment does not settle")
        self.now = max(self.now, until)

    # -- views ----------------------------------------------------------------------------------

    def masters(self) -> list[str]:
        return [n.name for n in self.nodes.values() if n.alive and n.state is State.MASTER]

    def holders(self) -> list[str]:
        return [n.name for n in self.nodes.values() if n.holds_vips]

    def states(self) -> dict[str, State]:
        return {n.name: n.state for n in self.nodes.values()}

    # -- internals ------------------------------------------------------------------------------

    def _reachable(self, a: str, b: str) -> bool:
        if self._groups is None:
            return True
        return any(a in g and b in g for g in self._groups)

    def _apply(self, node: Node, actions: list[Action]) -> None:
        for act in actions:
            if isinstance(act, SendAdvert):
                node.adverts.append((self.now, act.priority))
                self._send(node, act.priority)
            elif isinstance(act, AddVips):
                node.holds_vips = True
            elif isinstance(act, DelVips):
                node.holds_vips = False
            elif isinstance(act, SendGratuitous):
                node.gratuitous.append((self.now, act.repeat))
            elif isinstance(act, StateChanged):
                node.transitions.append((self.now, act.old, act.new))
            elif isinstance(act, Log):
                node.logs.append((self.now, act.message))

    def _send(self, node: Node, priority: int) -> None:
        p = node.params
        advert = packet.Advert(p.version, p.vrid, priority, node.vips, p.advert_int_cs,
                               *(node.auth if p.version == 2 else (packet.AUTH_NONE, b"")))
        dst = packet.MCAST4 if node.address.version == 4 else packet.MCAST6
        data = packet.encode(advert, node.address, dst)
        for other in self.nodes.values():
            if other is node or not self._reachable(node.name, other.name):
                continue
            if self.loss and self.rng.random() < self.loss:
                continue
            self._seq += 1
            heapq.heappush(self._queue, (self.now + self.latency, self._seq, node.name,
                                         other.name, node.address, data))

    def _deliver(self, item: tuple[float, int, str, str, Address, bytes]) -> None:
        _, _, sender, name, src, data = item
        node = self.nodes[name]
        if not node.alive or not self._reachable(sender, name):
            return
        dst = packet.MCAST4 if src.version == 4 else packet.MCAST6
        p = node.params
        auth = node.auth if p.version == 2 else (packet.AUTH_NONE, bytes(packet.AUTH_LEN))
        try:
            advert = packet.decode(data, src, dst, packet.TTL)
            packet.check(advert, packet.Expect(p.version, *auth, p.advert_int_cs, node.vips))
        except packet.PacketError as err:
            node.dropped[err.reason] = node.dropped.get(err.reason, 0) + 1
            return
        self._apply(node, node.machine.receive(advert, src, self.now))
