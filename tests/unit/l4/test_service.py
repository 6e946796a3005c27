"""The director's table (l4/service.py, l4/conntrack.py): commands with ipvsadm's errors,
persistence, quiescing, thresholds, TCP/UDP states and timeouts, stats and the estimator.

Pure: no sockets, time and randomness passed in. Addresses are only text here.
"""

from __future__ import annotations

import errno
import random
from typing import ClassVar

import pytest

from halb.balancing.base import Balancer, Peer, PickContext, register
from halb.l4.conntrack import (
    TCP_STATES,
    Counters,
    Direction,
    Flag,
    ProxyEvent,
    TcpState,
    next_state,
)
from halb.l4.dataplane.base import DestCounts, Feedback
from halb.l4.model import (
    Command,
    DestSpec,
    Forward,
    Op,
    Proto,
    ServiceKey,
    ServiceSpec,
    Stats,
    Timeouts,
)
from halb.l4.service import Conn, DirectorError, ServiceTable


@register
class _TestRR(Balancer):
    """IPVS rr's rules in a few lines (skip weight 0 and overloaded; cursor in list order), so
    these tests do not depend on the IPVS scheduler modules."""

    name: ClassVar[str] = "l4test_rr"

    def __init__(self, peers, backup=(), **params) -> None:  # type: ignore[no-untyped-def]
        super().__init__(peers, backup, **params)
        self.pos = -1

    def pick(self, ctx: PickContext) -> Peer | None:
        n = len(self.peers)
        for step in range(1, n + 1):
            i = (self.pos + step) % n
            p = self.peers[i]
            if p.weight > 0 and not p.overloaded:
                self.pos = i
                return p
        return None


VIP = "198.18.0.100"
KEY = ServiceKey(Proto.TCP, VIP, 80)
UKEY = ServiceKey(Proto.UDP, VIP, 53)
RS = ["198.18.1.1", "198.18.1.2", "198.18.1.3"]
RNG = random.Random(1)


def svc_cmd(op: Op, key: ServiceKey = KEY, **kw: object) -> Command:
    return Command(op, service=ServiceSpec(key, **{"scheduler": "l4test_rr", **kw}))


def dest_cmd(op: Op, addr: str, key: ServiceKey = KEY, **kw: object) -> Command:
    port = kw.pop("port", key.port)
    return Command(op, service=ServiceSpec(key),
                   dest=DestSpec(addr, port, Forward.MASQ, **kw))  # type: ignore[arg-type]


def table(*rs: str, key: ServiceKey = KEY, weights: tuple[int, ...] = (),
          **svc: object) -> ServiceTable:
    t = ServiceTable()
    t.apply(svc_cmd(Op.ADD_SERVICE, key, **svc), 0.0)
    for i, addr in enumerate(rs):
        w = weights[i] if weights else 1
        t.apply(dest_cmd(Op.ADD_DEST, addr, key, weight=w), 0.0)
    return t


def connect(t: ServiceTable, client: tuple[str, int], now: float = 0.0,
            key: ServiceKey = KEY) -> Conn:
    cp = t.schedule(t.services[key], client, now, RNG)
    assert cp is not None
    t.event(cp, ProxyEvent.ACCEPT, now)
    t.event(cp, ProxyEvent.CONNECTED, now)
    return cp


def counts(t: ServiceTable, key: ServiceKey = KEY) -> dict[str, tuple[int, int, int]]:
    v = t.view()
    svc = next(s for s in v.services if s.spec.key == key)
    return {d.spec.addr: (d.active, d.inactive, d.persist) for d in svc.dests}


# -- commands --------------------------------------------------------------------------------


def code(t: ServiceTable, cmd: Command) -> int:
    with pytest.raises(DirectorError) as e:
        t.apply(cmd, 0.0)
    return e.value.errno


