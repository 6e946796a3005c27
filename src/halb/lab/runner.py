"""Runs a scenario on the lab: load, samples, steps, progress line, figures, checks, result.

`run(cluster, scenario, results)`:
1. brings the cluster to rest (`Cluster.restore`: every role running, VIPs home, tables full);
2. samples every 50 ms which host holds each VIP (one rtnetlink dump per namespace);
3. starts the load driver in the client namespace (halb.lab.load, its own process);
4. runs the steps at their times, recording each as an event on the timeline;
5. shows a progress line (requests, failures, VIP holder, last event) while the load runs;
6. computes the figures and the checks and writes `<results>/<mode>/<scenario>.json`
   (records, samples, events, figures, checks) for `halb lab report`;
7. brings the cluster back to rest (unless `restore_after` is false: the lab goes down next).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import threading
import time
from typing import IO, Any

from halb.lab import analysis as A
from halb.lab import plan
from halb.lab.cluster import Cluster
from halb.lab.scenarios import Run, Scenario

SAMPLE_EVERY = 0.05
VIPS = (plan.VIP, plan.VIP1, plan.VIP2)


class Sampler(threading.Thread):
    """Which hosts hold each VIP, every SAMPLE_EVERY seconds (hosts off the LAN excluded)."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(name="lab-sampler", daemon=True)
        self.cluster = cluster
        self.samples: list[tuple[float, dict[str, list[str]]]] = []
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def take(self) -> None:
        hosts = [h for h in (*plan.DIRECTORS, *plan.NGINX)
                 if h.name not in self.cluster.offline]
        held: dict[str, list[str]] = {v: [] for v in VIPS}
        for h in hosts:
            addrs = set(self.cluster.addresses(h.name))
            for v in VIPS:
                if v in addrs:
                    held[v].append(h.name)
        self.samples.append((time.monotonic(), held))

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                self.take()
                self.halt.wait(SAMPLE_EVERY)
        except BaseException as e:  # reported by the runner
            self.error = e


def _progress(out: IO[str], text: str, final: bool = False) -> None:
    if out.isatty():
        out.write("\r\033[K" + text + ("\n" if final else ""))
    elif final:
        out.write(text + "\n")
    out.flush()


def _read(path: pathlib.Path) -> tuple[list[dict[str, Any]], int | None]:
    records: list[dict[str, Any]] = []
    scheduled = None
    if not path.exists():
        return records, None
    for line in path.read_text().splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue  # a line being written
        if item.get("done"):
            scheduled = int(item["scheduled"])
        else:
            records.append(item)
    return records, scheduled


def run(cluster: Cluster, sc: Scenario, results: pathlib.Path,
        out: IO[str] = sys.stderr, restore_after: bool = True) -> dict[str, Any]:
    mode = cluster.mode
    where = results / mode
    where.mkdir(parents=True, exist_ok=True)
    raw = where / f"{sc.name}.records.jsonl"
    raw.unlink(missing_ok=True)
    if not out.isatty():  # a log: one line when it starts, one when it ends
        out.write(f"[{mode}] {sc.name:<16} {sc.title} ({sc.duration:g} s under load)...\n")
        out.flush()
    cluster.restore()
    sampler = Sampler(cluster)
    sampler.take()
    sampler.start()
    argv = ["ip", "netns", "exec", cluster.ns("client"), sys.executable, "-m", "halb.lab.load",
            "--rate", str(sc.rate), "--duration", str(sc.duration), "--path", sc.path,
            "--out", str(raw), "--timeout", "3"]
    for t in sc.targets:
        argv += ["--target", t]
    for s in sc.sources:
        argv += ["--source", s]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    events: list[tuple[float, str]] = []
    errors: list[str] = []
    t0 = time.monotonic()
    load = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for step in sc.steps:
            while time.monotonic() < t0 + step.at:
                _show(out, sc, mode, raw, t0, events, sampler)
                time.sleep(min(0.25, max(0.0, t0 + step.at - time.monotonic())))
            started = time.monotonic()
            try:
                step.action(cluster)
            except Exception as e:  # a step that failed is a failed check, not a crash
                errors.append(f"{step.label}: {e}")
                events.append((time.monotonic(), f"FAILED {step.label}"))
                continue
            events.append((time.monotonic() if step.wait else started, step.label))
        while load.poll() is None:
            _show(out, sc, mode, raw, t0, events, sampler)
            time.sleep(0.25)
        stderr = load.stderr.read().decode(errors="replace") if load.stderr else ""
        if load.returncode != 0:
            errors.append(f"load driver exited {load.returncode}: {stderr.strip()[-500:]}")
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
        if load.stderr:
            load.stderr.close()
        sampler.halt.set()
        sampler.join(5)
    t_end = t0 + sc.duration
    records, scheduled = _read(raw)
    A.attribute(records, sampler.samples)
    fig = A.figures(records, scheduled if scheduled is not None else len(records), t0, t_end)
    result_run = Run(records, sampler.samples, events, t0, t_end, fig, sc.rate)
    checks = sc.checks(result_run)
    checks += [(f"step ran: {e.split(':')[0]}", False, e) for e in errors]
    if sampler.error is not None:
        checks.append(("VIP sampler", False, repr(sampler.error)))
    passed = all(c[1] for c in checks)
    result = {
        "scenario": sc.name, "title": sc.title, "seed": sc.seed, "expect": sc.expect,
        "notes": sc.notes, "mode": mode, "duration": sc.duration, "rate": sc.rate,
        "targets": list(sc.targets), "passed": passed, "figures": fig.as_dict(),
        "checks": [{"what": w, "passed": p, "detail": d} for w, p, d in checks],
        "events": [(round(t - t0, 3), label) for t, label in events],
        "series": A.series(records, t0, t_end),
        "transitions": {v: A.transitions(sampler.samples, v, t0) for v in VIPS},
        "records": [{**r, "t": round(r["t"] - t0, 4)} for r in records],
        "when": time.time(),
    }
    (where / f"{sc.name}.json").write_text(json.dumps(result))
    raw.unlink(missing_ok=True)
    verdict = "PASS" if passed else "FAIL"
    _progress(out, f"[{mode}] {sc.name:<16} {verdict}  {fig.ok}/{fig.scheduled} ok, "
                   f"{fig.failed} failed, {fig.lost} lost, longest gap {fig.longest_gap:.2f} s",
              final=True)
    for what, ok, detail in checks:
        if not ok:
            out.write(f"      FAILED: {what} ({detail})\n")
    try:
        if restore_after:
            cluster.restore()
    except TimeoutError as e:
        out.write(f"      the lab did not settle after {sc.name}: {e}\n")
        result["passed"] = False
    return result


def _show(out: IO[str], sc: Scenario, mode: str, raw: pathlib.Path, t0: float,
          events: list[tuple[float, str]], sampler: Sampler) -> None:
    if not out.isatty():
        return
    records, _ = _read(raw)
    good = sum(1 for r in records if A.ok(r["status"]))
    held = sampler.samples[-1][1] if sampler.samples else {}
    vip = sc.targets[0].rsplit(":", 1)[0]
    last = events[-1][1] if events else "-"
    elapsed = min(time.monotonic() - t0, sc.duration)
    _progress(out, f"[{mode}] {sc.name:<16} {elapsed:5.1f}/{sc.duration:g}s  ok {good:<5} "
                   f"failed {len(records) - good:<4} {vip} on {'+'.join(held.get(vip, [])) or '-'}"
                   f"  | {last}")
