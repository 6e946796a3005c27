"""virtual_server configurations through the real keepalived 2.2.7 and through halb.

Each case of tests/unit/config/keepalived_lvs_cases/ is run with `keepalived -t -f NAME.conf`;
halb's messages for the same file must be keepalived's lines, in order (the SECURITY VIOLATION
line is left out: script security is checked by the I/O layer, with the files at hand). The
recorded .expected files must still be what keepalived says. The seeds' LVS configurations agree
too, but for one deliberate difference: keepalived 2.2.7 calls TCP_CHECK's `nb_get_retry` an
unknown keyword, halb takes it as the old name of `retry` (with keepalived's deprecation
warning for HTTP_GET).
"""

from __future__ import annotations

import grp
import os
import pathlib
import pwd
import shutil
import subprocess

import pytest

from halb.config.keepalived import format_error, load
from halb.config.keepalived_lvs import virtual_servers

pytestmark = pytest.mark.peer

UNIT = pathlib.Path(__file__).resolve().parents[2] / "unit" / "config"
CASES = UNIT / "keepalived_lvs_cases"
SEEDS = UNIT / "keepalived_seeds"


def exists(user: str, group: str | None) -> bool:
    try:
        pwd.getpwnam(user)
        if group is not None:
            grp.getgrnam(group)
    except KeyError:
        return False
    return True


def keepalived_says(binary: str, directory: pathlib.Path, name: str) -> list[str]:
    out = subprocess.run([binary, "-t", "-f", name, "-l", "-D"], cwd=directory,
                         capture_output=True, text=True, timeout=30)
    return [line for line in (out.stdout + out.stderr).splitlines()
            if not line.startswith("SECURITY VIOLATION")]


def halb_says(directory: pathlib.Path, name: str) -> list[str]:
    cwd = os.getcwd()
    os.chdir(directory)
    try:
        cfg = virtual_servers(load(name, config_id="vm").config, lookup_user=exists)
    finally:
        os.chdir(cwd)
    return [format_error(w) for w in cfg.warnings if w.level == "warn"]


@pytest.mark.parametrize("name", sorted(p.stem for p in CASES.glob("*.conf")))
def test_case_against_keepalived(name: str, keepalived_binary: str,
                                 tmp_path: pathlib.Path) -> None:
    shutil.copy(CASES / f"{name}.conf", tmp_path)
    theirs = keepalived_says(keepalived_binary, tmp_path, f"{name}.conf")
    assert theirs == (CASES / f"{name}.expected").read_text().splitlines()
    assert halb_says(tmp_path, f"{name}.conf") == theirs


@pytest.mark.parametrize("name", ["002_4-13_lvs_master.conf", "003_lvs_master.conf"])
def test_seed_against_keepalived(name: str, keepalived_binary: str,
                                 tmp_path: pathlib.Path) -> None:
    shutil.copy(SEEDS / name, tmp_path)
    start = next(i for i, line in enumerate((SEEDS / name).read_text().splitlines(), 1)
                 if line.startswith("virtual_server"))
    theirs = [line.replace("Unknown keyword 'nb_get_retry'",
                           "nb_get_retry is deprecated - please use 'retry'")
              for line in keepalived_says(keepalived_binary, tmp_path, name)
              if line.startswith(f"({name}: Line ") and
              int(line.split("Line ", 1)[1].split(")")[0]) >= start]
    assert theirs  # the seeds do have something to say
    assert halb_says(tmp_path, name) == theirs


@pytest.mark.parametrize("name", sorted(p.stem for p in CASES.glob("*.conf")))
def test_cli_config_test_prints_what_keepalived_prints(name: str, keepalived_binary: str,
                                                       tmp_path: pathlib.Path) -> None:
    """`halb keepalived -t` itself: the same lines (the check-script SECURITY VIOLATION
    included) and the same exit code as `keepalived -t`."""
    import sys

    shutil.copy(CASES / f"{name}.conf", tmp_path)
    argv = ["-t", "-f", f"{name}.conf", "-l"]
    theirs = subprocess.run([keepalived_binary, *argv, "-D"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=30)
    ours = subprocess.run([sys.executable, "-m", "halb", "keepalived", *argv], cwd=tmp_path,
                          capture_output=True, text=True, timeout=30)
    assert (ours.stdout + ours.stderr).splitlines() == (theirs.stdout + theirs.stderr).splitlines()
    assert ours.returncode == theirs.returncode