def test_command_errors_are_the_kernels() -> None:
    t = table(RS[0])
    other = ServiceKey(Proto.TCP, VIP, 8080)
    assert code(t, svc_cmd(Op.ADD_SERVICE)) == errno.EEXIST
    for op in (Op.EDIT_SERVICE, Op.DEL_SERVICE, Op.ZERO):
        assert code(t, svc_cmd(op, other)) == errno.ESRCH
    for op in (Op.ADD_DEST, Op.EDIT_DEST, Op.DEL_DEST):
        assert code(t, dest_cmd(op, RS[1], other)) == errno.ESRCH
    # the same address under another protocol is another service
    assert code(t, svc_cmd(Op.DEL_SERVICE, ServiceKey(Proto.UDP, VIP, 80))) == errno.ESRCH
    assert code(t, dest_cmd(Op.ADD_DEST, RS[0])) == errno.EEXIST
    assert code(t, dest_cmd(Op.EDIT_DEST, RS[1])) == errno.ENOENT
    assert code(t, dest_cmd(Op.DEL_DEST, RS[1])) == errno.ENOENT
    assert code(t, dest_cmd(Op.DEL_DEST, RS[0], port=81)) == errno.ENOENT  # the port counts
    assert code(t, dest_cmd(Op.ADD_DEST, RS[1], weight=-1)) == errno.ERANGE
    assert code(t, dest_cmd(Op.ADD_DEST, RS[1], weight=65536)) == errno.ERANGE
    assert code(t, dest_cmd(Op.ADD_DEST, RS[1], u_threshold=5, l_threshold=6)) == errno.ERANGE
    assert code(t, dest_cmd(Op.ADD_DEST, RS[1], l_threshold=6)) == errno.ERANGE  # u = 0
    assert code(t, svc_cmd(Op.ADD_SERVICE, other, scheduler="nonesuch")) == errno.ENOENT
    assert code(t, svc_cmd(Op.ADD_SERVICE, other, scheduler="hash")) == errno.ENOENT  # HTTP key
    assert code(t, svc_cmd(Op.ADD_SERVICE, other, pe="sip")) == errno.ENOENT
    assert code(t, svc_cmd(Op.ADD_SERVICE, other, persistent=1, netmask="255.0.255.0")) \
        == errno.EINVAL
    zero = ServiceKey(Proto.TCP, VIP, 0)
    assert code(t, svc_cmd(Op.ADD_SERVICE, zero)) == errno.EINVAL  # port 0, not persistent
    t.apply(svc_cmd(Op.ADD_SERVICE, zero, persistent=60), 0.0)
    assert {s.spec.key for s in t.view().services} == {KEY, zero}
    # a failed command changed nothing
    assert counts(t) == {RS[0]: (0, 0, 0)}


def test_edit_delete_clear() -> None:
    t = table(RS[0], RS[1])
    t.apply(svc_cmd(Op.EDIT_SERVICE, persistent=300, netmask="255.255.255.0"), 0.0)
    (svc,) = t.view().services
    assert (svc.spec.persistent, svc.spec.netmask) == (300, "255.255.255.0")
    t.apply(dest_cmd(Op.EDIT_DEST, RS[1], weight=7, u_threshold=10, l_threshold=5), 0.0)
    d = {d.spec.addr: d.spec for d in t.view().services[0].dests}
    assert (d[RS[1]].weight, d[RS[1]].u_threshold, d[RS[1]].l_threshold) == (7, 10, 5)
    assert t.services[KEY].find(RS[1], 80).peer.weight == 7  # type: ignore[union-attr]
    t.apply(dest_cmd(Op.DEL_DEST, RS[0]), 0.0)
    assert [d.spec.addr for d in t.view().services[0].dests] == [RS[1]]
    t.apply(svc_cmd(Op.DEL_SERVICE), 0.0)
    assert t.view().services == ()
    t = table(RS[0])
    t.apply(svc_cmd(Op.ADD_SERVICE, UKEY), 0.0)
    t.apply(Command(Op.CLEAR), 0.0)
    assert t.view().services == ()


