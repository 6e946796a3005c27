"""DESIGN.md rule 7: small modules. Every module under src/ stays within the hard limit of 800
lines (aim under ~600: split along a clean seam before a module gets there)."""

from __future__ import annotations

from pathlib import Path

SRC = Path(__file__).resolve().parents[3] / "src"
HARD_LIMIT = 800
# Over the limit for now, with the reason (remove the entry once the module is split).
KNOWN_OVER: dict[str, str] = {}


def test_no_module_over_the_hard_limit() -> None:
    modules = sorted(SRC.rglob("*.py"))
    assert modules, f"no modules found under {SRC}"
    long = {str(p.relative_to(SRC)): n for p in modules
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > HARD_LIMIT}
    new = {k: v for k, v in long.items() if k not in KNOWN_OVER}
    assert not new, f"modules over {HARD_LIMIT} lines (split them): {new}"


def test_every_module_says_what_it_owns() -> None:
    """Each module opens with a docstring (an empty __init__.py needs none)."""
    import ast

    missing = []
    for p in sorted(SRC.rglob("*.py")):
        text = p.read_text(encoding="utf-8")
        if p.name == "__init__.py" and not text.strip():
            continue
        if ast.get_docstring(ast.parse(text)) is None:
            missing.append(str(p.relative_to(SRC)))
    assert not missing, f"modules without a docstring: {missing}"
