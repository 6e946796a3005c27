"""`halb up` refuses what it cannot start with one line and exit status 1, before starting
anything: no configuration file, a configuration nginx -t would refuse (file:line), or one the
quickstart cannot run (no loopback listen, no upstream to start backends for)."""

from __future__ import annotations

from pathlib import Path

import pytest

from halb.cli import up


def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | None) -> tuple[int, str]:
    if text is not None:
        (tmp_path / "nginx.conf").write_text(text)
    code = up.main(["-p", str(tmp_path)])
    out = capsys.readouterr()
    assert out.out == ""  # no URL, no summary: nothing was started
    return code, out.err


def test_missing_configuration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(tmp_path, capsys, None)
    assert code == 1
    assert err == f"halb up: {tmp_path}/nginx.conf: no such configuration file\n"


def test_configuration_error_with_file_and_line(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(tmp_path, capsys, "events {}\nhttp {\n    gzip_com_level 5;\n}\n")
    assert code == 1
    assert err == (f'halb up: [emerg] unknown directive "gzip_com_level" in '
                   f"{tmp_path}/nginx.conf:3\n")


@pytest.mark.parametrize(("http", "why"), [
    ("server { listen 127.0.0.1:18080; return 200; }",
     "no upstream server to start a backend for"),
    ("upstream u { server 198.18.0.1:80; } server { listen 127.0.0.1:18080; }",
     "is not a loopback address"),
])
def test_what_the_quickstart_cannot_run(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        http: str, why: str) -> None:
    code, err = run(tmp_path, capsys, f"events {{}}\nhttp {{ {http} }}\n")
    assert code == 1
    assert err.startswith("halb up: ") and why in err and err.count("\n") == 1, err