def test_new_real_servers_go_to_the_head_of_the_list() -> None:
    """__ip_vs_update_dest: list_add_rcu(&dest->n_list, &svc->destinations)."""
    t = table(*RS)
    assert [d.spec.addr for d in t.view().services[0].dests] == list(reversed(RS))
    assert [p.host for p in t.services[KEY].balancer.peers] == list(reversed(RS))


def test_set_timeouts_zero_keeps_the_entry() -> None:
    t = ServiceTable()
    assert t.view().timeouts == Timeouts(900, 120, 300)
    t.apply(Command(Op.SET_TIMEOUTS, timeouts=Timeouts(0, 30, 0)), 0.0)
    assert t.view().timeouts == Timeouts(900, 30, 300)
    t.apply(Command(Op.SET_TIMEOUTS, timeouts=Timeouts(600, 0, 20)), 0.0)
    assert t.view().timeouts == Timeouts(600, 30, 20)
    with pytest.raises(DirectorError) as e:
        t.apply(Command(Op.SET_TIMEOUTS, timeouts=Timeouts(-1, 0, 0)), 0.0)
    assert e.value.errno == errno.EINVAL


# -- scheduling, quiescing, thresholds -------------------------------------------------------


def test_weight_zero_drains() -> None:
    t = table(*RS)
    conns = [connect(t, ("198.18.9.1", 1000 + i)) for i in range(6)]
    assert {c.dest.spec.addr for c in conns} == set(RS)
    t.apply(dest_cmd(Op.EDIT_DEST, RS[0], weight=0), 1.0)
    new = [connect(t, ("198.18.9.2", 2000 + i), 1.0) for i in range(10)]
    assert RS[0] not in {c.dest.spec.addr for c in new}
    # its existing connections go on: traffic counted, state kept, still active
    old = [c for c in conns if c.dest.spec.addr == RS[0]]
    assert len(old) == 2
    t.inbound(old[0], 100, 2.0)
    t.outbound(old[0], 200, 2.0)
    assert old[0].state is TcpState.ESTABLISHED
    assert counts(t)[RS[0]] == (2, 0, 0)
    d0 = next(d for d in t.view().services[0].dests if d.spec.addr == RS[0])
    assert (d0.stats.inbytes, d0.stats.outbytes, d0.spec.weight) == (100, 200, 0)
    # all quiesced: no destination
    for a in RS[1:]:
        t.apply(dest_cmd(Op.EDIT_DEST, a, weight=0), 3.0)
    assert t.schedule(t.services[KEY], ("198.18.9.3", 1), 3.0, RNG) is None


@pytest.mark.parametrize(("u", "lo", "clear_below"), [(4, 0, 3), (3, 0, 3), (10, 0, 8),
                                                      (4, 1, 1), (4, 2, 2)])
def test_thresholds_set_and_clear_overload(u: int, lo: int, clear_below: int) -> None:
    """Set when totalconns >= u after a bind; on unbind clear when totalconns < l, or
    totalconns*4 < u*3 without l (§2.6)."""
    t = table(RS[0], RS[1])
    t.apply(dest_cmd(Op.EDIT_DEST, RS[0], u_threshold=u, l_threshold=lo), 0.0)
    rs0 = t.services[KEY].find(RS[0], 80)
    assert rs0 is not None
    mine: list[Conn] = []
    i = 0
    while len(mine) < u:
        assert not rs0.overloaded
        cp = connect(t, ("198.18.9.1", 1000 + i))
        i += 1
        if cp.dest is rs0:
            mine.append(cp)
    assert rs0.overloaded and t.view().services[0].dests[1].overloaded
    # overloaded: never picked
    for j in range(5):
        assert connect(t, ("198.18.9.2", 3000 + j)).dest is not rs0
    # close its connections one by one (RST -> CLOSE, then expiry unbinds)
    while mine:
        cp = mine.pop()
        t.event(cp, ProxyEvent.CLIENT_RST, 10.0)
        t.close(cp)
        total = rs0.active + rs0.inactive
        assert rs0.overloaded == (total >= clear_below), (total, rs0.overloaded)


