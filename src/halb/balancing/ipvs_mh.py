"""IPVS `mh`, Maglev hashing (PURE): net/netfilter/ipvs/ip_vs_mh.c, with mh-fallback and mh-port.

What halb reproduces, read in the kernel source (ip_vs_mh.c, lib/siphash.c, ip_vs_ctl.c):

* **Table size.** M is a prime from the kernel's list {251, 509, 1021, 2039, 4093, 8191, 16381,
  32749, 65521, 131071}, chosen by CONFIG_IP_VS_MH_TAB_INDEX (default 12 → **M = 4093**, the
  kernel's default and halb's). The Maglev paper (and Katran) use 65537: pass `table_size=65537`
  (any prime is accepted; weights are then shifted with bits = M.bit_length() // 2, which gives
  the kernel's IP_VS_MH_TAB_BITS for every prime in its list).
* **Permutation.** For each dest: `offset = hkey(addr, port, k1) % M`, `skip = hkey(addr, port, k2)
  % (M - 1) + 1`, with the dest's own address and port, the fixed keys k1 = (2654435761,
  2654435761), k2 = (2654446892, 2654446892), and hkey(addr, port, key, off) = hsiphash of the u32
  `off + ntohs(port) + ntohl(addr_fold)` (4 bytes, little-endian as x86 stores them).
* **Weights** from `last_weight` (the latest non-zero weight): g = gcd of those > 0, rshift =
  max(0, fls(max / g) - bits); turns = ((lw / g) >> rshift) or (1 if lw else 0). Population is
  Maglev's Pseudocode 1 except that each dest places `turns` entries in a row per round; dests
  with 0 turns get none. Quiescing (weight 0) keeps last_weight, so it does not reshuffle the
  table: the dest just becomes unavailable.
* **Lookup.** `table[hkey(client addr, client port if mh-port else 0, k1, 0) % M]`; unavailable
  (weight <= 0 or overloaded) → None, or with mh-fallback the probe for offset 0..M-1 of
  `hkey(..., (offset + first) % M) % M`, first available wins, an empty bucket stops.
* The table is rebuilt on every add, delete and weight change (the kernel's three hooks).

Verified here: hsiphash against the kernel's own 64-bit test vectors (lib/siphash_kunit.c), and
the population loop against the Maglev paper's Table 1 (M = 7, offsets/skips given, before and
after removing B1). Not verified against a running kernel (this host has no IPVS): whole mh
tables. On 32-bit kernels hsiphash is the real HalfSipHash-1-3 and the tables differ.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from halb.balancing.base import ConfigurationError, Needs, Peer, PickContext, register
from halb.balancing.ipvs_common import (
    M32,
    SCHED1,
    SCHED2,
    IpvsBalancer,
    addr_key,
    hsiphash,
    peer_addr,
    unavailable,
)

PRIMES = (251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071)
DEFAULT_TABLE_SIZE = 4093  # PRIMES[CONFIG_IP_VS_MH_TAB_INDEX (12) - 8]
K1 = (2654435761, 2654435761)
K2 = (2654446892, 2654446892)


def mh_hashkey(key: int, port: int, hkey: tuple[int, int], offset: int = 0) -> int:
    """ip_vs_mh_hashkey(): hsiphash of the u32 `offset + port + addr` under `hkey`."""
    v = (offset + port + key) & M32
    return hsiphash(hkey[0], hkey[1], v.to_bytes(4, "little"))


def populate(setup: Sequence[tuple[int, int, int]], m: int) -> list[int | None]:
    """ip_vs_mh_populate(): the lookup table as indexes into `setup` [(offset, skip, turns)].

    With every turns = 1 this is the Maglev paper's Pseudocode 1.
    """
    table: list[int | None] = [None] * m
    if not any(turns >= 1 for _, _, turns in setup):
        return table
    perm = [offset for offset, _, _ in setup]
    n = 0
    while True:
        i = count = 0
        while i < len(setup):
            _, skip, turns = setup[i]
            if turns < 1:
                i += 1
                continue
            c = perm[i]
            while table[c] is not None:
                c += skip
                if c >= m:
                    c -= m
            perm[i] = c
            table[c] = i
            n += 1
            if n == m:
                return table
            count += 1
            if count >= turns:
                count = 0
                i += 1


def is_prime(n: int) -> bool:
    return n >= 2 and all(n % k for k in range(2, math.isqrt(n) + 1))


@register
class IpvsMaglevHash(IpvsBalancer):
    name = "mh"
    needs = Needs.CLIENT

    def __init__(self, peers: Sequence[Peer], backup: Sequence[Peer] = (), *,
                 fallback: bool = False, port: bool = False,
                 table_size: int = DEFAULT_TABLE_SIZE, **params: Any) -> None:
        if not is_prime(table_size):
            raise ConfigurationError(f"mh table size {table_size} is not a prime")
        self.m = table_size
        self.tab_bits = table_size.bit_length() // 2
        super().__init__(peers, backup, **params)
        self.fallback = fallback or SCHED1 in self.flags
        self.use_port = port or SCHED2 in self.flags

    def init_service(self) -> None:
        self.reassign()

    def dest_added(self, peer: Peer) -> None:
        self.reassign()

    def dest_removed(self, peer: Peer, index: int) -> None:
        self.reassign()

    def dest_updated(self, peer: Peer) -> None:
        self.reassign()

    def turns(self) -> list[int]:
        """Entries per round for each dest (ip_vs_mh_gcd_weight / shift_weight / permutate)."""
        lws = [self.last_weight(d) for d in self.dests]
        g = 0
        for lw in lws:
            if lw > 0:
                g = math.gcd(g, lw)
        if g < 1:
            return [0] * len(lws)
        rshift = max(0, (max(lws) // g).bit_length() - self.tab_bits)
        return [((lw // g) >> rshift) or (1 if lw != 0 else 0) for lw in lws]

    def reassign(self) -> None:
        if len(self.dests) > self.m:
            raise ConfigurationError(f"mh: more destinations than table entries ({self.m})")
        setup = []
        for d, turns in zip(self.dests, self.turns(), strict=True):
            key = addr_key(peer_addr(d))
            offset = mh_hashkey(key, d.port, K1) % self.m
            skip = mh_hashkey(key, d.port, K2) % (self.m - 1) + 1
            setup.append((offset, skip, turns))
        self.table: list[Peer | None] = [None if i is None else self.dests[i]
                                         for i in populate(setup, self.m)]

    def pick(self, ctx: PickContext) -> Peer | None:
        key = addr_key(ctx.client)
        port = (ctx.port or 0) if self.use_port else 0
        ihash = mh_hashkey(key, port, K1) % self.m
        d = self.table[ihash]
        if d is None:
            return None
        if not unavailable(d):
            return d
        if not self.fallback:
            return None
        for offset in range(self.m):
            d = self.table[mh_hashkey(key, port, K1, (offset + ihash) % self.m) % self.m]
            if d is None:
                break
            if not unavailable(d):
                return d
        return None
