"""DESIGN.md rule 1: modules marked PURE import no asyncio, socket, subprocess or pyroute2.

The check reads each module's source (every import statement, including function-local ones)
and also imports the module in a fresh interpreter to catch transitive imports.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

SRC = pathlib.Path(__file__).resolve().parents[3] / "src"
FORBIDDEN = ("asyncio", "socket", "subprocess", "pyroute2", "selectors", "uvloop")

# The modules DESIGN.md marks PURE (those that exist so far); new pure modules join this list.
PURE = [
    "halb.config.errors",
    "halb.config.lexer",
    "halb.config.values",
    "halb.config.template",
    "halb.config.model",
    "halb.config.nginx_cache",
    "halb.l7.cache_rules",
    "halb.config.nginx",
    "halb.config.nginx_directives",
    "halb.config.nginx_slots",
    "halb.config.nginx_filters",
    "halb.l7.filters.gzip",
    "halb.l7.filters.expires",
    "halb.config.nginx_rewrite",
    "halb.config.rewrite_model",
    "halb.l7.rewrite_text",
    "halb.l7.referer",
    "halb.config.nginx_health",
    "halb.config.nginx_log",
    "halb.config.nginx_ssl",
    "halb.l7.proxy_protocol",
    "halb.l7.realip",
    "halb.l7.routing",
    "halb.l7.uri",
    "halb.l7.proxy_response",
    "halb.config.keepalived",
    "halb.config.keepalived_model",
    "halb.config.keepalived_global",
    "halb.config.keepalived_vrrp",
    "halb.config.keepalived_complete",
    "halb.config.keepalived_lvs",
    "halb.config.keepalived_lvs_model",
    "halb.config.keepalived_lvs_parse",
    "halb.config.keepalived_lvs_vs",
    "halb.config.keepalived_lvs_check",
    "halb.health.events",
    "halb.health.state",
    "halb.health.ipvs",
    "halb.health.reload",
    "halb.health.nginx_check",
    "halb.vrrp.packet",
    "halb.vrrp.machine",
    "halb.vrrp.priority",
    "halb.vrrp.stats",
    "halb.vrrp.notify_args",
    "halb.testing.vrrp_segment",
    "halb.l4.model",
    "halb.l4.ipvsadm_args",
    "halb.l4.ipvsadm_format",
    "halb.l4.ipvsadm_syntax",
    "halb.l4.wire",
    "halb.l4.conntrack",
    "halb.l4.service",
    "halb.l4.entries",
    "halb.l4.nft_rules",
    "halb.l4.nft_plan",
    "halb.lab.plan",
    "halb.lab.analysis",
    "halb.lab.report",
]
PURE_PACKAGES = ["halb.balancing"]


def _modules() -> list[str]:
    mods = list(PURE)
    for pkg in PURE_PACKAGES:
        base = SRC / pkg.replace(".", "/")
        for path in sorted(base.rglob("*.py")) if base.exists() else []:
            rel = path.relative_to(SRC).with_suffix("")
            name = ".".join(rel.parts)
            mods.append(name[: -len(".__init__")] if name.endswith(".__init__") else name)
    return mods


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", _modules())
def test_source_imports_nothing_forbidden(module: str) -> None:
    path = SRC / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = SRC / module.replace(".", "/") / "__init__.py"
    bad = sorted(n for n in _imports(path) if n.split(".")[0] in FORBIDDEN)
    assert not bad, f"{module} is PURE but imports {bad}"


@pytest.mark.parametrize("module", _modules())
def test_import_pulls_in_nothing_forbidden(module: str) -> None:
    code = (
        "import sys\n"
        f"before = set(sys.modules)\nimport {module}\n"
        f"bad = sorted(m for m in set(sys.modules) - before if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "", f"importing {module} loads {out.stdout.strip()}"


def test_the_check_can_fail(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    import asyncio\n")
    assert "asyncio" in _imports(bad)