def test_edit_clears_overload_only_when_raising_or_removing_the_threshold() -> None:
    t = table(RS[0])
    t.apply(dest_cmd(Op.EDIT_DEST, RS[0], u_threshold=2), 0.0)
    rs0 = t.services[KEY].dests[0]
    connect(t, ("198.18.9.1", 1))
    connect(t, ("198.18.9.1", 2))
    assert rs0.overloaded
    t.apply(dest_cmd(Op.EDIT_DEST, RS[0], u_threshold=1), 0.0)  # lowered: stays
    assert rs0.overloaded
    t.apply(dest_cmd(Op.EDIT_DEST, RS[0], u_threshold=5), 0.0)  # raised: cleared
    assert not rs0.overloaded
    connect(t, ("198.18.9.1", 3))
    connect(t, ("198.18.9.1", 4))
    connect(t, ("198.18.9.1", 5))
    assert rs0.overloaded
    t.apply(dest_cmd(Op.EDIT_DEST, RS[0]), 0.0)  # no threshold
    assert not rs0.overloaded


# -- persistence -----------------------------------------------------------------------------


def test_persistence_keeps_a_client_on_one_server_and_expires() -> None:
    t = table(*RS, persistent=300)
    a, b = "198.18.9.1", "198.18.9.2"
    first = [connect(t, (a, 1000 + i), float(i)) for i in range(5)]
    assert len({c.dest.spec.addr for c in first}) == 1
    other = connect(t, (b, 5000), 5.0)
    assert other.dest is not first[0].dest  # rr moved on for the new client
    tmpl = [c for c in t.view(6.0, connections=True).connections if c.template]
    assert {(c.client, c.state, c.dest[0]) for c in tmpl} == {
        ((a, 0), "NONE", first[0].dest.spec.addr), ((b, 0), "NONE", other.dest.spec.addr)}
    assert counts(t)[first[0].dest.spec.addr][2] == 1  # PersistConn
    # close a's connections: the entries go at TIME_WAIT's end (120 s), the template at its own
    for c in first:
        t.event(c, ProxyEvent.CLIENT_FIN, 6.0)
        t.event(c, ProxyEvent.SERVER_FIN, 6.0)
        assert c.state is TcpState.TIME_WAIT
    t.tick(6.0 + 120)
    assert all(c not in t.entries for c in first)
    tmpl_a = next(c for c in t.entries if c.template and c.client[0] == a)
    assert tmpl_a.expires == pytest.approx(4.0 + 300)  # last used at t=4
    t.tick(303.0)
    assert tmpl_a in t.entries
    t.tick(305.0)
    assert tmpl_a not in t.entries
    assert counts(t)[first[0].dest.spec.addr][2] == 0
    # a new connection schedules afresh (rr cursor moved on)
    again = connect(t, (a, 7000), 306.0)
    assert again.control is not None and again.control is not tmpl_a


def test_template_lives_while_it_controls_connections() -> None:
    t = table(*RS, persistent=10)
    cp = connect(t, ("198.18.9.1", 1000))
    ct = cp.control
    assert ct is not None and ct.n_control == 1
    for now in (5.0, 11.0, 25.0, 100.0):  # data keeps the connection; the template waits
        t.inbound(cp, 10, now)
        t.tick(now)
        assert ct in t.entries
    assert ct.expires > 100.0
    t.event(cp, ProxyEvent.CLIENT_RST, 101.0)  # CLOSE: 10 s
    t.tick(111.0)
    assert cp not in t.entries and ct.n_control == 0
    t.tick(ct.expires)
    assert ct not in t.entries


