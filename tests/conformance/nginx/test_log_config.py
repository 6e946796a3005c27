"""`halb nginx -t` against `nginx -t` for the log module's directives, error_log and stub_status:
the same broken configurations give the same message at the same file:line, the same valid
ones load in both (the machinery is test_config_errors.py's)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_config_errors import Case, _ids, _write, halb_says, nginx_says

pytestmark = pytest.mark.peer

EV = "events {}\n"
H = EV + "http {\n"

BROKEN: list[Case] = [
    ("buffered-variable-path", H + " access_log logs/$host.log combined buffer=4k;\n}\n", {}, ""),
    ("conflicting-buffers", H + " access_log logs/a.log combined buffer=4k;\n"
     " server { access_log logs/a.log combined buffer=8k; }\n}\n", {}, ""),
    ("conflicting-flush", H + " access_log logs/a.log combined buffer=4k;\n"
     " access_log logs/a.log combined buffer=4k flush=1s;\n}\n", {}, ""),
    ("conflicting-gzip", H + " access_log logs/a.log combined gzip;\n"
     " access_log logs/a.log combined buffer=64k;\n}\n", {}, ""),
    ("buffer-zero", H + " access_log logs/a.log combined buffer=0;\n}\n", {}, ""),
    ("flush-zero", H + " access_log logs/a.log combined buffer=1k flush=0s;\n}\n", {}, ""),
    ("flush-without-buffer", H + " access_log logs/a.log combined flush=1s;\n}\n", {}, ""),
    ("gzip-level", H + " access_log logs/a.log combined gzip=0;\n}\n", {}, ""),
    ("off-with-args", H + " access_log off combined;\n}\n", {}, ""),
    ("unknown-format", H + " access_log logs/a.log nosuch;\n}\n", {}, ""),
    ("format-in-server", H + " server { log_format x '$uri'; }\n}\n", {}, ""),
    ("open-cache-no-max", H + " open_log_file_cache inactive=20s;\n}\n", {}, ""),
    ("open-cache-bad", H + " open_log_file_cache max=1 bogus;\n}\n", {}, ""),
    ("open-cache-twice", H + " open_log_file_cache max=1;\n open_log_file_cache off;\n}\n", {},
     ""),
    ("stub-status-in-http", H + " stub_status;\n}\n", {}, ""),
    ("stub-status-two-args", H + " server { location /s { stub_status on off; } }\n}\n", {},
     ""),
    ("error-log-level", EV + "error_log logs/e.log verbose;\n", {}, ""),
    ("syslog-no-server", H + " access_log syslog:tag=x;\n}\n", {}, ""),
    ("syslog-unknown-param", H + " access_log syslog:server=127.0.0.1,foo=1;\n}\n", {}, ""),
    ("syslog-facility", H + " access_log syslog:server=127.0.0.1,facility=local9;\n}\n", {},
     ""),
    ("syslog-severity", EV + "error_log syslog:server=127.0.0.1,severity=loud;\n", {}, ""),
    ("syslog-duplicate", H + " access_log syslog:server=127.0.0.1,server=127.0.0.2;\n}\n",
     {}, ""),
    ("syslog-tag-chars", H + " access_log syslog:server=127.0.0.1,tag=a-b;\n}\n", {}, ""),
    ("syslog-tag-long", H + " access_log syslog:server=127.0.0.1,tag=" + "t" * 33 + ";\n}\n",
     {}, ""),
    ("syslog-buffered", H + " access_log syslog:server=127.0.0.1 combined buffer=4k;\n}\n",
     {}, ""),
    ("syslog-bad-port", H + " access_log syslog:server=127.0.0.1:70000;\n}\n", {}, ""),
    ("error-log-two-levels", EV + "error_log logs/e.log warn info;\n", {}, ""),
]

VALID: list[Case] = [
    ("formats-and-logs", H + " log_format main escape=json '{\"a\":\"$remote_addr\"}';\n"
     " log_format Plain '$remote_addr $status';\n"
     " access_log logs/a.log main buffer=16k flush=5s;\n"
     " access_log logs/a.log plain buffer=16k flush=5s;\n"
     " access_log logs/$host.log PLAIN if=$status;\n"
     " access_log logs/z.log.gz combined gzip=4 flush=1m;\n"
     " open_log_file_cache max=100 inactive=1m min_uses=2 valid=2m;\n"
     " error_log logs/http-error.log warn;\n"
     " server { listen 127.0.0.1:8080; access_log off; error_log logs/srv.log info;\n"
     "  location /s { stub_status; access_log logs/s.log; }\n"
     "  location /old { stub_status on; }\n"
     "  location /x { error_log logs/x.log debug; open_log_file_cache off; } }\n}\n", {}, ""),
    ("seed-002-error-log", EV + "error_log logs/error.log notice;\n", {}, ""),
    ("syslog", EV + "error_log syslog:server=127.0.0.1:5514,facility=local1,tag=web warn;\n"
     "http {\n access_log syslog:server=unix:/dev/log,nohostname,severity=notice combined;\n"
     " access_log syslog:server=[::1]:514;\n}\n", {}, ""),
]


@pytest.mark.parametrize("case", BROKEN, ids=_ids(BROKEN))
def test_broken_log_config_same_message(case: Case, nginx_binary: str, tmp_path: Path) -> None:
    conf = _write(tmp_path, case)
    expected = nginx_says(nginx_binary, tmp_path, conf, case[3])
    assert expected is not None, "nginx accepted this configuration"
    assert halb_says(tmp_path, conf, case[3]) == expected


@pytest.mark.parametrize("case", VALID, ids=_ids(VALID))
def test_valid_log_config_loads_in_both(case: Case, nginx_binary: str, tmp_path: Path) -> None:
    conf = _write(tmp_path, case)
    assert nginx_says(nginx_binary, tmp_path, conf, case[3]) is None
    assert halb_says(tmp_path, conf, case[3]) is None
