"""What every IPVS scheduler shares (PURE): the destination list and the kernel's helpers.

Each `ipvs_*` module is one scheduler of `net/netfilter/ipvs/ip_vs_<name>.c` (reference
l4-ipvs.md §1), written against this base class:

* **The destination list** (`svc->destinations`). `self.dests` is the kernel's list in its order,
  head first; "earlier" in every tie rule means earlier in this list. A balancer built from a
  list of peers takes that list as the kernel order. `add_dest` links a new real server at the
  **head** of the list, as `__ip_vs_update_dest()` does (`list_add_rcu(&dest->n_list,
  &svc->destinations)`, read in ip_vs_ctl.c; so `ipvsadm -a A; -a B; -a C` lists C, B, A), and
  calls the scheduler's `add_dest` hook; `del_dest` unlinks (`del_dest` hook), `edit_dest` changes
  the weight (`upd_dest` hook) and keeps `last_weight` = the latest non-zero weight, as the kernel
  does. `peer_down` / `peer_up` are keepalived's reaction to a failed / recovered check without
  inhibit_on_failure: the real server leaves the list and is added back (at the head).
  `available(peer)` is the kernel's IP_VS_DEST_F_AVAILABLE (the dest is in the service, not in
  the trash): lblc/lblcr cache entries may point at a dest that has left. All state refers to
  peers by reference (last_weight lives in `peer.extra`, as dest->last_weight does in the dest),
  never by id(), so `copy.deepcopy(balancer)` gives a faithful twin to simulate picks with.
* **The flags.** `peer.overloaded` is IP_VS_DEST_F_OVERLOAD; the director sets and clears it from
  the -x/-y thresholds (reference §2.6), the schedulers only read it, each exactly where its C
  source tests it. Weight 0 is "quiesced": no scheduler returns it for a new connection.
* **The counters.** `overhead(d) = (active << 8) + inactive` (ip_vs_dest_conn_overhead). The
  director keeps `peer.active` / `peer.inactive` as the connection table says (only ESTABLISHED
  counts as active); `pick()` never counts anything itself: the director binds the connection.
* **The hashes**, bit for bit: `hash_32` (include/linux/hash.h, the generic multiply by
  GOLDEN_RATIO_32 that x86 and most architectures use), IPv6 addresses folded by XOR of their four
  32-bit words, and `hsiphash` as the kernel computes it on 64-bit machines (lib/siphash.c: there
  "HalfSipHash-1-3" is SipHash-1-3 with two 64-bit key words, truncated to 32 bits). 32-bit
  kernels run the real HalfSipHash and give other mh tables; halb follows 64-bit kernels.
* **Scheduler flags** (`ipvsadm -b`): `sched_flags=("sh-fallback", "sh-port")` or the generic
  `flag-1..3` (IP_VS_SVC_F_SCHED1..3). sh-* belong to sh, mh-* to mh, as ipvsadm checks.
"""

from __future__ import annotations

import ipaddress
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

from halb.balancing.base import Balancer, ConfigurationError, Peer

M32 = 0xFFFFFFFF
M64 = (1 << 64) - 1
GOLDEN_RATIO_32 = 0x61C88647

SCHED1, SCHED2, SCHED3 = 1, 2, 3
LAST_WEIGHT = "ipvs.last_weight"  # key in Peer.extra
_GENERIC_FLAGS = {"flag-1": SCHED1, "flag-2": SCHED2, "flag-3": SCHED3}
_NAMED_FLAGS = {"sh-fallback": ("sh", SCHED1), "sh-port": ("sh", SCHED2),
                "mh-fallback": ("mh", SCHED1), "mh-port": ("mh", SCHED2)}


# -- the kernel's helpers --------------------------------------------------------------------

def overhead(d: Peer) -> int:
    """ip_vs_dest_conn_overhead(): an active connection weighs 256 inactive ones."""
    return (d.active << 8) + d.inactive


def unavailable(d: Peer) -> bool:
    """The hashing schedulers' is_unavailable(): quiesced (weight <= 0) or overloaded."""
    return d.weight <= 0 or d.overloaded