def test_netmask_groups_clients() -> None:
    t = table(*RS, persistent=300, netmask="255.255.255.0")
    same = {connect(t, (f"198.18.7.{i}", 40000 + i)).dest.spec.addr for i in range(1, 30)}
    assert len(same) == 1
    elsewhere = connect(t, ("198.18.8.1", 1))
    assert elsewhere.dest.spec.addr not in same
    snets = {c.client for c in t.entries if c.template}
    assert snets == {("198.18.7.0", 0), ("198.18.8.0", 0)}


def test_template_invalid_when_its_server_is_gone() -> None:
    t = table(*RS, persistent=300)
    cp = connect(t, ("198.18.9.1", 1000))
    gone = cp.dest.spec.addr
    expired: list[Conn] = []

    class Owner:
        def expired(self, conn: Conn) -> None:
            expired.append(conn)

    cp.owner = Owner()
    t.apply(dest_cmd(Op.DEL_DEST, gone), 1.0)
    assert expired == [cp]  # the data plane is told to close it
    assert all(c.dest.spec.addr != gone for c in t.entries)
    nxt = connect(t, ("198.18.9.1", 1001), 2.0)
    assert nxt.dest.spec.addr != gone


def test_quiesced_server_keeps_its_persistent_clients() -> None:
    """expire_quiescent_template=0 (the default): a template still sends new connections to a
    weight-0 server; with 1 it is dropped and the client rescheduled."""
    for expire, stays in ((False, True), (True, False)):
        t = table(*RS, persistent=300)
        t.expire_quiescent_template = expire
        cp = connect(t, ("198.18.9.1", 1000))
        addr = cp.dest.spec.addr
        t.apply(dest_cmd(Op.EDIT_DEST, addr, weight=0), 1.0)
        nxt = connect(t, ("198.18.9.1", 1001), 2.0)
        assert (nxt.dest.spec.addr == addr) is stays


def test_port_zero_and_ftp_templates_have_port_zero() -> None:
    key = ServiceKey(Proto.TCP, VIP, 21)
    t = table(RS[0], key=key, persistent=60)
    connect(t, ("198.18.9.1", 5), key=key)
    (ct,) = [c for c in t.entries if c.template]
    assert (ct.vport, ct.dport) == (0, 0)


# -- connection states -----------------------------------------------------------------------


def test_the_state_table_is_ipvs_tcp_states() -> None:
    """A few cells of ip_vs_proto_tcp.c's table, read across."""
    S = TcpState
    assert next_state(S.NONE, Direction.INPUT, Flag.SYN) is S.SYN_RECV
    assert next_state(S.SYN_RECV, Direction.INPUT, Flag.ACK) is S.ESTABLISHED
    assert next_state(S.ESTABLISHED, Direction.INPUT, Flag.FIN) is S.CLOSE_WAIT
    assert next_state(S.ESTABLISHED, Direction.OUTPUT, Flag.FIN) is S.FIN_WAIT
    assert next_state(S.ESTABLISHED, Direction.INPUT_ONLY, Flag.FIN) is S.FIN_WAIT
    assert next_state(S.TIME_WAIT, Direction.OUTPUT, Flag.RST) is S.TIME_WAIT
    assert next_state(S.LISTEN, Direction.OUTPUT, Flag.ACK) is S.ESTABLISHED
    assert len(TCP_STATES) == 3 and all(len(r) == 4 and all(len(c) == 11 for c in r)
                                        for r in TCP_STATES)


def _states(t: ServiceTable, events: list[ProxyEvent]) -> list[tuple[str, float, bool]]:
    cp = t.schedule(t.services[KEY], ("198.18.9.1", 1000), 0.0, RNG)
    assert cp is not None
    out = []
    for ev in events:
        t.event(cp, ev, 0.0)
        out.append((cp.state_name, cp.timeout, cp.active))
    return out


