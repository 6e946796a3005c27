"""keepalived's SIGHUP reload of the checker half (PURE): diff the old and new virtual_server
blocks, carry the health state of everything unchanged over, and say what the director must
change (keepalived 2.2.x check/ipwrapper.c clear_diff_services, clear_diff_rs,
clear_diff_s_srv, migrate_checkers, check_new_rs_state and init_service_rs).

* `diff(old, new)`: which virtual servers were added, removed, kept (same name: address,
  protocol and port, fwmark, or group and index; same family) and, of the kept ones, which
  changed their IPVS settings (scheduler, persistence, flags); per kept virtual server which
  real servers (by address and port) were added, removed or kept.
* `checker_key(checker)`: what makes two checkers the same check (keepalived's `compare`):
  everything but the timings (delay_loop, retry, delay_before_retry, warmup, connect_timeout,
  misc_timeout), alpha and log_all_failures.
* `reload_state(old, lvs, now)`: a new `HealthState` for `lvs` with the old one's state carried
  over (it walks both configurations itself; `diff` is for logs and tests). A kept real
  server keeps alive / in the table / its table weight; each of its checkers that matches an
  old one keeps is_up, has_run, its retry count (clipped to the new retry), its
  HTTP url position, its MISC_CHECK dynamic weight and its schedule (a probe running now goes
  on and its result counts for the new checker: `ids` maps old checker ids to new ones). So an
  up server stays up without a re-check, a down one stays down. New checkers of a kept server
  start as checkers do at start (alpha ones down when the server has a failed checker or has
  not been checked); a kept server with no failed checker left comes up; a new weight is
  applied as keepalived's update_svr_wgt does. New real servers and virtual servers start as
  at start (added unless alpha). Removed real servers log keepalived's lines and run their
  notify_down when they were alive; removed virtual servers too, and their quorum_down when
  the quorum was up. The sorry server is kept when it is the same one.
* `reload_sync(old, lvs)`: the `IpvsSync` for `lvs` with the old one's table carried over, and
  the commands that make the director's table match without a flush: DEL_DEST for real
  servers gone from kept services, DEL_SERVICE for services gone, EDIT_SERVICE for changed
  settings, ADD_SERVICE (+ the carried destinations) for new service addresses, EDIT_DEST where
  a kept destination's forwarding method or thresholds changed. Unchanged services get no
  command at all, so their connections and scheduler state stay.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass, field

from halb.config.keepalived_lvs_model import (
    MISC_CHECK,
    Checker,
    LvsConfig,
    RealServer,
    SorryServer,
    VirtualServer,
)
from halb.health.events import Action, CheckerId, RunScript
from halb.health.ipvs import IpvsSync, dest_spec, service_specs
from halb.health.state import HealthState, _Check, _Dest, _Service
from halb.l4.model import Command, DestSpec, Op, ServiceKey, ServiceSpec

# the settings that only time a check: two checkers differing in these are the same check
_TIMING = {"delay_loop": 0.0, "retry": 0, "delay_before_retry": 0.0, "warmup": 0.0,
           "alpha": False, "log_all_failures": False, "connect_timeout": 0.0,
           "misc_timeout": 0.0, "pos": None}


@functools.lru_cache(maxsize=8192)
def checker_key(c: Checker) -> Checker:
    """The checker without its timings: equal keys are the same check (keepalived's compare)."""
    urls = tuple(dataclasses.replace(u, pos=None) for u in c.urls)
    return dataclasses.replace(c, urls=urls, **_TIMING)  # type: ignore[arg-type]


def vs_key(vs: VirtualServer) -> tuple[str, int]:
    """keepalived's vs_iseq: the name (address, protocol, port / fwmark / group and index)."""
    return vs.name, vs.family


def _service_settings(vs: VirtualServer) -> tuple[object, ...]:
    return (vs.lvs_sched, vs.persistence_timeout, vs.persistence_granularity,
            vs.persistence_engine, vs.ops, vs.sched_flags)


@dataclass(frozen=True)
class ServerDiff:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()  # kept, with another configuration (weight, checkers...)


@dataclass(frozen=True)
class LvsDiff:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    edited: tuple[str, ...] = ()  # kept, with other IPVS settings (scheduler, persistence...)
    servers: dict[str, ServerDiff] = field(default_factory=dict)  # per kept virtual server

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.edited or any(
            s.added or s.removed or s.changed for s in self.servers.values()))


def _server_key(rs: RealServer) -> tuple[object, ...]:
    """A real server's configuration without positions in the file."""
    scripts = tuple(None if s is None else dataclasses.replace(s, pos=None)
                    for s in (rs.notify_up, rs.notify_down))
    bare = dataclasses.replace(rs, pos=None, checkers=(), notify_up=None, notify_down=None)
    return bare, scripts, tuple(checker_key(c) for c in rs.checkers)


def _same_server(a: RealServer, b: RealServer) -> bool:
    return _server_key(a) == _server_key(b)


