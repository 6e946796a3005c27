"""IPVS lblcr (ip_vs_lblcr.c): a destination address keeps a server set that grows when its
best member is overloaded and shrinks after `expiration` without change."""

from __future__ import annotations

from ipvs_util import ctx, ip, name, peer, sched

from halb.balancing.ipvs_lblcr import IpvsLocalityLeastConnReplicated, LblcrEntry


def lblcr(spec: str, **params: object) -> IpvsLocalityLeastConnReplicated:
    b = sched("lblcr", spec, **params)
    assert isinstance(b, IpvsLocalityLeastConnReplicated)
    return b


def pick(b: IpvsLocalityLeastConnReplicated, daddr: str = "198.18.5.1",
         now: float = 0.0) -> str:
    return name(b.pick(ctx(daddr=daddr, now=now)))


def members(b: IpvsLocalityLeastConnReplicated, daddr: str = "198.18.5.1") -> str:
    en = b.table.get(ip(daddr))
    assert isinstance(en, LblcrEntry)
    return "".join(m.name for m in en.members)


def test_set_grows_when_its_best_member_is_overloaded() -> None:
    b = lblcr("A B C")
    assert pick(b) == "A" and members(b) == "A"
    peer(b, "A").active = 2  # over weight 1 while B is half idle
    assert pick(b, now=5) == "B" and members(b) == "BA"  # head-inserted
    peer(b, "B").active = 1
    assert pick(b, now=6) == "B"  # set_min: B 256 < A 512
    peer(b, "A").active = peer(b, "B").active = 0
    assert pick(b, now=7) == "B"  # a tie keeps the set's first (the latest added)


def test_set_min_skips_members_that_left_or_are_flagged() -> None:
    b = lblcr("A B C")
    assert pick(b) == "A"
    peer(b, "A").active = 2
    assert pick(b) == "B" and members(b) == "BA"
    peer(b, "A").active = 0
    b.del_dest(peer(b, "B"))
    assert pick(b) == "A"
    peer(b, "A").overloaded = True
    # nothing usable in the set: wlc joins C; B, gone from the service, stays a member
    # (the set holds a reference, as the kernel's does)
    assert pick(b) == "C" and members(b) == "CBA"
    b.edit_dest(peer(b, "C"), 0)
    peer(b, "A").overloaded = False
    assert pick(b) == "A"


def test_set_shrinks_after_expiration() -> None:
    b = lblcr("A B", expiration=600, start=0)
    assert pick(b, now=0) == "A"
    peer(b, "A").active = 2
    assert pick(b, now=5) == "B" and members(b) == "BA"  # lastmod 5
    peer(b, "A").active = 0
    peer(b, "B").active = 3
    assert pick(b, now=605) == "A" and members(b) == "BA"  # 605 > 5 + 600 is false
    assert pick(b, now=606) == "A" and members(b) == "A"  # most loaded (B) dropped


def test_shrink_may_drop_the_member_it_returns() -> None:
    # set_min is taken before set_max erases: with B the only member of weight > 0, both are B
    b = lblcr("A B", expiration=600, start=0)
    assert pick(b, now=0) == "A"
    peer(b, "A").active = 2
    assert pick(b, now=1) == "B" and members(b) == "BA"
    b.edit_dest(peer(b, "A"), 0)
    assert pick(b, now=602) == "B" and members(b) == "A"


def test_new_address_and_no_destination() -> None:
    b = lblcr("A:0 B!")
    assert pick(b) == "-" and len(b.table) == 0
    b = lblcr("A B")
    assert pick(b, "198.18.5.1") == "A" and pick(b, "198.18.5.2") == "A"
    assert len(b.table) == 2


def test_entries_expire_like_lblc() -> None:
    b = lblcr("A B", expiration=100, start=0)
    assert pick(b, now=0) == "A"
    b.expire(1799)
    assert len(b.table) == 1
    b.expire(1800)
    assert len(b.table) == 0