def test_proxy_events_walk_the_states_with_their_timeouts() -> None:
    E = ProxyEvent
    t = table(RS[0])
    assert _states(t, [E.ACCEPT, E.CONNECTED, E.CLIENT_DATA, E.SERVER_DATA, E.CLIENT_FIN,
                       E.SERVER_DATA, E.SERVER_FIN]) == [
        ("SYN_RECV", 60, False), ("ESTABLISHED", 900, True), ("ESTABLISHED", 900, True),
        ("ESTABLISHED", 900, True), ("CLOSE_WAIT", 60, False), ("CLOSE_WAIT", 60, False),
        ("TIME_WAIT", 120, False)]
    t = table(RS[0])
    t.apply(Command(Op.SET_TIMEOUTS, timeouts=Timeouts(1000, 30, 0)), 0.0)
    assert _states(t, [E.ACCEPT, E.CONNECTED, E.SERVER_FIN, E.CLIENT_FIN]) == [
        ("SYN_RECV", 60, False), ("ESTABLISHED", 1000, True), ("FIN_WAIT", 30, False),
        ("TIME_WAIT", 120, False)]
    t = table(RS[0])
    assert _states(t, [E.ACCEPT, E.SERVER_RST]) == [("SYN_RECV", 60, False),
                                                    ("CLOSE", 10, False)]  # refused
    t = table(RS[0])
    assert _states(t, [E.ACCEPT, E.CONNECTED, E.CLIENT_RST]) == [
        ("SYN_RECV", 60, False), ("ESTABLISHED", 900, True), ("CLOSE", 10, False)]


def test_active_inactive_counts_and_expiry() -> None:
    t = table(RS[0])
    cp = t.schedule(t.services[KEY], ("198.18.9.1", 1000), 0.0, RNG)
    assert cp is not None
    assert counts(t)[RS[0]] == (0, 1, 0)  # a new entry is inactive
    t.event(cp, ProxyEvent.ACCEPT, 0.0)
    t.event(cp, ProxyEvent.CONNECTED, 0.0)
    assert counts(t)[RS[0]] == (1, 0, 0)
    gone: list[Conn] = []

    class Owner:
        def expired(self, conn: Conn) -> None:
            gone.append(conn)

    cp.owner = Owner()
    t.tick(899.0)
    assert cp in t.entries
    t.inbound(cp, 1, 899.0)  # traffic re-arms the timer
    assert t.tick(1798.0) == [] and cp in t.entries
    assert t.tick(1799.0) == [cp] and gone == [cp]  # idle for the ESTABLISHED timeout
    assert counts(t)[RS[0]] == (0, 0, 0)


def test_udp_entries() -> None:
    t = table(RS[0], RS[1], key=UKEY)
    svc = t.services[UKEY]
    cp = t.datagram(svc, ("198.18.9.1", 5353), 40, 0.0, RNG)
    assert cp is not None and cp.state_name == "UDP" and cp.timeout == 300
    assert t.datagram(svc, ("198.18.9.1", 5353), 40, 100.0, RNG) is cp  # same flow
    other = t.datagram(svc, ("198.18.9.1", 5354), 40, 100.0, RNG)
    assert other is not None and other.dest is not cp.dest
    t.outbound(cp, 80, 150.0)
    v = counts(t, UKEY)
    assert v[cp.dest.spec.addr] == (0, 1, 0)  # UDP entries count as inactive
    rows = t.view(160.0, connections=True).connections
    assert {(r.proto, r.state, r.client[1], round(r.expires)) for r in rows} == {
        ("UDP", "UDP", 5353, 290), ("UDP", "UDP", 5354, 240)}
    t.apply(Command(Op.SET_TIMEOUTS, timeouts=Timeouts(0, 0, 20)), 160.0)
    t.datagram(svc, ("198.18.9.1", 5353), 1, 170.0, RNG)
    assert cp.timeout == 20
    t.tick(400.0)
    assert t.entries == {}


# -- stats and rates -------------------------------------------------------------------------


