"""Every transaction nft_rules renders is accepted by the real `nft` and leaves what it says, in a
scratch namespace: first ruleset over a stale table, changes that add and drop services, real
servers, persistence, timeouts and interfaces, and the final removal (root)."""

from __future__ import annotations

import json
import random
import subprocess

import pytest
from l4lab import nft

from halb.l4.model import Timeouts
from halb.l4.nft_rules import (
    PICK_HASH,
    PICK_SEQUENCE,
    Pick,
    RuleDest,
    RuleService,
    Ruleset,
    remove,
    render,
)

VIP = "198.18.0.100"


def services(rng: random.Random, family: str) -> tuple[RuleService, ...]:
    out = []
    for sid in rng.sample(range(1, 12), rng.randint(0, 4)):
        proto = rng.choice(["tcp", "udp"])
        port = rng.choice([80, 443, 0]) if family == "ip" else rng.choice([80, 443])
        persistent = rng.choice([0, 30, 360]) if port else 300
        n = rng.randint(0, 4)
        dests = tuple(RuleDest(i, f"198.18.1.{10 + i}", port, masquerade=rng.random() < 0.3,
                               device=rng.choice(["eth0", "eth1"]))
                      for i in rng.sample(range(1, 9), n))
        ids = [d.id for d in dests] + [0]
        if rng.random() < 0.5:
            pick = Pick(PICK_SEQUENCE, tuple(rng.choice(ids) for _ in range(rng.randint(0, 9))))
        else:
            pick = Pick(PICK_HASH, tuple(rng.choice(ids) for _ in range(256)),
                        key=rng.choice(["saddr", "saddr.sport"]))
        netmask = rng.choice(["255.255.255.255", "255.255.255.0"])
        out.append(RuleService(sid, proto, f"198.18.0.{100 + sid % 3}", port, dests, pick,
                               persistent, netmask))
    # one service per (proto, vip, port)
    seen: set[tuple[str, str, int]] = set()
    unique = []
    for s in out:
        if (s.proto, s.addr, s.port) not in seen:
            seen.add((s.proto, s.addr, s.port))
            unique.append(s)
    return tuple(unique)


def listing(ns: str, family: str) -> dict[str, set[str]]:
    out = subprocess.run(["ip", "netns", "exec", ns, "nft", "-j", "list", "table", family,
                          "halb"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        return {}
    kinds: dict[str, set[str]] = {}
    for item in json.loads(out.stdout)["nftables"]:
        for kind, obj in item.items():
            if isinstance(obj, dict) and "name" in obj:
                kinds.setdefault(kind, set()).add(obj["name"])
    return kinds


@pytest.mark.root
@pytest.mark.parametrize("family", ["ip", "netdev"])
def test_random_sequences_of_rulesets_apply_and_leave_what_they_say(scratch: str,
                                                                   family: str) -> None:
    rng = random.Random(family)
    # a stale table from a "crashed run" is replaced
    stale = Ruleset(family, services(random.Random(99), family) or (),
                    devices=("eth0",))
    assert nft(scratch, render(stale, None)).returncode == 0
    previous: Ruleset | None = None
    for step in range(12):
        devices = tuple(sorted(rng.sample(["eth0", "eth1"], rng.randint(1, 2))))
        timeouts = rng.choice([Timeouts(), Timeouts(60, 10, 20)])
        rs = Ruleset(family, services(rng, family), timeouts, devices)
        text = render(rs, previous)
        out = nft(scratch, text)
        assert out.returncode == 0, f"step {step}: {out.stderr}\n{text}"
        have = listing(scratch, family)
        if not rs.services:
            assert have == {}, "a ruleset without services removes its table"
        else:
            chains = have.get("chain", set())
            for svc in rs.services:
                assert f"s{svc.id}" in chains
                for d in svc.dests:
                    assert f"n{svc.id}_{d.id}" in have.get("counter", set())
                if svc.persistent:
                    assert f"p{svc.id}" in have.get("map", set())
            ids = {s.id for s in rs.services}
            stale_chains = {c for c in chains if c[:1] in "sf" and c[1:].isdigit()
                            and int(c[1:]) not in ids}
            assert not stale_chains, f"step {step}: left behind {stale_chains}"
        previous = rs
    assert nft(scratch, remove(family)).returncode == 0
    assert listing(scratch, family) == {}


@pytest.mark.root
def test_persistence_with_a_netmask_and_dynamic_maps_survive_a_change(scratch: str) -> None:
    svc = RuleService(1, "tcp", VIP, 80, (RuleDest(1, "198.18.1.11", 80),),
                      Pick(PICK_SEQUENCE, (1,)), persistent=300, netmask="255.255.255.0")
    first = Ruleset("ip", (svc,))
    assert nft(scratch, render(first, None)).returncode == 0
    assert nft(scratch, "add element ip halb p1 { 198.18.0.0 : 0x48001001 }\n").returncode == 0
    changed = Ruleset("ip", (svc,), Timeouts(60, 10, 20))
    assert nft(scratch, render(changed, first)).returncode == 0
    out = subprocess.run(["ip", "netns", "exec", scratch, "nft", "list", "map", "ip", "halb",
                          "p1"], capture_output=True, text=True, timeout=30).stdout
    assert "198.18.0.0" in out, "the persistence templates outlive a ruleset change"