def wlc_pick(dests: Iterable[Peer]) -> Peer | None:
    """Weighted least-connection (ip_vs_wlc_schedule, also __ip_vs_lblc[r]_schedule).

    The first dest not overloaded and with weight > 0 starts; a later one (overloaded skipped)
    replaces it only when `loh * d.weight > doh * least.weight`, so ties keep the earlier one and
    a weight-0 dest never wins.
    """
    least: Peer | None = None
    loh = 0
    for d in dests:
        if d.overloaded:
            continue
        if least is None:
            if d.weight > 0:
                least, loh = d, overhead(d)
            continue
        doh = overhead(d)
        if loh * d.weight > doh * least.weight:
            least, loh = d, doh
    return least


def hash_32(val: int, bits: int) -> int:
    """include/linux/hash.h: `(val * GOLDEN_RATIO_32) >> (32 - bits)` in 32-bit arithmetic."""
    return ((val * GOLDEN_RATIO_32) & M32) >> (32 - bits)


def addr_key(addr: bytes | None) -> int:
    """ntohl(addr_fold): an IPv4 address as a host-order u32; IPv6 folded by XOR of its words.

    A missing address counts as 0.0.0.0 (as nginx's ip_hash does with a non-IP client).
    """
    if addr is None:
        return 0
    if len(addr) == 4:
        return int.from_bytes(addr, "big")
    if len(addr) == 16:
        key = 0
        for i in range(0, 16, 4):
            key ^= int.from_bytes(addr[i:i + 4], "big")
        return key
    raise ValueError(f"not an IPv4 or IPv6 address: {addr!r}")


def peer_addr(peer: Peer) -> bytes:
    """The real server's address bytes (mh hashes it). Kernel dests are always addresses; a
    peer named by a host name gets 4 bytes derived from its name (stable, not kernel-exact)."""
    try:
        return ipaddress.ip_address(peer.host).packed
    except ValueError:
        return zlib.crc32((peer.host or peer.name).encode()).to_bytes(4, "big")


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & M64


def siphash(k0: int, k1: int, data: bytes, c_rounds: int = 2, d_rounds: int = 4) -> int:
    """SipHash-c-d with the 64-bit key words (k0, k1), as lib/siphash.c computes it (64-bit out)."""
    v0 = k0 ^ 0x736F6D6570736575
    v1 = k1 ^ 0x646F72616E646F6D
    v2 = k0 ^ 0x6C7967656E657261
    v3 = k1 ^ 0x7465646279746573

    def rounds(n: int) -> None:
        nonlocal v0, v1, v2, v3
        for _ in range(n):
            v0 = (v0 + v1) & M64
            v1 = _rotl(v1, 13) ^ v0
            v0 = _rotl(v0, 32)
            v2 = (v2 + v3) & M64
            v3 = _rotl(v3, 16) ^ v2
            v0 = (v0 + v3) & M64
            v3 = _rotl(v3, 21) ^ v0
            v2 = (v2 + v1) & M64
            v1 = _rotl(v1, 17) ^ v2
            v2 = _rotl(v2, 32)

    end = len(data) - len(data) % 8
    for i in range(0, end, 8):
        m = int.from_bytes(data[i:i + 8], "little")
        v3 ^= m
        rounds(c_rounds)
        v0 ^= m
    b = ((len(data) & 0xFF) << 56) | int.from_bytes(data[end:], "little")
    v3 ^= b
    rounds(c_rounds)
    v0 ^= b
    v2 ^= 0xFF
    rounds(d_rounds)
    return v0 ^ v1 ^ v2 ^ v3


def hsiphash(k0: int, k1: int, data: bytes) -> int:
    """The kernel's hsiphash() on a 64-bit machine: SipHash-1-3, the low 32 bits."""
    return siphash(k0, k1, data, 1, 3) & M32