def test_stats_count_conns_packets_bytes() -> None:
    t = table(RS[0], RS[1])
    a = connect(t, ("198.18.9.1", 1))
    b = connect(t, ("198.18.9.1", 2))
    for _ in range(3):
        t.inbound(a, 100, 1.0)
    t.outbound(a, 1000, 1.0)
    t.inbound(b, 7, 1.0)
    (svc,) = t.view().services
    d = {x.spec.addr: x.stats for x in svc.dests}
    assert d[a.dest.spec.addr] == Stats(1, 3, 1, 300, 1000)
    assert d[b.dest.spec.addr] == Stats(1, 1, 0, 7, 0)
    assert svc.stats == Stats(2, 4, 1, 307, 1000)
    t.apply(svc_cmd(Op.ZERO), 2.0)
    (svc,) = t.view().services
    assert svc.stats == Stats() and all(x.stats == Stats() for x in svc.dests)
    t.inbound(a, 5, 3.0)
    assert t.view().services[0].stats == Stats(0, 1, 0, 5, 0)


def test_estimator_follows_ip_vs_est() -> None:
    """Worked by hand from estimation_timer(): 1000 conns and 10000 bytes every 2 s."""
    c = Counters()
    seen = []
    for _ in range(3):
        c.conns += 1000
        c.inbytes += 10000
        c.estimate()
        seen.append((c.rates().conns, c.rates().inbytes))
    # cps: 512000/4 = 128000 -> (128000+511)>>10 = 125; 128000 + 96000 = 224000 -> 219;
    # 224000 + 72000 = 296000 -> 289.  inbps: 40000 -> 1250; 70000 -> 2187; 92500 -> 2891.
    assert seen == [(125, 1250), (219, 2187), (289, 2891)]
    for _ in range(60):
        c.conns += 1000
        c.inbytes += 10000
        c.estimate()
    assert c.rates().conns == 500 and c.rates().inbytes == 5000  # the real rate per second
    for _ in range(60):
        c.estimate()  # traffic stopped
    assert c.rates() == Stats()
    c.conns += 10
    c.zero()
    assert c.rates() == Stats() and c.stats() == Stats()


def test_table_steps_the_estimator_every_two_seconds() -> None:
    t = table(RS[0])
    cp = connect(t, ("198.18.9.1", 1))
    t.tick(0.0)
    for i in range(1, 201):
        t.inbound(cp, 1000, i * 0.5)
        t.tick(i * 0.5)  # 2 chunks per second: 2 pps, 2000 Bps
    r = t.view().services[0].rates
    assert (r.inpkts, r.inbytes) == (2, 2000)
    assert t.view().services[0].dests[0].rates.inbytes == 2000


# -- views and feedback ----------------------------------------------------------------------


def test_view_lists_connections_and_templates() -> None:
    t = table(RS[0], persistent=60)
    cp = connect(t, ("198.18.9.1", 1234), 10.0)
    rows = t.view(20.0, connections=True).connections
    assert [(r.proto, r.state, r.client, r.virtual, r.dest, r.template, round(r.expires))
            for r in rows] == [
        ("TCP", "NONE", ("198.18.9.1", 0), (VIP, 80), (RS[0], 80), True, 50),
        ("TCP", "ESTABLISHED", ("198.18.9.1", 1234), (VIP, 80), (RS[0], 80), False, 890)]
    assert cp in t.entries
    assert t.view(20.0).connections == ()


def test_absorb_kernel_feedback() -> None:
    t = table(RS[0], RS[1])
    t.apply(dest_cmd(Op.EDIT_DEST, RS[0], u_threshold=10), 0.0)
    fb = Feedback(dests=(DestCounts(KEY, RS[0], 80, 8, 3, Stats(20, 100, 90, 5000, 9000)),
                         DestCounts(KEY, "198.18.1.99", 80, 1, 1)))
    t.absorb(fb, 1.0)
    assert counts(t)[RS[0]] == (8, 3, 0)
    assert t.services[KEY].find(RS[0], 80).overloaded  # type: ignore[union-attr]
    (svc,) = t.view().services
    assert svc.stats == Stats(20, 100, 90, 5000, 9000)
    t.absorb(Feedback(dests=(DestCounts(KEY, RS[0], 80, 2, 1, Stats(25, 110, 95, 6000,
                                                                     9500)),)), 2.0)
    (svc,) = t.view().services
    assert svc.stats == Stats(25, 110, 95, 6000, 9500)
    assert not t.services[KEY].find(RS[0], 80).overloaded  # type: ignore[union-attr]
    assert counts(t)[RS[0]] == (2, 1, 0)


