"""halb.lab.report (pure): the HTML page and its SVG timelines from scenario results."""

from __future__ import annotations

import json
import pathlib
import xml.etree.ElementTree as ET

from halb.lab import report


def result(mode: str, passed: bool, failed: int) -> dict[str, object]:
    return {
        "scenario": "master_stop", "title": "stop the master director", "seed": "seed 000",
        "expect": "VIP <moves>", "notes": [], "mode": mode, "duration": 4.0, "rate": 10.0,
        "targets": ["198.18.0.100:80"], "passed": passed,
        "figures": {"requests": 40, "scheduled": 40, "ok": 40 - failed, "failed": failed,
                    "lost": 0, "longest_gap": 0.7, "gap_at": 2.0, "p50": 0.002, "p99": 0.01,
                    "max_latency": 0.02, "errors": {"refused": failed} if failed else {},
                    "holders": {"dir1": 30, "dir2": 10}, "nginx": {"ngx1": 20, "ngx2": 20},
                    "backends": {"web1": 40}},
        "checks": [{"what": "the VIP moved", "passed": passed, "detail": "['dir2']"}],
        "events": [[1.0, "stop dir1 (master)"], [3.0, "start dir1"]],
        "series": [[0.0, 10.0, 0.0], [0.5, 10.0, 0.0], [1.0, 4.0, 2.0], [1.5, 10.0, 0.0]],
        "transitions": {"198.18.0.100": [[0.0, "dir1"], [1.2, "-"], [1.9, "dir2"]]},
        "records": [],
    }


def test_report_puts_halb_beside_the_peers(tmp_path: pathlib.Path) -> None:
    for mode, passed, failed in (("halb", True, 0), ("peers", False, 2)):
        (tmp_path / mode).mkdir()
        (tmp_path / mode / "master_stop.json").write_text(json.dumps(
            result(mode, passed, failed)))
    out = tmp_path / "report.html"
    report.write_report(tmp_path, out)
    page = out.read_text()
    assert page.count("<svg") == 2 and "stop dir1 (master)" in page
    assert 'class="PASS">PASS' in page and 'class="FAIL">FAIL' in page
    assert "VIP &lt;moves&gt;" in page  # escaped
    assert "{&#x27;refused&#x27;: 2}" in page and "dir1 30, dir2 10" in page


def test_svg_is_well_formed_with_bars_and_the_holder_band() -> None:
    svg = report.svg_timeline(result("halb", True, 0))
    root = ET.fromstring(svg)
    tags = [el.tag.split("}")[1] for el in root.iter()]
    assert tags.count("polyline") == 1
    assert any("failed/s" in (el.text or "") for el in root.iter())  # the red bar's title
    titles = [el.text for el in root.iter() if el.tag.endswith("title")]
    assert any("on dir2" in (t or "") for t in titles)


def test_empty_results_give_a_page(tmp_path: pathlib.Path) -> None:
    report.write_report(tmp_path, tmp_path / "r.html")
    assert "halb lab report" in (tmp_path / "r.html").read_text()


def test_vip_moves_are_timed_from_the_first_fault() -> None:
    assert report.vip_moves(result("halb", True, 0)) == "dir2 after 0.9 s"
    quiet = {**result("halb", True, 0), "events": []}
    assert report.vip_moves(quiet) == "stayed on dir2"