def diff(old: LvsConfig, new: LvsConfig) -> LvsDiff:
    olds = {vs_key(vs): vs for vs in old.virtual_servers}
    news = {vs_key(vs): vs for vs in new.virtual_servers}
    kept = [k for k in news if k in olds]
    servers: dict[str, ServerDiff] = {}
    for k in kept:
        o_rs = {rs.name: rs for rs in olds[k].real_servers}
        n_rs = {rs.name: rs for rs in news[k].real_servers}
        servers[k[0]] = ServerDiff(
            added=tuple(n for n in n_rs if n not in o_rs),
            removed=tuple(n for n in o_rs if n not in n_rs),
            kept=tuple(n for n in n_rs if n in o_rs),
            changed=tuple(n for n in n_rs if n in o_rs and not _same_server(o_rs[n], n_rs[n])))
    return LvsDiff(
        added=tuple(k[0] for k in news if k not in olds),
        removed=tuple(k[0] for k in olds if k not in news),
        kept=tuple(k[0] for k in kept),
        edited=tuple(k[0] for k in kept
                     if _service_settings(olds[k]) != _service_settings(news[k])),
        servers=servers)


# -- the health state --------------------------------------------------------------------------


@dataclass
class Reloaded:
    state: HealthState
    actions: list[Action]
    ids: dict[CheckerId, CheckerId]  # old checker id -> the new checker it continues as


def reload_state(old: HealthState, lvs: LvsConfig, now: float,
                 rng: Callable[[], float] | None = None) -> Reloaded:
    new = HealthState(lvs, rng or old.rng)
    olds = {vs_key(s.cfg): s for s in old.services}
    ids: dict[CheckerId, CheckerId] = {}
    for svc in new.services:
        o = olds.pop(vs_key(svc.cfg), None)
        if o is None:  # a new virtual server: as at start
            for c in svc.checks:
                new.begin(c, now)
            svc.quorum_up = new._weight_sum(svc) >= svc.cfg.quorum + svc.cfg.hysteresis
            new.init_service(svc, svc.rss)
        else:
            _migrate_service(new, o, svc, now, ids)
    for o in olds.values():
        _retire_service(new, o)
    return Reloaded(new, new._flush(), ids)


def _checks_of(svc: _Service, d: _Dest) -> list[_Check]:
    return [c for c in svc.checks if c.dest is d]


def _migrate_service(new: HealthState, o: _Service, svc: _Service, now: float,
                     ids: dict[CheckerId, CheckerId]) -> None:
    svc.quorum_up = o.quorum_up
    old_rs = {d.name: d for d in o.rss}
    added: list[_Dest] = []
    for d in svc.rss:
        od = old_rs.pop(d.name, None)
        if od is None:  # a new real server: its checkers start, alpha ones down
            for c in _checks_of(svc, d):
                new.begin(c, now)
            added.append(d)
        else:
            _migrate_dest(new, svc, od, _checks_of(o, od), d, now, ids)
    for od in old_rs.values():
        new._log(f"service {od.name} no longer exist")
        _remove_dest(new, svc.name, od)
    _migrate_sorry(new, o, svc)
    init = not svc.quorum_up and svc.sorry is not None and not svc.sorry.alive
    new.init_service(svc, added, init=init)


def _remove_dest(new: HealthState, vs_name: str, od: _Dest) -> None:
    """clear_service_rs (not stopping): the director's entry goes (reload_sync), alive ones
    run notify_down."""
    if od.set:
        inhibited = "(inhibited) " if od.inhibit and not od.alive else ""
        new._log(f"Removing {inhibited}service {od.name} from VS {vs_name}")
        if od.alive and od.notify_down is not None:
            new.out.append(RunScript(od.notify_down, "notify_down", vs_name, od.name))


def _retire_service(new: HealthState, o: _Service) -> None:
    """A virtual server gone from the file: its service is deleted (reload_sync)."""
    new._log(f"Removing Virtual Server {o.name}")
    for od in o.rss:
        _remove_dest(new, o.name, od)
    if o.quorum_up and o.cfg.quorum_down is not None:
        new.out.append(RunScript(o.cfg.quorum_down, "quorum_down", o.name))


def _migrate_dest(new: HealthState, svc: _Service, od: _Dest, old_checks: list[_Check],
                  d: _Dest, now: float, ids: dict[CheckerId, CheckerId]) -> None:
    """clear_diff_rs + migrate_checkers for one kept real server."""
    d.alive, d.set, d.table_weight, d.emitted = od.alive, od.set, od.table_weight, od.emitted
    checks = _checks_of(svc, d)
    fresh: list[_Check] = []
    unused = [(checker_key(x.cfg), x) for x in old_checks]
    for c in checks:
        key = checker_key(c.cfg)
        found = next((i for i, (k, _) in enumerate(unused) if k == key), None)
        if found is None:  # a new checker of a kept server: up, as keepalived's
            new.schedule(c, now)
            fresh.append(c)
            continue
        oc = unused.pop(found)[1]
        ids[oc.id] = c.id
        _migrate_check(oc, c, d, now)
        if not c.has_run:
            fresh.append(c)
    failed = sum(1 for c in checks if c.has_run and not c.is_up)
    ran = any(c.has_run for c in checks)
    if failed or (not d.alive and not ran):
        for c in fresh:
            if c.cfg.alpha:
                c.is_up = False
            c.retry_it = c.cfg.retry  # one failure is enough
    d.num_failed = sum(1 for c in checks if not c.is_up)
    weight = d.iweight + sum(c.cur_weight for c in checks)
    d.effective_weight = od.effective_weight
    if not d.num_failed and not d.alive:
        new._perform(svc, d, True)
    elif d.num_failed and d.set != d.inhibit:
        new._ipvs(svc, d, "add" if d.inhibit else "del")
    if weight != d.effective_weight:
        new._update_weight(svc, d, weight)


