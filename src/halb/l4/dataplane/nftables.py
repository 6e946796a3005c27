"""The kernel data plane (root): the director's table as halb-owned nftables rules.

The kernel forwards; halb only writes rules and reads counts. On every change of the table
(`sync`) the services are planned (l4/nft_plan.py: each IPVS scheduler turned into a numgen
sequence or a jhash bucket table) and rendered (l4/nft_rules.py) into one `nft -f -`
transaction per family that replaces the rules atomically: ``table ip halb`` for NAT services
(``-m``), ``table netdev halb`` for DR services (``-g``) on the ingress of the interfaces the
real servers and the VIP are on. Nothing is written when the rendering did not change.

Every tick (`collect`, about once a second) it reads what the kernel knows:

* NAT: the conntrack table (/proc/net/nf_conntrack, else `conntrack -L -o extended`): entries
  carrying a halb mark, ESTABLISHED counted as active and every other state as inactive (UDP:
  inactive), as IPVS counts; they are also the `ipvsadm -L -c` listing. Reading a big table
  costs (about 0.1 s of CPU per 13,000 entries): it is read at most as often as keeps that
  cost under CT_SHARE (5 %) of one CPU, every tick while it is small;
* DR: halb's flow maps (flows of the c<N> sets, which saw a FIN or RST, are inactive), read
  under the same CT_SHARE budget (a flow map holds an element per connection);
* the per real server counters (conns, in and out packets and bytes) for `--stats` / `--rate`;
* the persistence maps, listed by `-L -c` as templates (state NONE, client port 0).

After the director folds that into its table, the count-driven schedulers (lc, wlc, sed, nq,
ovf, fo, lblc, lblcr, twos) and the -x/-y thresholds are planned again from the new counts, so
the kernel's sequence follows them within a tick.

Start deletes any halb table left by a crashed run (and, with conntrack-tools installed, the
conntrack entries it marked); the first NAT service switches ip_forward on; stop deletes the
tables (the ruleset, the counters, the persistence and flow maps with them) and puts ip_forward
back as it found it.
Conntrack entries of NAT connections stay until they time out, as the kernel keeps them.

NAT masquerade: with ``snat="auto"`` (the default) a real server gets source NAT when it is
reached through the interface that holds the VIP (a one-armed director, where its replies would
bypass the director otherwise); classic two-armed LVS-NAT, where the real servers route through
the director, keeps the client's address. ``"always"`` / ``"never"`` force it (environment:
HALB_NFT_SNAT).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import json
import logging
import os
import re
import shutil
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from halb.l4 import nft_plan, nft_rules
from halb.l4.dataplane.base import DataPlane, DataPlaneError, DestCounts, Feedback
from halb.l4.model import ConnView, DestSpec, Forward, Proto, ServiceKey, ServiceSpec, Stats
from halb.l4.nft_rules import Pick, RuleDest, RuleService, Ruleset

if TYPE_CHECKING:
    from halb.l4.service import ServiceTable, VirtualService

log = logging.getLogger("halb.l4.nftables")

CONNTRACK_PROC = "/proc/net/nf_conntrack"
IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"
NFT_TIMEOUT = 30.0
CT_SHARE = 0.05  # the share of one CPU the conntrack readings may take (big tables: less often)
# conntrack's TCP state names as IPVS names them (a NAT director sees the client's SYN as
# IPVS's SYN_RECV)
CT_STATES = {"SYN_SENT": "SYN_RECV", "SYN_SENT2": "SYN_RECV", "SYN_RECV": "SYN_RECV",
             "ESTABLISHED": "ESTABLISHED", "FIN_WAIT": "FIN_WAIT", "CLOSE_WAIT": "CLOSE_WAIT",
             "LAST_ACK": "LAST_ACK", "TIME_WAIT": "TIME_WAIT", "CLOSE": "CLOSE"}


def _nat(forward: Forward) -> bool:
    return forward in (Forward.MASQ, Forward.LOCAL)


class Routes:
    """Which interface reaches an address, and which one holds a local address (netlink).

    pyroute2's IPRoute runs its own event loop, so it lives on a thread of its own and the
    data plane (inside the director's loop) asks it through that thread.
    """

    def __init__(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="halb-routes")
        self._ipr: Any = self._pool.submit(self._open).result()

    @staticmethod
    def _open() -> Any:
        from pyroute2 import IPRoute  # the data plane's only netlink use

        return IPRoute()

    def close(self) -> None:
        self._pool.submit(self._ipr.close).result()
        self._pool.shutdown()

    def _call(self, fn: Any, *args: Any) -> Any:
        return self._pool.submit(fn, *args).result()

    def _name(self, index: int | None) -> str | None:
        if not index:
            return None
        links = self._ipr.link("get", index=index)
        return links[0].get_attr("IFLA_IFNAME") if links else None

    def _device(self, addr: str) -> str | None:
        try:
            routes = self._ipr.route("get", dst=addr)
        except Exception:  # no route
            return None
        return self._name(routes[0].get_attr("RTA_OIF")) if routes else None

    def device(self, addr: str) -> str | None:
        return self._call(self._device, addr)  # type: ignore[no-any-return]

    def _holder(self, addr: str) -> str | None:
        for a in self._ipr.get_addr(family=2):
            if a.get_attr("IFA_LOCAL") == addr or a.get_attr("IFA_ADDRESS") == addr:
                return self._name(a["index"])
        return None

    def holder(self, addr: str) -> str | None:
        return self._call(self._holder, addr)  # type: ignore[no-any-return]

    def _up_links(self) -> list[str]:
        out = []
        for link in self._ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            if name != "lo" and link["flags"] & 1:  # IFF_UP
                out.append(name)
        return out

    def up_links(self) -> list[str]:
        return self._call(self._up_links)  # type: ignore[no-any-return]


class NftablesDataPlane(DataPlane):
    name: ClassVar[str] = "nftables"
    exact: ClassVar[frozenset[str]] = nft_plan.EXACT

    def __init__(self, *, snat: str | None = None, nft: str | None = None,
                 table: str = nft_rules.TABLE, window: int = nft_plan.WINDOW,
                 conntrack_proc: str = CONNTRACK_PROC) -> None:
        snat = snat or os.environ.get("HALB_NFT_SNAT", "auto")
        if snat not in ("auto", "always", "never"):
            raise DataPlaneError(f"snat must be auto, always or never, not {snat!r}")
        self.snat = snat
        self.nft = nft
        self.table_name = table
        self.window = window
        self.conntrack_proc = conntrack_proc
        self._table: ServiceTable | None = None
        self._applied: dict[str, Ruleset | None] = {"ip": None, "netdev": None}
        self._started = False
        self._svc_ids: dict[ServiceKey, int] = {}
        self._dest_ids: dict[ServiceKey, dict[tuple[str, int], int]] = {}
        self._forward_before: str | None = None
        self._routes: Routes | None = None
        self._resync_pending = False
        self._ct_due = 0.0
        self._ct_reading: tuple[dict[tuple[int, int], list[int]], list[ConnView]] = ({}, [])
        self._dr_due = 0.0
        self._dr_reading: dict[str, Any] | None = None

    # -- what it refuses ----------------------------------------------------------------------

    def unsupported(self, spec: ServiceSpec, dest: DestSpec | None = None) -> str | None:
        key = spec.key
        if key.proto is Proto.SCTP:
            return "the nftables data plane has no SCTP services (use -t or -u)"
        if key.ipv6 or ":" in key.addr:
            return "the nftables data plane carries IPv4 virtual services only"
        if spec.pe:
            return f"the nftables data plane has no persistence engine {spec.pe}"
        if spec.ops:
            return "the nftables data plane has no one-packet scheduling (-o)"
        if spec.scheduler not in (nft_plan.SEQUENCE | nft_plan.BUCKETS | nft_plan.SIMULATED
                                  | {"dh"}):
            return f"the nftables data plane cannot run the {spec.scheduler} scheduler"
        if key not in self._svc_ids and len(self._svc_ids) >= nft_rules.MAX_SERVICES:
            return f"the nftables data plane carries at most {nft_rules.MAX_SERVICES} services"
        if dest is None:
            return None
        if ":" in dest.addr:
            return "the nftables data plane forwards to IPv4 real servers only"
        if key.proto is Proto.FWM and not _nat(dest.forward):
            return ("the nftables data plane forwards fwmark services in NAT mode (-m) only: "
                    "packet marks are set after the ingress hook DR works on")
        if dest.forward is Forward.TUNNEL:
            return ("tunnelling (-i) is not available: this data plane has no ipip/gue/gre "
                    "encapsulation; use -g (DR) or -m (NAT)")
        svc = self._table.services.get(key) if self._table is not None else None
        if svc is not None:
            others = [d for d in svc.dests
                      if (d.spec.addr, d.spec.port) != (dest.addr, dest.port)]
            if others and _nat(others[0].spec.forward) != _nat(dest.forward):
                return ("the nftables data plane needs one forwarding method per virtual "
                        "service: its real servers are all -m (NAT) or all -g (DR)")
            if len(others) >= nft_rules.MAX_DESTS:
                return f"the nftables data plane carries at most {nft_rules.MAX_DESTS} real " \
                       "servers per service"
        return None

    # -- life -------------------------------------------------------------------------------------

    async def start(self, table: ServiceTable) -> None:
        if os.geteuid() != 0:
            raise DataPlaneError("the nftables data plane needs root (CAP_NET_ADMIN)")
        self.nft = self.nft or shutil.which("nft") or (
            "/usr/sbin/nft" if os.access("/usr/sbin/nft", os.X_OK) else None)
        if self.nft is None:
            raise DataPlaneError("nft not found: install the nftables package")
        self._routes = Routes()
        # a table left by a crashed run goes first, with the conntrack entries it marked (their
        # marks would be counted for the new run's real servers)
        self._run(nft_rules.remove("ip", self.table_name)
                  + nft_rules.remove("netdev", self.table_name))
        tool = shutil.which("conntrack")
        if tool is not None:
            subprocess.run([tool, "-D", "--mark", f"{nft_rules.TAG:#x}/{nft_rules.TAG_MASK:#x}"],
                           capture_output=True, timeout=NFT_TIMEOUT)
        self._started = True
        self.sync(table)

    def _forwarding(self) -> None:
        """NAT needs the director to route (the seeds' `echo 1 > /proc/sys/net/ipv4/ip_forward`);
        switched on with the first NAT service, put back as it was by stop()."""
        if self._forward_before is not None:
            return
        with contextlib.suppress(OSError):
            with open(IP_FORWARD) as f:
                self._forward_before = f.read().strip()
            if self._forward_before != "1":
                with open(IP_FORWARD, "w") as f:
                    f.write("1\n")

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        try:
            self._run(nft_rules.remove("ip", self.table_name)
                      + nft_rules.remove("netdev", self.table_name))
        finally:
            self._applied = {"ip": None, "netdev": None}
            self._dr_reading = None
            if self._forward_before is not None and self._forward_before != "1":
                with contextlib.suppress(OSError), open(IP_FORWARD, "w") as f:
                    f.write(self._forward_before + "\n")
            if self._routes is not None:
                self._routes.close()
                self._routes = None

    # -- applying the table ---------------------------------------------------------------------

    def _run(self, text: str) -> None:
        assert self.nft is not None
        try:
            out = subprocess.run([self.nft, "-f", "-"], input=text, capture_output=True,
                                 text=True, timeout=NFT_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise DataPlaneError(f"nft failed: {e}") from e
        if out.returncode != 0:
            raise DataPlaneError(f"nft refused the ruleset: {out.stderr.strip()}")

    def sync(self, table: ServiceTable) -> None:
        self._table = table
        if not self._started:
            return
        for family, rs in self.rulesets(table).items():
            if family == "ip" and rs.services:
                self._forwarding()
            previous = self._applied[family]
            if previous is not None and rs == previous:
                continue
            self._run(nft_rules.render(rs, previous))
            if family == "netdev" and (previous is None or _members(previous) != _members(rs)):
                self._dr_reading = None  # services or real servers changed: read it all again
            self._applied[family] = rs

    def _ids(self, svc: VirtualService) -> tuple[int, dict[tuple[str, int], int]]:
        key = svc.spec.key
        if key not in self._svc_ids:
            used = set(self._svc_ids.values())
            self._svc_ids[key] = next(i for i in range(1, nft_rules.MAX_SERVICES + 1)
                                      if i not in used)
        ids = self._dest_ids.setdefault(key, {})
        present = {(d.spec.addr, d.spec.port) for d in svc.dests}
        for gone in set(ids) - present:
            del ids[gone]
        for d in reversed(svc.dests):  # the oldest first
            addr = (d.spec.addr, d.spec.port)
            if addr not in ids:
                used = set(ids.values())
                ids[addr] = next(i for i in range(1, nft_rules.MAX_DESTS + 1) if i not in used)
        return self._svc_ids[key], ids

    def rulesets(self, table: ServiceTable) -> dict[str, Ruleset]:
        """The NAT and DR rulesets for the table as it stands."""
        for key in set(self._svc_ids) - set(table.services):
            del self._svc_ids[key]
            self._dest_ids.pop(key, None)
        nat: list[RuleService] = []
        dr: list[RuleService] = []
        devices: set[str] = set()
        routes = self._routes
        for svc in table.services.values():
            spec = svc.spec
            sid, ids = self._ids(svc)
            is_dr = any(not _nat(d.spec.forward) for d in svc.dests)
            vip_dev = routes.holder(spec.key.addr) if routes and spec.key.addr else None
            members = [nft_plan.Member(d.peer, ids[(d.spec.addr, d.spec.port)],
                                       d.spec.u_threshold) for d in svc.dests]
            pick = self._plan(svc, members)
            rdests = []
            for d in reversed(svc.dests):
                dev = (routes.device(d.spec.addr) if routes else None) or ""
                if is_dr:
                    masq = False
                    if dev:
                        devices.add(dev)
                elif self.snat == "auto":
                    masq = bool(vip_dev) and dev == vip_dev
                else:
                    masq = self.snat == "always"
                rdests.append(RuleDest(ids[(d.spec.addr, d.spec.port)], d.spec.addr,
                                       d.spec.port, masquerade=masq, device=dev))
            if is_dr and vip_dev and vip_dev != "lo":
                devices.add(vip_dev)
            rule = RuleService(sid, spec.key.proto.value.lower(), spec.key.addr, spec.key.port,
                               tuple(rdests), pick, spec.persistent,
                               spec.netmask or "255.255.255.255", spec.key.fwmark)
            (dr if is_dr else nat).append(rule)
        if dr and not devices and routes is not None:
            devices.update(routes.up_links())
        timeouts = table.timeouts.view()
        return {
            "ip": Ruleset("ip", tuple(nat), timeouts, table=self.table_name),
            "netdev": Ruleset("netdev", tuple(dr), timeouts, tuple(sorted(devices)),
                              table=self.table_name),
        }

    def _plan(self, svc: VirtualService, members: list[nft_plan.Member]) -> Pick:
        key = svc.spec.key
        # dh, lblc, lblcr hash the destination: a fwmark service has many, halb plans with the
        # mark as IPVS's template does (<IP, snet, fwmark>)
        vaddr = (ipaddress.IPv4Address(key.addr).packed if key.addr
                 else (key.fwmark & 0xFFFFFFFF).to_bytes(4, "big"))
        return nft_plan.plan(svc.spec.scheduler, svc.balancer, members, vaddr=vaddr,
                             now=self.now(), rng=self.rng, window=self.window)

    # -- reading the kernel -----------------------------------------------------------------------

    async def _list(self, family: str, what: str = "table") -> dict[str, Any]:
        """`nft -j list table <family> halb` (what="counters": `list counters table ...`, the
        counters only) as {kind: [objects]} (empty when absent)."""
        assert self.nft is not None
        head = ["counters", "table"] if what == "counters" else ["table"]
        proc = await asyncio.create_subprocess_exec(
            self.nft, "-j", "list", *head, family, self.table_name,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        objects: dict[str, Any] = defaultdict(list)
        if proc.returncode != 0:
            return objects
        for item in json.loads(out).get("nftables", []):
            for kind, obj in item.items():
                objects[kind].append(obj)
        return objects

    async def _conntrack(self) -> str:
        try:
            return await asyncio.to_thread(_read, self.conntrack_proc)
        except OSError:
            pass
        tool = shutil.which("conntrack")
        if tool is None:
            return ""
        proc = await asyncio.create_subprocess_exec(
            tool, "-L", "-o", "extended", stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL)
        out, _ = await proc.communicate()
        return out.decode(errors="replace")

    async def collect(self) -> Feedback | None:
        table = self._table
        if not self._started or table is None:
            return None
        by_id = {sid: key for key, sid in self._svc_ids.items()}
        dest_by_id = {key: {did: addr for addr, did in ids.items()}
                      for key, ids in self._dest_ids.items()}
        counts: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
        stats: dict[tuple[int, int], dict[str, int]] = defaultdict(dict)
        conns: list[ConnView] = []
        services = {sid: table.services[key] for sid, key in by_id.items()
                    if key in table.services}

        def dest_of(sid: int, did: int) -> tuple[str, int] | None:
            key = by_id.get(sid)
            return dest_by_id.get(key, {}).get(did) if key is not None else None

        nat_rs = self._applied["ip"]
        if nat_rs is not None and nat_rs.services:
            started = time.monotonic()
            if started >= self._ct_due:
                ct_counts: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
                ct_conns = []
                for ids, proto, expires, state, client, virtual, real in ct_rows(
                        await self._conntrack()):
                    if dest_of(*ids) is None:
                        continue
                    ct_counts[ids][0 if state == "ESTABLISHED" else 1] += 1
                    ct_conns.append(ConnView(proto=proto, expires=float(expires), state=state,
                                             client=client, virtual=virtual, dest=real))
                self._ct_reading = (ct_counts, ct_conns)
                # a big table is read less often: at most CT_SHARE of a CPU goes to reading it
                self._ct_due = started + (time.monotonic() - started) / CT_SHARE
            for ids, pair in self._ct_reading[0].items():
                counts[ids] = list(pair)
            conns += self._ct_reading[1]
        tables = {"ip": await self._list("ip")} if nat_rs is not None and nat_rs.services else {}
        dr_rs = self._applied["netdev"]
        if dr_rs is not None and dr_rs.services:
            tables["netdev"] = await self._dr_listing()
            conns += self._dr_flows(tables["netdev"], services, counts, dest_of)
        for objects in tables.values():
            for c in objects.get("counter", []):
                kind, _, rest = c["name"].partition("_")
                if kind[:1] not in "nio" or not kind[1:].isdigit() or not rest.isdigit():
                    continue
                ids = (int(kind[1:]), int(rest))
                st = stats[ids]
                if kind[0] == "n":
                    st["conns"] = c["packets"]
                elif kind[0] == "i":
                    st["inpkts"], st["inbytes"] = c["packets"], c["bytes"]
                else:
                    st["outpkts"], st["outbytes"] = c["packets"], c["bytes"]
            conns += self._templates(objects, services, dest_of)
        out = []
        for sid, svc in services.items():
            for d in svc.dests:
                did = self._dest_ids[svc.spec.key].get((d.spec.addr, d.spec.port))
                if did is None:
                    continue
                active, inactive = counts.get((sid, did), (0, 0))
                st = stats.get((sid, did))
                out.append(DestCounts(svc.spec.key, d.spec.addr, d.spec.port, active, inactive,
                                      Stats(**st) if st else None))
        self._schedule_resync()
        return Feedback(dests=tuple(out), connections=tuple(conns))

    async def _dr_listing(self) -> dict[str, Any]:
        """The DR table: its flow maps hold an element per connection (up to MAP_SIZE per
        service), which nft lists and halb parses at a cost (about 30 us of the director's CPU
        per connection at 3,000 connections/s, read every tick): the whole table is read at most
        as often as keeps that under CT_SHARE of a CPU, as the conntrack table is; the counters
        (the --stats figures) are read on every tick."""
        started = time.monotonic()
        if started >= self._dr_due or self._dr_reading is None:
            self._dr_reading = await self._list("netdev")
            self._dr_due = started + (time.monotonic() - started) / CT_SHARE
            return self._dr_reading
        objects = dict(self._dr_reading)
        objects["counter"] = (await self._list("netdev", "counters")).get("counter", [])
        return objects

    def _dr_flows(self, objects: dict[str, Any], services: dict[int, VirtualService],
                  counts: dict[tuple[int, int], list[int]], dest_of: Any) -> list[ConnView]:
        closing: dict[int, set[tuple[str, int]]] = {}
        for s in objects.get("set", []):
            if s["name"].startswith("c") and s["name"][1:].isdigit():
                closing[int(s["name"][1:])] = {tuple(_elem_key(e)) for e in s.get("elem", [])}
        rows = []
        for m in objects.get("map", []):
            if not (m["name"].startswith("f") and m["name"][1:].isdigit()):
                continue
            sid = int(m["name"][1:])
            svc = services.get(sid)
            if svc is None:
                continue
            for elem, value in m.get("elem", []):
                ids = nft_rules.unmark(int(value))
                real = dest_of(*ids) if ids else None
                if ids is None or real is None:
                    continue
                key = tuple(_elem_key(elem))
                udp = svc.spec.key.proto is Proto.UDP
                fin = key in closing.get(sid, set())
                counts[ids][1 if (udp or fin) else 0] += 1
                expires = elem.get("elem", {}).get("expires", 0) if isinstance(elem, dict) else 0
                rows.append(ConnView(
                    proto=svc.spec.key.proto.value, expires=float(expires),
                    state="UDP" if udp else ("FIN_WAIT" if fin else "ESTABLISHED"),
                    client=(str(key[0]), int(key[1])),
                    virtual=(svc.spec.key.addr, svc.spec.key.port),
                    dest=(real[0], real[1] or svc.spec.key.port)))
        return rows

    def _templates(self, objects: dict[str, Any], services: dict[int, VirtualService],
                   dest_of: Any) -> list[ConnView]:
        rows = []
        for m in objects.get("map", []):
            if not (m["name"].startswith("p") and m["name"][1:].isdigit()):
                continue
            svc = services.get(int(m["name"][1:]))
            if svc is None:
                continue
            for elem, value in m.get("elem", []):
                ids = nft_rules.unmark(int(value))
                real = dest_of(*ids) if ids else None
                if real is None:
                    continue
                key = _elem_key(elem)
                expires = elem.get("elem", {}).get("expires", 0) if isinstance(elem, dict) else 0
                rows.append(ConnView(
                    proto=svc.spec.key.proto.value, expires=float(expires), state="NONE",
                    client=(str(key[0]), 0), virtual=(svc.spec.key.addr, svc.spec.key.port),
                    dest=(real[0], real[1] or svc.spec.key.port), template=True))
        return rows

    def _schedule_resync(self) -> None:
        """Plan again once the director has absorbed this reading (the count-driven schedulers
        and the thresholds follow the new counts); a no-op when nothing changed."""
        if self._resync_pending:
            return
        self._resync_pending = True

        def resync() -> None:
            self._resync_pending = False
            if self._started and self._table is not None:
                try:
                    self.sync(self._table)
                except DataPlaneError:
                    log.exception("nftables: re-planning after a reading failed")

        asyncio.get_running_loop().call_soon(resync)


# -- parsing -------------------------------------------------------------------------------------


def _members(rs: Ruleset) -> list[tuple[int, tuple[RuleDest, ...]]]:
    return [(svc.id, svc.dests) for svc in rs.services]


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _elem_key(elem: Any) -> list[Any]:
    """The key of a set/map element from `nft -j`: plain, {"elem": {"val": ...}}, or concat."""
    if isinstance(elem, dict) and "elem" in elem:
        elem = elem["elem"]["val"]
    if isinstance(elem, dict) and "concat" in elem:
        return list(elem["concat"])
    if isinstance(elem, dict) and "prefix" in elem:
        return [elem["prefix"]["addr"]]
    return [elem]


# one conntrack entry (/proc/net/nf_conntrack or `conntrack -L -o extended`) with a halb mark
# (0x48xxxxxx is 12079... to 12247... in decimal): proto, seconds left, state (TCP), the original
# tuple (client -> virtual), the reply source (the real server), the mark
_CT = re.compile(r"^\S+\s+\d+\s+(tcp|udp)\s+\d+\s+(\d+)\s+(?:([A-Z_0-9]+)\s+)?"
                 r"src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+) (?:\[\w+\] )?"
                 r"src=(\S+) dst=\S+ sport=(\d+) [^\n]*?mark=(12\d{8})\b", re.M)


def ct_rows(text: str) -> Iterator[tuple[tuple[int, int], str, int, str, tuple[str, int],
                                         tuple[str, int], tuple[str, int]]]:
    """The conntrack entries carrying a halb mark: ((svc, dest), proto, seconds left, IPVS
    state name, client, virtual, real server)."""
    for m in _CT.finditer(text):
        ids = nft_rules.unmark(int(m[10]))
        if ids is None:
            continue
        proto = m[1]
        state = CT_STATES.get(m[3] or "", m[3] or "") if proto == "tcp" else "UDP"
        yield (ids, proto.upper(), int(m[2]), state, (m[4], int(m[6])), (m[5], int(m[7])),
               (m[8], int(m[9])))
