"""keepalived's virtual_server blocks as ipvsadm commands (PURE): what the checker child asks
of the L4 director (keepalived's ipwrapper.c / ipvswrapper.c, without the netlink).

* `service_specs(lvs)`: every IPVS service the configuration defines, in its order: a
  `virtual_server IP PORT` is one service; `fwmark N` one FWM service; `group NAME` one service
  per address (ranges expanded) and per fwmark of the virtual_server_group. lb_algo/lvs_sched
  is the scheduler, persistence_timeout the -p value, persistence_granularity the -M netmask
  (IPv6: the prefix length), persistence_engine --pe, ops -o, lvs_flags -b.
* `dest_spec(vs, server)`: a real server or sorry server as a destination: lb_kind NAT / DR /
  TUN → -m / -g / -i (with the tunnel's type, port and checksum flags), its thresholds.
* `IpvsSync(lvs)`: keeps what keepalived believes is in the table and turns each
  `HealthChanged` into the commands that make the table say the same: add with the weight
  (present and absent before), edit the weight (present, weight changed; inhibit_on_failure
  keeps a dead server with weight 0), delete (no longer present). `replay(spec)` gives a service
  added late its current destinations. `shutdown()` deletes the services keepalived added (its
  clear_services on exit).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from halb.config.keepalived_lvs_model import (
    LvsConfig,
    RealServer,
    SorryServer,
    Tunnel,
    VirtualServer,
)
from halb.health.events import HealthChanged
from halb.l4.model import Command, DestSpec, Forward, Op, Proto, ServiceKey, ServiceSpec

FORWARD = {"NAT": Forward.MASQ, "DR": Forward.ROUTE, "TUN": Forward.TUNNEL}
HOST_MASK = {4: "255.255.255.255", 6: "128"}


def _proto(vs: VirtualServer) -> Proto:
    return Proto((vs.protocol or "TCP").upper())


def service_keys(lvs: LvsConfig, vs: VirtualServer) -> list[ServiceKey]:
    """The IPVS services one virtual_server stands for."""
    if vs.group is not None:
        group = lvs.groups.get(vs.group)
        if group is None:
            return []
        keys: list[ServiceKey] = []
        for entry in group.entries:
            if entry.is_fwmark:
                family = entry.fwmark_family or vs.family
                keys.append(ServiceKey(Proto.FWM, fwmark=entry.fwmark, ipv6=family == 6))
                continue
            for addr in entry.addresses():
                keys.append(ServiceKey(_proto(vs), str(addr), entry.port or vs.port))
        return keys
    if vs.fwmark:
        return [ServiceKey(Proto.FWM, fwmark=vs.fwmark, ipv6=vs.family == 6)]
    if vs.address is None:
        return []
    return [ServiceKey(_proto(vs), str(vs.address), vs.port)]


def _netmask(vs: VirtualServer) -> str:
    family = 6 if vs.family == 6 else 4
    if not vs.persistence_granularity:
        return HOST_MASK[family]
    return vs.persistence_granularity


def service_spec(vs: VirtualServer, key: ServiceKey) -> ServiceSpec:
    return ServiceSpec(key, scheduler=vs.lvs_sched, persistent=vs.persistence_timeout,
                       netmask=_netmask(vs), pe=vs.persistence_engine or "", ops=vs.ops,
                       sched_flags=tuple(vs.sched_flags))


def service_specs(lvs: LvsConfig) -> Iterator[tuple[VirtualServer, ServiceSpec]]:
    for vs in lvs.virtual_servers:
        for key in service_keys(lvs, vs):
            yield vs, service_spec(vs, key)


def _tunnel(forward: Forward, tunnel: Tunnel | None) -> dict[str, object]:
    if forward is not Forward.TUNNEL or tunnel is None:
        return {}
    flags = () if tunnel.type == "ipip" else (tunnel.csum,)
    return {"tun_type": tunnel.type, "tun_port": tunnel.port, "tun_flags": flags}


def dest_spec(server: RealServer | SorryServer, weight: int) -> DestSpec:
    forward = FORWARD.get(server.lvs_method.upper(), Forward.MASQ)
    thresholds: dict[str, int] = {}
    if isinstance(server, RealServer):
        thresholds = {"u_threshold": server.u_threshold, "l_threshold": server.l_threshold}
    return DestSpec(str(server.address), server.port, forward, weight,
                    **thresholds, **_tunnel(forward, server.tunnel))  # type: ignore[arg-type]


@dataclass
class IpvsSync:
    """keepalived's idea of the table, and the commands that keep the director in step."""

    lvs: LvsConfig
    specs: dict[str, list[ServiceSpec]] = field(default_factory=dict)
    dests: dict[tuple[str, str], DestSpec] = field(default_factory=dict)  # (service, server)

    def services(self) -> list[Command]:
        """The -A commands for every virtual service (the director starts empty)."""
        out: list[Command] = []
        for vs, spec in service_specs(self.lvs):
            self.specs.setdefault(vs.name, []).append(spec)
            out.append(Command(Op.ADD_SERVICE, service=spec))
        return out

    def server(self, ev: HealthChanged) -> RealServer | SorryServer | None:
        try:
            vs = self.lvs.service(ev.service)
        except KeyError:
            return None
        if ev.sorry:
            return vs.sorry_server
        try:
            return vs.real_server(ev.server)
        except KeyError:
            return None

    def apply(self, ev: HealthChanged) -> list[Command]:
        """The commands that carry out one HealthChanged."""
        server = self.server(ev)
        specs = self.specs.get(ev.service, [])
        if server is None or not specs:
            return []
        key = (ev.service, ev.server)
        before = self.dests.get(key)
        if ev.present:
            if before is not None and before.weight == ev.weight:
                return []
            dest = self.dests[key] = dest_spec(server, ev.weight)
            op = Op.ADD_DEST if before is None else Op.EDIT_DEST
        else:
            if before is None:
                return []
            dest = self.dests.pop(key)
            op = Op.DEL_DEST
        return [Command(op, service=spec, dest=dest) for spec in specs]

    def replay(self, spec: ServiceSpec) -> list[Command]:
        """The -a commands that give `spec` the destinations keepalived believes it has (for a
        service the director could not add at first: a VIP that was not local yet)."""
        names = [name for name, specs in self.specs.items() if spec in specs]
        return [Command(Op.ADD_DEST, service=spec, dest=dest)
                for (service, _), dest in self.dests.items() if service in names]

    def shutdown(self) -> list[Command]:
        """Every service keepalived added, deleted (their destinations go with them)."""
        out = [Command(Op.DEL_SERVICE, service=spec)
               for specs in self.specs.values() for spec in specs]
        self.specs.clear()
        self.dests.clear()
        return out
