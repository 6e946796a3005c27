"""keepalived's health-check state machine, with time and randomness passed in (PURE).

Owns what keepalived 2.2.7's checker process decides (check_tcp.c tcp_epilog, check_http.c
epilog / timeout_epilog, check_misc.c misc_check_child_thread, ipwrapper.c), not the I/O:

* Checkers. At start every checker is up and has not run (alpha: down); its first probe is
  BOOTSTRAP_DELAY (1 s) plus a random part of `warmup` away. One success marks it up. A failure
  of an up checker is retried `retry` times, `delay_before_retry` apart, before it is marked
  down; the very first result decides at once. The next round is `delay_loop` after a decision
  (MISC_CHECK: after the script *started*). HTTP_GET / SSL_GET check their urls one per round
  and are up when all passed; a down one re-checks the failed url.
* Real servers. A server is alive only when all its checkers are up; it is added to the
  virtual server's table when it becomes alive and removed when it dies, or kept with weight 0
  with inhibit_on_failure. MISC_CHECK with misc_dynamic sets the weight from the exit status:
  0 keeps the configured weight, 2..255 gives status - 2.
* Virtual servers. Quorum: the sum of the weights of the alive servers. It is gained at
  >= quorum + hysteresis and lost below quorum - hysteresis (or at 0); on loss quorum_down runs
  and, with a sorry_server, the live servers leave the table and the sorry server takes their
  place (the reverse on gain, with quorum_up). alpha starts every server down, so a sorry server
  serves until checks pass. omega runs notify_down / quorum_down when stopping.

Inputs: `start(now)`, `due(now)` (the probes to run now), `result(id, ProbeResult, now)`,
`set_enabled(service, on)` (ha_suspend: checks pause while the VIP is absent), `stop()`.
Outputs: lists of actions (HealthChanged, RunScript, Log) and `next_deadline()`.
A reload (health/reload.py) builds a new HealthState and carries this one's state into it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from halb.config.keepalived_lvs_model import (
    BOOTSTRAP_DELAY,
    HTTP_GET,
    MISC_CHECK,
    SSL_GET,
    TCP_CHECK,
    Checker,
    LvsConfig,
    RealServer,
    SorryServer,
    VirtualServer,
)
from halb.config.keepalived_model import Script
from halb.health.events import Action, CheckerId, HealthChanged, Log, Probe, ProbeResult, RunScript

WEIGHT_LIMIT = 2 ** 31 - 1
MIN_DELAY = 1e-6


def real_weight(weight: int) -> int:
    return 0 if weight < 0 else min(weight, WEIGHT_LIMIT)


@dataclass(eq=False)
class _Dest:
    """A real server or the sorry server, and its IPVS entry as keepalived tracks it."""

    name: str
    address: str
    port: int
    iweight: int
    inhibit: bool
    sorry: bool = False
    notify_up: Script | None = None
    notify_down: Script | None = None
    effective_weight: int = 0
    alive: bool = False
    set: bool = False  # in the table
    table_weight: int = 0
    num_failed: int = 0
    emitted: tuple[bool, int, bool] | None = None


@dataclass(eq=False)
class _Check:
    id: CheckerId
    cfg: Checker
    dest: _Dest
    svc: _Service
    is_up: bool = True
    has_run: bool = False
    retry_it: int = 0
    cur_weight: int = 0
    last_exit_code: int | None = 0
    url_it: int | None = 0
    failed_url: int | None = None
    next: float = 0.0
    running: bool = False
    last_ran: float = 0.0
    enabled: bool = True


@dataclass(eq=False)
class _Service:
    cfg: VirtualServer
    rss: list[_Dest]
    sorry: _Dest | None
    quorum_up: bool = False
    checks: list[_Check] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.cfg.name


def _dest(rs: RealServer | SorryServer, sorry: bool = False) -> _Dest:
    if isinstance(rs, SorryServer):
        d = _Dest(rs.name, str(rs.address), rs.port, 1, rs.inhibit, sorry=True)
    else:
        d = _Dest(rs.name, str(rs.address), rs.port, rs.weight, rs.inhibit_on_failure,
                  notify_up=rs.notify_up, notify_down=rs.notify_down)
    d.effective_weight = d.iweight
    return d


class HealthState:
    def __init__(self, lvs: LvsConfig, rng: Callable[[], float]) -> None:
        self.lvs = lvs
        self.rng = rng
        self.services: list[_Service] = []
        self.checks: dict[CheckerId, _Check] = {}
        self.out: list[Action] = []
        for vs in lvs.virtual_servers:
            svc = _Service(vs, [_dest(rs) for rs in vs.real_servers],
                           _dest(vs.sorry_server) if vs.sorry_server else None)
            self.services.append(svc)
            for rs, dest in zip(vs.real_servers, svc.rss, strict=True):
                for i, cfg in enumerate(rs.checkers):
                    check = _Check((vs.name, rs.name, i), cfg, dest, svc,
                                   enabled=not vs.ha_suspend)
                    svc.checks.append(check)
                    self.checks[check.id] = check

    # -- inputs ------------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """keepalived's validate_check_config + init_services + register_checkers_thread."""
        for check in self.checks.values():
            self.begin(check, now)
        for svc in self.services:
            svc.quorum_up = self._weight_sum(svc) >= svc.cfg.quorum + svc.cfg.hysteresis
        for svc in self.services:
            self.init_service(svc, svc.rss)
        return self._flush()

    def begin(self, check: _Check, now: float) -> None:
        """A new checker: down first with alpha, its first probe a bootstrap + warmup away."""
        if check.cfg.alpha:
            self._set_checker_state(check, False)
            check.dest.alive = False
        self.schedule(check, now)

    def schedule(self, check: _Check, now: float) -> None:
        """A checker's first round: the first failure decides at once."""
        check.retry_it = check.cfg.retry
        warmup = check.cfg.warmup * self.rng() if check.cfg.warmup else 0.0
        check.next = now + BOOTSTRAP_DELAY + warmup
        self._log(f"{'A' if check.enabled else 'Dea'}ctivating healthchecker for service "
                  f"{check.dest.name} for VS {check.svc.name}")

    def init_service(self, svc: _Service, new: list[_Dest], init: bool = True) -> None:
        """keepalived's init_service_rs for the servers `new` (every one at start, those a
        reload added later), then the quorum and the sorry server."""
        for d in new:
            if (not d.num_failed and not d.alive) or (d.inhibit and not d.set):
                d.alive = d.alive or not d.num_failed
                self._ipvs(svc, d, "add")
        self._update_quorum(svc, init=init)
        s = svc.sorry
        if s is not None and s.inhibit and not s.set:
            s.num_failed = 1
            self._ipvs(svc, s, "add")
            s.num_failed = 0

    def due(self, now: float) -> list[Probe]:
        """The probes to start now (each checker runs one at a time)."""
        probes = []
        for check in self.checks.values():
            if check.running or check.next > now:
                continue
            if not check.enabled:
                check.next = now + check.cfg.delay_loop
                continue
            check.running = True
            check.last_ran = now
            probes.append(Probe(check.id, check.cfg, check.url_it or 0))
        return probes

    def result(self, cid: CheckerId, res: ProbeResult, now: float) -> list[Action]:
        check = self.checks.get(cid)
        if check is None:  # a checker a reload removed while its probe ran
            return []
        check.running = False
        if res.unavailable:
            check.next = now + check.cfg.delay_loop
            return []
        if check.cfg.kind == TCP_CHECK:
            self._tcp(check, res.ok, now)
        elif check.cfg.kind in (HTTP_GET, SSL_GET):
            self._http(check, res, now)
        elif check.cfg.kind == MISC_CHECK:
            self._misc(check, res, now)
        return self._flush()

    def set_enabled(self, service: str, enabled: bool) -> list[Action]:
        for svc in self.services:
            if svc.name != service or not svc.cfg.ha_suspend:
                continue
            for check in svc.checks:
                if check.enabled != enabled:
                    self._log(f"{'Activat' if enabled else 'Suspend'}ing healthchecker for "
                              f"service {check.dest.name} for VS {svc.name}")
                    check.enabled = enabled
        return self._flush()

    def stop(self) -> list[Action]:
        """keepalived's clear_services at shutdown: every destination leaves the table; with
        omega the real servers' notify_down and the quorum_down scripts run."""
        for svc in self.services:
            s = svc.sorry
            if s is not None and s.set:
                s.inhibit, saved = False, s.inhibit
                s.alive = False
                self._ipvs(svc, s, "del")
                s.inhibit = saved
            for d in svc.rss:
                inhibited = "(inhibited) " if d.inhibit and not d.alive else ""
                self._log(f"Shutting down {inhibited}service {d.name} from VS {svc.name}")
                if not d.set:
                    continue
                d.inhibit, saved = False, d.inhibit
                was_alive, d.alive = d.alive, False
                self._ipvs(svc, d, "del")
                d.inhibit = saved
                if was_alive and svc.cfg.omega:
                    self._rs_notifies(svc, d, stopping=True)
            svc.quorum_up = False
            if svc.cfg.omega and svc.cfg.quorum_down is not None:
                self.out.append(RunScript(svc.cfg.quorum_down, "quorum_down", svc.name,
                                          stopping=True))
        return self._flush()

    def next_deadline(self) -> float | None:
        times = [c.next for c in self.checks.values() if not c.running]
        return min(times) if times else None

    # -- views (tests, dumps) ----------------------------------------------------------------

    def table(self, service: str) -> dict[str, tuple[bool, int, bool]]:
        """server name -> (present, weight, alive)."""
        for svc in self.services:
            if svc.name == service:
                dests = svc.rss + ([svc.sorry] if svc.sorry else [])
                return {d.name: (d.set, d.table_weight, d.alive) for d in dests}
        raise KeyError(service)

    def has_quorum(self, service: str) -> bool:
        return next(s.quorum_up for s in self.services if s.name == service)

    def checker(self, cid: CheckerId) -> tuple[bool, bool, int]:
        """(is_up, has_run, retry_it)."""
        c = self.checks[cid]
        return c.is_up, c.has_run, c.retry_it

    # -- the checkers' epilogs ---------------------------------------------------------------

    def _tcp(self, c: _Check, ok: bool, now: float) -> None:
        """check_tcp.c tcp_epilog."""
        if ok or c.retry_it >= c.cfg.retry:
            delay = c.cfg.delay_loop
            c.retry_it = 0
            if ok and (not c.is_up or not c.has_run):
                self._log(f"TCP connection to {c.dest.name} success.")
                self._update_checker(c, True)
            elif not ok and (c.is_up or not c.has_run):
                if c.cfg.retry and c.has_run:
                    self._log(f"TCP_CHECK on service {c.dest.name} failed after {c.cfg.retry} "
                              "retries.")
                else:
                    self._log(f"TCP_CHECK on service {c.dest.name} failed.")
                self._update_checker(c, False)
        else:
            delay = c.cfg.delay_before_retry
            c.retry_it += 1
        c.has_run = True
        c.next = now + delay

    def _http(self, c: _Check, res: ProbeResult, now: float) -> None:
        """check_http.c http_handle_response / timeout_epilog / epilog."""
        if res.ok:
            if not c.is_up:
                url = c.cfg.urls[c.url_it or 0]
                self._log(f"{res.message or 'HTTP status code'} success to {c.dest.name} "
                          f"url({url.path})")
            self._http_epilog(c, "new", now)
        elif c.is_up or not c.has_run:
            c.has_run = True
            self._http_epilog(c, "retry", now)
        else:
            self._http_epilog(c, "failed", now)

    def _http_epilog(self, c: _Check, method: str, now: float) -> None:
        urls = len(c.cfg.urls)
        if method == "new":
            c.url_it = None if c.url_it is None or c.url_it + 1 >= urls else c.url_it + 1
            c.retry_it = 0
        elif method == "retry":
            c.retry_it += 1
        if method == "new" and c.url_it is None and c.failed_url is None:
            if not c.is_up or not c.has_run:
                self._log(f"Remote Web server {c.dest.name} succeed on service.")
                self._update_checker(c, True)
                c.has_run = True
            c.url_it = 0
            c.retry_it = 0
        elif method == "retry" and c.retry_it > c.cfg.retry:
            if c.is_up or not c.has_run:
                if c.has_run and c.cfg.retry:
                    self._log(f"HTTP_CHECK on service {c.dest.name} failed after "
                              f"{c.retry_it - 1} retries.")
                else:
                    self._log(f"HTTP_CHECK on service {c.dest.name} failed.")
                self._update_checker(c, False)
            c.failed_url = c.url_it
        elif method == "new" and c.failed_url is not None:
            c.failed_url = None  # the failed url passes again: check them all
            c.url_it = 0
            c.retry_it = 0
        if method == "new":
            delay = c.cfg.delay_loop
            if not c.has_run:
                c.retry_it = c.cfg.retry
        elif c.failed_url is not None:
            delay = max(c.cfg.delay_before_retry, c.cfg.delay_loop)
        else:
            delay = c.cfg.delay_before_retry
        if c.cfg.fast_recovery and (not c.has_run or (not c.is_up and c.failed_url is None)):
            delay = 0.0
        c.next = now + delay

    def _misc(self, c: _Check, res: ProbeResult, now: float) -> None:
        """check_misc.c misc_check_child_thread."""
        status = res.exit_status
        success = False
        decided: str | None = None
        script = c.cfg.misc_path[0] if c.cfg.misc_path else ""
        if status is not None and (status == 0 or (c.cfg.misc_dynamic and 2 <= status <= 255)):
            if status != c.last_exit_code:
                weight = c.dest.effective_weight - c.cur_weight
                c.cur_weight = status - 2 - c.dest.iweight if status else 0
                self._update_weight(c.svc, c.dest, weight + c.cur_weight)
                c.last_exit_code = status
            if not c.is_up or not c.has_run:
                decided, success = "succeeded", True
            c.retry_it = 0
        elif c.is_up or not c.has_run:
            if status is not None:
                why = f" (exited with status {status})"
            elif res.timed_out:
                why = ""
            else:
                why = f" (due to signal {res.signal})"
            if c.retry_it < c.cfg.retry:
                c.retry_it += 1
            else:
                c.retry_it = 0
                # keepalived drops the dynamic part of the weight here only for an exit status;
                # halb does it for a timeout or signal too, and recomputes it on recovery
                c.dest.effective_weight -= c.cur_weight
                c.cur_weight = 0
                c.last_exit_code = None if status is None else status
                decided = ("timed out" if res.timed_out else "failed") + why
        if decided is not None:
            self._log(f"Misc check for [{c.dest.name} VS {c.svc.name}] by [{script}] {decided}.")
            self._update_checker(c, success)
            if not success:
                c.cur_weight = 0
        delay = c.cfg.delay_before_retry if c.retry_it else c.cfg.delay_loop
        c.next = max(c.last_ran + delay, now + MIN_DELAY)
        c.has_run = True

    # -- ipwrapper.c -------------------------------------------------------------------------

    def _set_checker_state(self, c: _Check, up: bool) -> None:
        if c.is_up == up:
            return
        c.is_up = up
        if not up:
            c.dest.num_failed += 1
        elif c.dest.num_failed:
            c.dest.num_failed -= 1

    def _update_checker(self, c: _Check, alive: bool) -> None:
        """update_svr_checker_state."""
        d = c.dest
        if c.is_up == alive:
            if not c.has_run:
                if c.cfg.alpha or not alive:
                    self._rs_notifies(c.svc, d)
                c.has_run = True
            return
        c.has_run = True
        if alive and d.num_failed <= 1:
            self._perform(c.svc, d, True)
        elif not alive and d.num_failed == 0:
            self._perform(c.svc, d, False)
        self._set_checker_state(c, alive)

    def _perform(self, svc: _Service, d: _Dest, alive: bool) -> None:
        """perform_svr_state: add a server that came up, remove one that went down."""
        if d.alive == alive:
            return
        verb = ("Enabl" if d.inhibit else "Add") if alive else ("Disabl" if d.inhibit else "Remov")
        prep = "of" if d.inhibit else ("to" if alive else "from")
        self._log(f"{verb}ing service {d.name} {prep} VS {svc.name}")
        d.alive = alive
        if svc.quorum_up or svc.sorry is None or not svc.sorry.alive:
            self._ipvs(svc, d, "add" if alive else "del")
        self._sync(svc, d)
        self._rs_notifies(svc, d)
        self._update_quorum(svc, init=False)

    def _weight_sum(self, svc: _Service) -> int:
        return sum(real_weight(d.effective_weight) for d in svc.rss if d.alive)

    def _update_quorum(self, svc: _Service, init: bool) -> None:
        """update_quorum_state, with hysteresis: gained at quorum + hysteresis, lost below
        quorum - hysteresis."""
        q, h = svc.cfg.quorum, svc.cfg.hysteresis
        weight_sum = self._weight_sum(svc)
        threshold = q + (-1 if svc.quorum_up else 1) * h
        s = svc.sorry
        if not svc.quorum_up and weight_sum >= threshold:
            svc.quorum_up = True
            self._log(f"Gained quorum {q}+{h}={threshold} <= {weight_sum} for VS {svc.name}")
            if s is not None and s.alive:
                self._log(f"{'Disabling' if s.inhibit else 'Removing'} sorry server {s.name} "
                          f"from VS {svc.name}")
                s.alive = False
                self._ipvs(svc, s, "del")
                self._pool(svc, add=True)
            self._vs_notifies(svc)
        elif ((svc.quorum_up and (not weight_sum or weight_sum < threshold)) or
              (init and not svc.quorum_up and s is not None and not s.alive)):
            svc.quorum_up = False
            self._log(f"{'Starting with quorum down' if init else 'Lost quorum'} {q}-{h}="
                      f"{threshold} > {weight_sum} for VS {svc.name}")
            if s is not None and not s.alive:
                self._log(f"{'Enabling' if s.inhibit else 'Adding'} sorry server {s.name} to VS "
                          f"{svc.name}")
                self._pool(svc, add=False)
                s.alive = True
                self._ipvs(svc, s, "add")
            self._vs_notifies(svc)

    def _pool(self, svc: _Service, add: bool) -> None:
        """perform_quorum_state: put the alive servers back, or take them out for the sorry
        server."""
        self._log(f"{'Adding alive servers to' if add else 'Removing alive servers from'} the "
                  f"pool for VS {svc.name}")
        for d in svc.rss:
            if d.alive:
                self._ipvs(svc, d, "add" if add else "del")

    def _update_weight(self, svc: _Service, d: _Dest, weight: int) -> None:
        """update_svr_wgt."""
        new, old = real_weight(weight), real_weight(d.effective_weight)
        d.effective_weight = weight
        if new == old:
            return
        self._log(f"Changing weight from {old} to {new} for {'' if d.alive else 'in'}active "
                  f"service {d.name} of VS {svc.name}")
        if d.set and d.alive and (svc.quorum_up or svc.sorry is None or not svc.sorry.alive):
            self._ipvs(svc, d, "edit")
        self._update_quorum(svc, init=False)

    def _ipvs(self, svc: _Service, d: _Dest, cmd: str) -> None:
        """ipvs_cmd's bookkeeping: inhibit_on_failure turns a removal into weight 0."""
        if cmd == "del" and d.inhibit:
            if d.set:
                d.table_weight = 0
        elif cmd == "add" and d.inhibit and d.set:
            d.table_weight = real_weight(d.effective_weight)
        elif cmd == "add" and not d.set:
            d.set = True
            d.table_weight = 0 if d.inhibit and d.num_failed else real_weight(d.effective_weight)
        elif cmd == "del" and d.set:
            d.set = False
            d.table_weight = 0
        elif cmd == "edit" and d.set:
            d.table_weight = real_weight(d.effective_weight)
        self._sync(svc, d)

    def _sync(self, svc: _Service, d: _Dest) -> None:
        now = (d.set, d.table_weight, d.alive)
        if now != d.emitted and (d.emitted is not None or d.set or d.alive):
            self.out.append(HealthChanged(svc.name, d.name, d.address, d.port, d.alive,
                                          d.table_weight, d.set, d.sorry))
        d.emitted = now

    def _rs_notifies(self, svc: _Service, d: _Dest, stopping: bool = False) -> None:
        script = d.notify_up if d.alive else d.notify_down
        if script is not None:
            self.out.append(RunScript(script, "notify_up" if d.alive else "notify_down",
                                      svc.name, d.name, stopping))

    def _vs_notifies(self, svc: _Service) -> None:
        script = svc.cfg.quorum_up if svc.quorum_up else svc.cfg.quorum_down
        if script is not None:
            self.out.append(RunScript(script, "quorum_up" if svc.quorum_up else "quorum_down",
                                      svc.name))

    def _log(self, message: str) -> None:
        self.out.append(Log(message))

    def _flush(self) -> list[Action]:
        out, self.out = self.out, []
        return out
