"""NginxConfig.confs(): every level's settings, the one walk over a configuration's levels that
TLS set-up, connection counting and the like share."""

from __future__ import annotations

from halb.config.nginx import load_text


def test_every_level_once_in_order() -> None:
    cfg = load_text(
        "events {}\nhttp {\n"
        " server { listen 127.0.0.1:8001; error_log /dev/null crit;\n"
        "  location /a { root /a; location /a/b { root /ab; } }\n"
        "  location @named { root /named; }\n"
        " }\n"
        " server { listen 127.0.0.1:8002; root /second; }\n"
        "}\n", "/tmp/nginx.conf")
    assert cfg.http is not None
    confs = list(cfg.confs())
    srv1, srv2 = cfg.http.servers
    a = srv1.locations[0]
    expected = [cfg.http.conf, srv1.conf, a.conf, a.children[0].conf,
                srv1.named_locations["@named"].conf, srv2.conf]
    assert [id(c) for c in confs] == [id(c) for c in expected]
    assert [c.root.static for c in confs[2:5]] == ["/a", "/ab", "/named"]


def test_no_http_block() -> None:
    assert list(load_text("events {}\n", "/tmp/nginx.conf").confs()) == []