def parse_sched_flags(scheduler: str, flags: Iterable[str]) -> set[int]:
    """ipvsadm -b flags → {SCHED1, SCHED2, SCHED3}; sh-*/mh-* only for their own scheduler."""
    out: set[int] = set()
    for flag in flags:
        if flag in _GENERIC_FLAGS:
            out.add(_GENERIC_FLAGS[flag])
        elif flag in _NAMED_FLAGS:
            owner, bit = _NAMED_FLAGS[flag]
            if owner != scheduler:
                raise ConfigurationError(f'scheduler flag "{flag}" is only for the "{owner}" '
                                         f'scheduler, not "{scheduler}"')
            out.add(bit)
        else:
            raise ConfigurationError(f'invalid scheduler flag "{flag}"')
    return out


# -- the base class --------------------------------------------------------------------------

class IpvsBalancer(Balancer):
    """An IPVS scheduler: a destination list with the kernel's add/del/update hooks."""

    allows_backup = False

    def __init__(self, peers: Sequence[Peer], backup: Sequence[Peer] = (), *,
                 sched_flags: Iterable[str] = (), **params: Any) -> None:
        if backup:
            raise ConfigurationError(f'scheduler "{self.name}" has no backup servers')
        super().__init__(peers, backup, **params)
        self.flags = parse_sched_flags(self.name, sched_flags)
        self.dests: list[Peer] = [p for p in self.peers if not p.down and p.healthy]
        for p in self.peers:  # a dest keeps its last_weight across a scheduler change (-E -s)
            p.extra.setdefault(LAST_WEIGHT, p.weight)
        self.init_service()

    # -- scheduler hooks (ip_vs_scheduler's init_service / add_dest / del_dest / upd_dest) -----

    def init_service(self) -> None:
        """Build the scheduler's state for the current list."""

    def dest_added(self, peer: Peer) -> None:
        """`peer` was just linked at the head of self.dests."""

    def dest_removed(self, peer: Peer, index: int) -> None:
        """`peer` was just unlinked; it stood at self.dests[index]."""

    def dest_updated(self, peer: Peer) -> None:
        """`peer`'s weight changed (it is in the list)."""

    # -- the destination list ------------------------------------------------------------------

    def available(self, peer: Peer) -> bool:
        """IP_VS_DEST_F_AVAILABLE: the dest is in the service's list."""
        return any(d is peer for d in self.dests)

    @staticmethod
    def last_weight(peer: Peer) -> int:
        """dest->last_weight: the latest non-zero weight (set on add whatever the weight)."""
        return int(peer.extra.get(LAST_WEIGHT, peer.weight))

    def _index(self, peer: Peer) -> int:
        for i, d in enumerate(self.dests):
            if d is peer:
                return i
        raise ConfigurationError(f"no such destination {peer.address}")

    def add_dest(self, peer: Peer) -> None:
        """ipvsadm -a: link the real server at the head of the list (the kernel's order)."""
        if self.available(peer):
            raise ConfigurationError(f"destination {peer.address} already exists")
        if all(p is not peer for p in self.peers):
            peer.index = len(self.peers)
            self.peers.append(peer)
        self.dests.insert(0, peer)
        peer.extra[LAST_WEIGHT] = peer.weight
        self.dest_added(peer)

    def _unlink(self, peer: Peer) -> None:
        index = self._index(peer)
        del self.dests[index]
        self.dest_removed(peer, index)

    def del_dest(self, peer: Peer) -> None:
        """ipvsadm -d: the real server leaves the service."""
        self._unlink(peer)
        self.peers = [p for p in self.peers if p is not peer]

    def edit_dest(self, peer: Peer, weight: int) -> None:
        """ipvsadm -e -w: the new weight; last_weight keeps the latest non-zero one."""
        if weight != 0:
            peer.extra[LAST_WEIGHT] = weight
        peer.weight = weight
        peer.effective_weight = weight
        if self.available(peer):
            self.dest_updated(peer)

    def weight_changed(self, peer: Peer, weight: int) -> None:
        self.edit_dest(peer, weight)

    def peer_down(self, peer: Peer) -> None:
        """A failed check (keepalived without inhibit_on_failure): the dest leaves the list."""
        peer.healthy = False
        if self.available(peer):
            self._unlink(peer)

    def peer_up(self, peer: Peer) -> None:
        """A recovered check: keepalived adds the dest again (at the head, as any add)."""
        peer.healthy = True
        if not self.available(peer) and not peer.down:
            self.add_dest(peer)
