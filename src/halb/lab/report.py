"""PURE. `halb lab report`: one HTML page from the scenario results, halb beside the peers.

For each scenario (results/<mode>/<scenario>.json, written by halb.lab.runner): the seed and
its expectation; per mode a timeline drawn here as inline SVG (successful responses/s as a
green line, failed requests/s as red bars, each fault or repair a dashed line with its label,
and a band below naming the host that held the VIP); a table of figures with one column per
mode (requests, failed, lost, longest gap without a success, latency, who served); the checks.
A summary table opens the page. No plotting library: the SVG is a few paths.
"""

from __future__ import annotations

import html
import json
import pathlib
import time
from typing import Any

MODES = ("halb", "peers")
MODE_TITLE = {"halb": "halb (halb keepalived + halb nginx)",
              "peers": "peers (keepalived + nginx; halb's L4 director)"}
COLORS = {"dir1": "#4e79a7", "dir2": "#f28e2b", "ngx1": "#59a14f", "ngx2": "#b07aa1",
          "-": "#dddddd"}
W, H, PAD_L, PAD_R, PAD_T, PLOT_H, BAND_H = 640, 230, 46, 10, 12, 150, 14


def load_results(results: pathlib.Path) -> dict[str, dict[str, dict[str, Any]]]:
    """{scenario: {mode: result}} from results/<mode>/*.json."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for mode in MODES:
        for path in sorted((results / mode).glob("*.json")) if (results / mode).is_dir() else []:
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            out.setdefault(data["scenario"], {})[mode] = data
    return out


def _e(s: object) -> str:
    return html.escape(str(s))


def svg_timeline(r: dict[str, Any]) -> str:
    """The timeline of one run as an SVG element."""
    series = r.get("series") or []
    duration = float(r.get("duration") or (series[-1][0] + 0.5 if series else 1.0))
    step = series[1][0] - series[0][0] if len(series) > 1 else 0.5
    peak = max([1.0, *(s[1] for s in series), *(s[2] for s in series)])
    top = peak * 1.15
    pw = W - PAD_L - PAD_R

    def x(t: float) -> float:
        return PAD_L + max(0.0, min(t, duration)) / duration * pw

    def y(v: float) -> float:
        return PAD_T + PLOT_H - v / top * PLOT_H

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
             f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="10">',
             f'<rect x="{PAD_L}" y="{PAD_T}" width="{pw}" height="{PLOT_H}" fill="#fafafa" '
             'stroke="#ccc"/>']
    for frac in (0.0, 0.5, 1.0):
        v = top * frac
        parts.append(f'<text x="{PAD_L - 4}" y="{y(v) + 3:.1f}" text-anchor="end">{v:.0f}</text>')
        parts.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                     'stroke="#eee"/>')
    for t in range(0, int(duration) + 1, max(1, int(duration // 8) or 1)):
        parts.append(f'<text x="{x(t):.1f}" y="{PAD_T + PLOT_H + BAND_H + 24}" '
                     f'text-anchor="middle">{t}s</text>')
    bar_w = max(1.0, step / duration * pw - 1)
    for t, _good, bad in series:
        if bad > 0:
            parts.append(f'<rect x="{x(t):.1f}" y="{y(bad):.1f}" width="{bar_w:.1f}" '
                         f'height="{PAD_T + PLOT_H - y(bad):.1f}" fill="#e15759" opacity="0.8">'
                         f'<title>{bad:g} failed/s at {t:g}s</title></rect>')
    if series:
        pts = " ".join(f"{x(t + step / 2):.1f},{y(good):.1f}" for t, good, _bad in series)
        parts.append(f'<polyline points="{pts}" fill="none" stroke="#2e8b57" '
                     'stroke-width="1.6"/>')
    for t, label in r.get("events") or []:
        parts.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{PAD_T}" '
                     f'y2="{PAD_T + PLOT_H + BAND_H}" stroke="#333" stroke-dasharray="3,3"/>')
        parts.append(f'<text x="{x(t) + 3:.1f}" y="{PAD_T + 10}" fill="#333">'
                     f'{_e(label[:40])}</text>')
    vip = str((r.get("targets") or ["-"])[0]).rsplit(":", 1)[0]
    trans = (r.get("transitions") or {}).get(vip) or []
    band_y = PAD_T + PLOT_H + 2
    for i, (t, who) in enumerate(trans):
        end = trans[i + 1][0] if i + 1 < len(trans) else duration
        if end <= 0 or t >= duration:
            continue
        color = COLORS.get(who, "#999")
        parts.append(f'<rect x="{x(t):.1f}" y="{band_y}" width="{max(0.5, x(end) - x(t)):.1f}" '
                     f'height="{BAND_H - 2}" fill="{color}"><title>{_e(vip)} on {_e(who)} '
                     f'from {(t if t > 0 else 0.0):g}s</title></rect>')
        if x(end) - x(t) > 28:
            parts.append(f'<text x="{x(max(t, 0)) + 2:.1f}" y="{band_y + 10}" fill="#fff">'
                         f'{_e(who)}</text>')
    parts.append(f'<text x="{PAD_L}" y="{H - 2}" fill="#555">green: successful responses/s · '
                 f'red: failed requests/s · band: holder of {_e(vip)}</text>')
    parts.append("</svg>")
    return "".join(parts)


ROWS = (("requests (scheduled)", lambda f: f"{f['requests']} ({f['scheduled']})"),
        ("successful", lambda f: f["ok"]),
        ("failed", lambda f: f"{f['failed']}" + (f" {f['errors']}" if f["errors"] else "")),
        ("lost", lambda f: f["lost"]),
        ("longest gap without success", lambda f: f"{f['longest_gap']:.2f} s at "
                                                  f"{f['gap_at']:.1f} s"),
        ("latency p50 / p99 / max", lambda f: f"{f['p50'] * 1000:.1f} / {f['p99'] * 1000:.1f} / "
                                              f"{f['max_latency'] * 1000:.1f} ms"),
        ("VRRP holder (served)", lambda f: _counts(f["holders"])),
        ("nginx node (served)", lambda f: _counts(f["nginx"])),
        ("backend (served)", lambda f: _counts(f["backends"])))


def vip_moves(r: dict[str, Any]) -> str:
    """The target VIP's changes of holder after the first event, timed from that event
    ("dir2 after 3.1 s, dir1 after 13.2 s"), or "stayed on dir1"."""
    vip = str((r.get("targets") or ["-"])[0]).rsplit(":", 1)[0]
    trans = (r.get("transitions") or {}).get(vip) or []
    events = r.get("events") or []
    if not trans:
        return "-"
    if not events:
        return f"stayed on {trans[-1][1]}"
    t0 = events[0][0]
    moves = [f"{who} after {t - t0:.1f} s" for t, who in trans if t > t0 and who != "-"]
    return ", ".join(moves) or f"stayed on {trans[0][1]}"


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "-"


def _scenario(name: str, runs: dict[str, dict[str, Any]]) -> str:
    any_run = next(iter(runs.values()))
    modes = [m for m in MODES if m in runs]
    out = [f'<section id="{_e(name)}"><h2>{_e(any_run["title"])} <small>({_e(name)})</small>'
           f'</h2><p class="seed">{_e(any_run["seed"])} — {_e(any_run["expect"])}</p>']
    out.append('<div class="plots">')
    for m in modes:
        verdict = "PASS" if runs[m]["passed"] else "FAIL"
        out.append(f'<figure><figcaption>{_e(MODE_TITLE[m])} — <b class="{verdict}">'
                   f'{verdict}</b></figcaption>{svg_timeline(runs[m])}</figure>')
    out.append("</div><table><tr><th></th>" + "".join(f"<th>{_e(m)}</th>" for m in modes)
               + "</tr>")
    for label, fn in ROWS:
        out.append(f"<tr><td>{_e(label)}</td>" + "".join(
            f"<td>{_e(fn(runs[m]['figures']))}</td>" for m in modes) + "</tr>")
    out.append("<tr><td>VIP holder changes (from the first fault)</td>" + "".join(
        f"<td>{_e(vip_moves(runs[m]))}</td>" for m in modes) + "</tr>")
    out.append("<tr><td>checks</td>" + "".join(
        "<td><ul>" + "".join(
            f'<li class="{"PASS" if c["passed"] else "FAIL"}">{"✓" if c["passed"] else "✗"} '
            f'{_e(c["what"])}{(" — " + _e(c["detail"])) if c["detail"] else ""}</li>'
            for c in runs[m]["checks"]) + "</ul></td>" for m in modes) + "</tr></table>")
    out.append("</section>")
    return "".join(out)


CSS = """body{font-family:sans-serif;max-width:1340px;margin:1em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;
vertical-align:top;font-size:13px}th{background:#f3f3f3}.PASS{color:#2e7d32}.FAIL{color:#c62828}
.plots{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}figcaption{font-size:13px}
.seed{color:#555}ul{margin:0;padding-left:1em}small{color:#777;font-weight:normal}"""


def render(results: dict[str, dict[str, dict[str, Any]]], generated: str = "") -> str:
    order = ["backup_stop", "master_stop", "master_kill", "nginx_check", "nginx_node_stop",
             "backend_kill", "ip_hash", "dual_master"]
    names = [n for n in order if n in results] + sorted(set(results) - set(order))
    head = ("<tr><th>scenario</th>" + "".join(f"<th>{m}</th>" for m in MODES) + "</tr>")
    rows = []
    for n in names:
        cells = []
        for m in MODES:
            r = results[n].get(m)
            if r is None:
                cells.append("<td>-</td>")
                continue
            f = r["figures"]
            verdict = "PASS" if r["passed"] else "FAIL"
            cells.append(f'<td><b class="{verdict}">{verdict}</b> {f["failed"]} failed, '
                         f'{f["lost"]} lost, gap {f["longest_gap"]:.2f} s</td>')
        rows.append(f'<tr><td><a href="#{_e(n)}">{_e(n)}</a></td>{"".join(cells)}</tr>')
    body = "".join(_scenario(n, results[n]) for n in names)
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>halb lab report"
            f"</title><style>{CSS}</style></head><body><h1>halb lab report</h1>"
            f"<p>The seeds' cluster (two LVS directors with keepalived, DR to two nginx nodes, "
            f"three backends) in network namespaces, each fault under a steady load from the "
            f"client. {_e(generated)}</p><table>{head}{''.join(rows)}</table>{body}"
            f"</body></html>\n")


def write_report(results: pathlib.Path, out: pathlib.Path) -> None:
    data = load_results(results)
    stamp = time.strftime("Generated %Y-%m-%d %H:%M:%S UTC.", time.gmtime())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(data, stamp))