# -- the IPVS schedulers behind the table ----------------------------------------------------


def test_wrr_through_the_table_gives_the_kernel_sequence() -> None:
    """Weights A4 B3 C2 in list order A, B, C (added C, B, A: the head is the newest).

    Added one by one, wrr's dest_changed hook leaves cw at 2 (set when C alone made mw = 2),
    so the first round runs the cw = 1 pass (A B C) before the period AABABCABC begins."""
    a, b, c = RS
    t = ServiceTable()
    t.apply(svc_cmd(Op.ADD_SERVICE, scheduler="wrr"), 0.0)
    for addr, w in ((c, 2), (b, 3), (a, 4)):
        t.apply(dest_cmd(Op.ADD_DEST, addr, weight=w), 0.0)
    names = {a: "A", b: "B", c: "C"}
    seq = "".join(names[connect(t, ("198.18.9.1", 1000 + i)).dest.spec.addr]
                  for i in range(18))
    assert seq == "ABC" + "AABABCABC" + "AABABC"
    # a scheduler bound to a service that already has its servers (-E -s) starts on the period
    t.apply(svc_cmd(Op.EDIT_SERVICE, scheduler="rr"), 0.0)
    t.apply(svc_cmd(Op.EDIT_SERVICE, scheduler="wrr"), 0.0)
    seq = "".join(names[connect(t, ("198.18.9.2", 1000 + i)).dest.spec.addr]
                  for i in range(18))
    assert seq == "AABABCABC" * 2


def test_wlc_is_the_default_and_reads_the_table_counts() -> None:
    t = ServiceTable()
    t.apply(Command(Op.ADD_SERVICE, service=ServiceSpec(KEY)), 0.0)
    assert t.services[KEY].balancer.name == "wlc"
    for addr in RS[:2]:
        t.apply(dest_cmd(Op.ADD_DEST, addr), 0.0)
    first = connect(t, ("198.18.9.1", 1))  # established: overhead 256
    second = t.schedule(t.services[KEY], ("198.18.9.1", 2), 0.0, RNG)  # inactive: 1
    assert second is not None and second.dest is not first.dest
    # the head (RS[1]) has 1 active; the other 1 inactive: wlc picks the inactive one's server
    third = t.schedule(t.services[KEY], ("198.18.9.1", 3), 0.0, RNG)
    assert third is not None and third.dest is second.dest


def test_sched_flags_reach_the_scheduler() -> None:
    t = ServiceTable()
    t.apply(svc_cmd(Op.ADD_SERVICE, scheduler="sh", sched_flags=("sh-port",)), 0.0)
    for addr in RS:
        t.apply(dest_cmd(Op.ADD_DEST, addr), 0.0)
    got = {connect(t, ("198.18.9.1", 1000 + i)).dest.spec.addr for i in range(40)}
    assert len(got) > 1  # the client port is hashed: one client spreads
    t2 = ServiceTable()
    t2.apply(svc_cmd(Op.ADD_SERVICE, scheduler="sh"), 0.0)
    for addr in RS:
        t2.apply(dest_cmd(Op.ADD_DEST, addr), 0.0)
    assert len({connect(t2, ("198.18.9.1", 1000 + i)).dest.spec.addr for i in range(40)}) == 1
    other = ServiceKey(Proto.TCP, VIP, 81)
    assert code(t, svc_cmd(Op.ADD_SERVICE, other, scheduler="wlc",
                           sched_flags=("sh-port",))) == errno.EINVAL
