"""IPVS's per-connection state and per-server counters (PURE): the TCP state table and its
timeouts, the proxy events the user-space data plane maps onto it, the cumulative counters and
the rate estimator.

TCP states (reference l4-ipvs.md §2.2, `ip_vs_proto_tcp.c`): a connection moves through the
kernel's table indexed by [direction][rst|syn|fin|ack][state]; every segment also re-reads the
state's timeout (so `--set` reaches existing connections at their next segment, as in IPVS).
NAT connections use the INPUT (client → server) and OUTPUT (server → client) rows; DR and TUN
see only input and use INPUT_ONLY.

A full proxy sees socket events, not segments. Each event stands for the segments IPVS would
have seen in NAT mode (`PROXY_SEGMENTS`):

========================  ==============================  ==============================
proxy event               segments                        from ESTABLISHED / to
========================  ==============================  ==============================
ACCEPT (client accepted)  INPUT syn                       NONE → SYN_RECV
CONNECTED (server up)     OUTPUT syn (the SYN-ACK),       SYN_RECV → ESTABLISHED
                          INPUT ack
CLIENT_DATA / SERVER_DATA INPUT ack / OUTPUT ack          (refresh the timer)
CLIENT_FIN                INPUT fin                       ESTABLISHED → CLOSE_WAIT
SERVER_FIN                OUTPUT fin                      ESTABLISHED → FIN_WAIT
                          (the other side's FIN then)     → TIME_WAIT
CLIENT_RST / SERVER_RST   INPUT rst / OUTPUT rst          → CLOSE
(a refused connect is SERVER_RST: SYN_RECV → CLOSE)
========================  ==============================  ==============================

As in IPVS the entry outlives the sockets: after a clean close it stays in TIME_WAIT for its
timeout and counts as inactive until then.

The estimator is `ip_vs_est.c`'s: every 2 s, per counter, ``rate = delta << 9`` for conns and
packets (scaled by 2^10, per 2 s), ``delta << 4`` for bytes (scaled by 2^5, per 2 s), and
``avg += (rate - avg) >> 2`` (EWMA, W = 1/4, arithmetic shift); read back as
``(avg + 0x1FF) >> 10`` and ``(avg + 0xF) >> 5``. `-Z` keeps the counters running but takes the
current values as the zero point (kstats0) and zeroes the rates.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from halb.l4.model import Stats, Timeouts


class TcpState(enum.IntEnum):
    NONE = 0
    ESTABLISHED = 1
    SYN_SENT = 2
    SYN_RECV = 3
    FIN_WAIT = 4
    TIME_WAIT = 5
    CLOSE = 6
    CLOSE_WAIT = 7
    LAST_ACK = 8
    LISTEN = 9
    SYNACK = 10


class Direction(enum.IntEnum):
    INPUT = 0  # client → real server
    OUTPUT = 1  # real server → client (NAT only)
    INPUT_ONLY = 2  # DR / TUN: the director never sees the replies


class Flag(enum.IntEnum):
    SYN = 0
    FIN = 1
    ACK = 2
    RST = 3


_S = TcpState
sNO, sES, sSS, sSR, sFW, sTW, sCL, sCW, sLA, sLI, sSA = (
    _S.NONE, _S.ESTABLISHED, _S.SYN_SENT, _S.SYN_RECV, _S.FIN_WAIT, _S.TIME_WAIT, _S.CLOSE,
    _S.CLOSE_WAIT, _S.LAST_ACK, _S.LISTEN, _S.SYNACK)

# tcp_states[] of ip_vs_proto_tcp.c: [direction][flag] -> next state, indexed by the state
TCP_STATES: tuple[tuple[tuple[TcpState, ...], ...], ...] = (
    (  # INPUT       sNO  sES  sSS  sSR  sFW  sTW  sCL  sCW  sLA  sLI  sSA
        (sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSR),  # syn
        (sCL, sCW, sSS, sTW, sTW, sTW, sCL, sCW, sLA, sLI, sTW),  # fin
        (sCL, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES),  # ack
        (sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sSR),  # rst
    ),
    (  # OUTPUT
        (sSS, sES, sSS, sSR, sSS, sSS, sSS, sSS, sSS, sLI, sSR),
        (sTW, sFW, sSS, sTW, sFW, sTW, sCL, sTW, sLA, sLI, sTW),
        (sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sLA, sES, sES),
        (sCL, sCL, sSS, sCL, sCL, sTW, sCL, sCL, sCL, sCL, sCL),
    ),
    (  # INPUT-ONLY
        (sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSR),
        (sCL, sFW, sSS, sTW, sFW, sTW, sCL, sCW, sLA, sLI, sTW),
        (sCL, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES),
        (sCL, sCL, sSS, sCL, sCL, sTW, sCL, sCL, sCL, sCL, sCL),
    ),
)


def next_state(state: TcpState, direction: Direction, flag: Flag) -> TcpState:
    return TCP_STATES[direction][flag][state]


# tcp_timeouts[] (seconds); --set writes ESTABLISHED and FIN_WAIT
TCP_TIMEOUTS: dict[TcpState, int] = {
    TcpState.NONE: 2,
    TcpState.ESTABLISHED: 15 * 60,
    TcpState.SYN_SENT: 2 * 60,
    TcpState.SYN_RECV: 1 * 60,
    TcpState.FIN_WAIT: 2 * 60,
    TcpState.TIME_WAIT: 2 * 60,
    TcpState.CLOSE: 10,
    TcpState.CLOSE_WAIT: 60,
    TcpState.LAST_ACK: 30,
    TcpState.LISTEN: 2 * 60,
    TcpState.SYNACK: 2 * 60,
}
UDP_TIMEOUT = 5 * 60


class ProxyEvent(enum.IntEnum):
    ACCEPT = 0
    CONNECTED = 1
    CLIENT_DATA = 2
    SERVER_DATA = 3
    CLIENT_FIN = 4
    SERVER_FIN = 5
    CLIENT_RST = 6
    SERVER_RST = 7


_IN, _OUT = Direction.INPUT, Direction.OUTPUT
# indexed by ProxyEvent (a tuple: IntEnum indexes it without Enum.__hash__ on the hot path)
PROXY_SEGMENTS: tuple[tuple[tuple[Direction, Flag], ...], ...] = (
    ((_IN, Flag.SYN),),  # ACCEPT
    ((_OUT, Flag.SYN), (_IN, Flag.ACK)),  # CONNECTED
    ((_IN, Flag.ACK),),  # CLIENT_DATA
    ((_OUT, Flag.ACK),),  # SERVER_DATA
    ((_IN, Flag.FIN),),  # CLIENT_FIN
    ((_OUT, Flag.FIN),),  # SERVER_FIN
    ((_IN, Flag.RST),),  # CLIENT_RST
    ((_OUT, Flag.RST),),  # SERVER_RST
)


class TimeoutTable:
    """The protocol timeout tables of one director (what `--set` and `--timeout` act on)."""

    __slots__ = ("tcp", "udp")

    def __init__(self) -> None:
        # indexed by TcpState (a list: no Enum.__hash__ per segment)
        self.tcp: list[int] = [TCP_TIMEOUTS[TcpState(i)] for i in range(len(TcpState))]
        self.udp = UDP_TIMEOUT

    def set(self, t: Timeouts) -> None:
        """ip_vs_set_timeout(): a 0 leaves that entry unchanged."""
        if t.tcp:
            self.tcp[TcpState.ESTABLISHED] = t.tcp
        if t.tcpfin:
            self.tcp[TcpState.FIN_WAIT] = t.tcpfin
        if t.udp:
            self.udp = t.udp

    def view(self) -> Timeouts:
        return Timeouts(self.tcp[TcpState.ESTABLISHED], self.tcp[TcpState.FIN_WAIT], self.udp)


# -- counters and the estimator ---------------------------------------------------------------

EST_INTERVAL = 2.0


@dataclass(slots=True)
class Counters:
    """Cumulative counters (ip_vs_kstats) with their -Z zero point (kstats0) and estimator."""

    conns: int = 0
    inpkts: int = 0
    outpkts: int = 0
    inbytes: int = 0
    outbytes: int = 0
    # -Z zero point
    z_conns: int = 0
    z_inpkts: int = 0
    z_outpkts: int = 0
    z_inbytes: int = 0
    z_outbytes: int = 0
    # estimator (struct ip_vs_estimator): last readings and scaled averages
    last_conns: int = 0
    last_inpkts: int = 0
    last_outpkts: int = 0
    last_inbytes: int = 0
    last_outbytes: int = 0
    cps: int = 0
    inpps: int = 0
    outpps: int = 0
    inbps: int = 0
    outbps: int = 0
    seen: Stats | None = None  # the last reading absorbed from a kernel data plane

    def stats(self) -> Stats:
        """What -L --stats prints: the counters since the last -Z."""
        return Stats(self.conns - self.z_conns, self.inpkts - self.z_inpkts,
                     self.outpkts - self.z_outpkts, self.inbytes - self.z_inbytes,
                     self.outbytes - self.z_outbytes)

    def rates(self) -> Stats:
        """ip_vs_read_estimator(): the decoded averages (-L --rate)."""
        return Stats((self.cps + 0x1FF) >> 10, (self.inpps + 0x1FF) >> 10,
                     (self.outpps + 0x1FF) >> 10, (self.inbps + 0xF) >> 5,
                     (self.outbps + 0xF) >> 5)

    def estimate(self) -> None:
        """One 2-second step of estimation_timer()."""
        rate = (self.conns - self.last_conns) << 9
        self.last_conns = self.conns
        self.cps += (rate - self.cps) >> 2
        rate = (self.inpkts - self.last_inpkts) << 9
        self.last_inpkts = self.inpkts
        self.inpps += (rate - self.inpps) >> 2
        rate = (self.outpkts - self.last_outpkts) << 9
        self.last_outpkts = self.outpkts
        self.outpps += (rate - self.outpps) >> 2
        rate = (self.inbytes - self.last_inbytes) << 4
        self.last_inbytes = self.inbytes
        self.inbps += (rate - self.inbps) >> 2
        rate = (self.outbytes - self.last_outbytes) << 4
        self.last_outbytes = self.outbytes
        self.outbps += (rate - self.outbps) >> 2

    def zero(self) -> None:
        """ip_vs_zero_stats(): the current counters become the zero point; rates are zeroed."""
        self.z_conns, self.z_inpkts, self.z_outpkts = self.conns, self.inpkts, self.outpkts
        self.z_inbytes, self.z_outbytes = self.inbytes, self.outbytes
        self.last_conns, self.last_inpkts, self.last_outpkts = (self.conns, self.inpkts,
                                                                self.outpkts)
        self.last_inbytes, self.last_outbytes = self.inbytes, self.outbytes
        self.cps = self.inpps = self.outpps = self.inbps = self.outbps = 0

    def absorb(self, total: Stats) -> None:
        """Add what a kernel data plane counted since its previous reading (`total` is its
        cumulative reading; when it went down, the data plane's counters restarted)."""
        seen = self.seen or Stats()
        for name in ("conns", "inpkts", "outpkts", "inbytes", "outbytes"):
            new, before = getattr(total, name), getattr(seen, name)
            setattr(self, name, getattr(self, name) + (new - before if new >= before else new))
        self.seen = total