def _migrate_check(oc: _Check, c: _Check, d: _Dest, now: float) -> None:
    c.has_run = oc.has_run
    c.is_up = oc.is_up if oc.has_run else not c.cfg.alpha
    c.retry_it = min(oc.retry_it, c.cfg.retry + 1) if oc.has_run else c.cfg.retry
    c.url_it, c.failed_url = oc.url_it, oc.failed_url
    c.last_exit_code = oc.last_exit_code
    status = oc.last_exit_code
    if c.cfg.kind == MISC_CHECK and c.cfg.misc_dynamic and status is not None and status >= 2:
        c.cur_weight = status - 2 - d.iweight  # the same exit status on the new weight
    else:
        c.cur_weight = oc.cur_weight if c.cfg.kind == MISC_CHECK else 0
    c.running, c.last_ran = oc.running, oc.last_ran
    c.enabled = oc.enabled if c.svc.cfg.ha_suspend else True
    c.next = oc.next if c.running else min(oc.next, now + c.cfg.delay_loop)


def _migrate_sorry(new: HealthState, o: _Service, svc: _Service) -> None:
    """clear_diff_s_srv."""
    os_, ns = o.sorry, svc.sorry
    if os_ is not None and ns is not None and os_.name == ns.name:
        ns.alive, ns.set, ns.table_weight, ns.emitted = (os_.alive, os_.set, os_.table_weight,
                                                         os_.emitted)
        if ns.set and not ns.alive and not ns.inhibit:  # sorry_server_inhibit dropped
            new._ipvs(svc, ns, "del")
        return
    if os_ is None or not os_.set:
        return
    if os_.alive:
        new._log(f"Removing sorry server {os_.name} from VS {svc.name}")
        if ns is None:  # nothing takes its place: the alive real servers go back
            new._pool(svc, add=True)


# -- the director's table ----------------------------------------------------------------------


def _servers(lvs: LvsConfig) -> dict[tuple[str, str], RealServer | SorryServer]:
    """(virtual server name, server name) -> its real server or sorry server."""
    out: dict[tuple[str, str], RealServer | SorryServer] = {}
    for vs in lvs.virtual_servers:
        name = vs.name
        if vs.sorry_server is not None:
            out[(name, vs.sorry_server.name)] = vs.sorry_server
        for rs in vs.real_servers:
            out[(name, rs.name)] = rs
    return out


def reload_sync(old: IpvsSync, lvs: LvsConfig) -> tuple[IpvsSync, list[Command]]:
    """The new table keeper, and the commands from the old table to the new one, in order."""
    new = IpvsSync(lvs)
    servers = _servers(lvs)
    for vs, spec in service_specs(lvs):
        new.specs.setdefault(vs.name, []).append(spec)
    old_keys: dict[ServiceKey, ServiceSpec] = {
        s.key: s for specs in old.specs.values() for s in specs}
    new_keys: dict[ServiceKey, ServiceSpec] = {
        s.key: s for specs in new.specs.values() for s in specs}
    del_dests: list[Command] = []
    edit_dests: list[Command] = []
    add_dests: list[Command] = []
    for (service, name), dest in old.dests.items():
        server = servers.get((service, name))
        specs = new.specs.get(service)
        if server is None or specs is None:
            del_dests += [Command(Op.DEL_DEST, service=s, dest=dest)
                          for s in old.specs.get(service, []) if s.key in new_keys]
            continue
        moved: DestSpec = dest_spec(server, dest.weight)
        new.dests[(service, name)] = moved
        mine = {s.key for s in old.specs.get(service, [])}
        for s in specs:
            if s.key not in old_keys:
                add_dests.append(Command(Op.ADD_DEST, service=s, dest=moved))
            elif s.key in mine and moved != dest:
                edit_dests.append(Command(Op.EDIT_DEST, service=s, dest=moved))
    out = del_dests
    out += [Command(Op.DEL_SERVICE, service=s) for k, s in old_keys.items() if k not in new_keys]
    out += [Command(Op.EDIT_SERVICE, service=s) for k, s in new_keys.items()
            if k in old_keys and old_keys[k] != s]
    out += [Command(Op.ADD_SERVICE, service=s) for k, s in new_keys.items()
            if k not in old_keys]
    return new, out + edit_dests + add_dests
