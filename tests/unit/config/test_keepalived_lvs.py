"""config/keepalived_lvs*.py: virtual_server blocks as keepalived 2.2.7's checker reads them.

keepalived_lvs_cases/*.conf are configurations full of mistakes; *.expected is what Debian's
keepalived 2.2.7 printed for each (`keepalived -t -f NAME.conf`, minus the SECURITY VIOLATION
line, which belongs to the I/O layer): halb must say the same, in the same order
(tests/conformance/keepalived/ re-runs the binary when it is installed). The rest covers the
model: keepalived's defaults and how they are inherited, checkers, groups, the seeds.
"""

from __future__ import annotations

import ipaddress
import pathlib

import pytest

from halb.config.keepalived import FatalConfigError, format_error, load, load_text
from halb.config.keepalived_lvs import virtual_servers
from halb.config.keepalived_lvs_model import (
    DEFAULT_STATUS_CODES,
    HTTP_GET,
    MISC_CHECK,
    SSL_GET,
    TCP_CHECK,
    LvsConfig,
)

HERE = pathlib.Path(__file__).parent
CASES = HERE / "keepalived_lvs_cases"
SEEDS = HERE / "keepalived_seeds"
NO_SUCH_USER = "nosuchuserxx"


def lvs(text: str, **kw: object) -> LvsConfig:
    return virtual_servers(load_text(text, config_id="vm").config, **kw)  # type: ignore[arg-type]


def said(cfg: LvsConfig, level: str = "warn") -> list[str]:
    return [format_error(w).replace("(/etc/keepalived/keepalived.conf: Line ", "(Line ")
            for w in cfg.warnings if w.level == level]


def user_exists(user: str, group: str | None) -> bool:
    return user != NO_SUCH_USER


# -- keepalived's own words ------------------------------------------------------------------

CASE_NAMES = sorted(p.stem for p in CASES.glob("*.conf"))


def test_cases_are_here() -> None:
    assert CASE_NAMES == ["addresses", "cascade", "groups", "options", "values"]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_messages_as_keepalived(name: str) -> None:
    text = (CASES / f"{name}.conf").read_text()
    expected = (CASES / f"{name}.expected").read_text().splitlines()
    loaded = load_text(text, f"{name}.conf", config_id="vm")
    assert loaded.warnings == []  # the virtual_server part says it all here
    cfg = virtual_servers(loaded.config, lookup_user=user_exists)
    assert [format_error(w) for w in cfg.warnings if w.level == "warn"] == expected


def test_an_unknown_block_closes_the_virtual_server_early() -> None:
    cfg = virtual_servers(load_text((CASES / "cascade.conf").read_text(), "c.conf",
                                    config_id="vm").config)
    # keepalived does not enter "bogus_blk {": its "}" ends the virtual_server, whose real
    # servers are then read as unknown top-level keywords and the service has none
    assert cfg.virtual_servers == ()


def test_missing_brace_is_reported_and_the_block_read() -> None:
    cfg = lvs("virtual_server 198.18.0.1 80 {\n protocol TCP\n real_server 198.18.0.2 80\n"
              "  weight 3\n TCP_CHECK {\n }\n}\n")
    assert said(cfg)[0] == "(Line 4) Missing '{' at beginning of configuration block"


def test_missing_parameter_is_fatal() -> None:
    with pytest.raises(FatalConfigError) as e:
        lvs("virtual_server 198.18.0.1 80 {\n protocol TCP\n lb_algo\n}\n")
    assert format_error(e.value) == ("(/etc/keepalived/keepalived.conf: Line 3) *** "
                                     "Configuration line starting `lb_algo` is missing a "
                                     "parameter after keyword `lb_algo` at word position 2")


# -- defaults and inheritance ----------------------------------------------------------------

MINIMAL = """\
virtual_server 198.18.0.10 80 {
    protocol TCP
    lb_algo rr
    lb_kind DR
    real_server 198.18.0.11 80 {
        TCP_CHECK {
        }
        HTTP_GET {
            url {
                path /
            }
        }
        MISC_CHECK {
            misc_path "/bin/check 'a b' c"
        }
    }
}
"""


def test_defaults_are_keepalived_s() -> None:
    cfg = lvs(MINIMAL)
    assert said(cfg) == []
    (vs,) = cfg.virtual_servers
    assert vs.name == "[198.18.0.10]:tcp:80"
    assert (vs.delay_loop, vs.lvs_sched, vs.lvs_method, vs.persistence_timeout) == (
        60.0, "rr", "DR", 0)
    assert (vs.quorum, vs.hysteresis, vs.alpha, vs.omega, vs.inhibit_on_failure) == (
        1, 0, False, False, False)
    (rs,) = vs.real_servers
    assert (rs.name, rs.weight, rs.lvs_method, rs.inhibit_on_failure) == (
        "[198.18.0.11]:tcp:80", 1, "DR", False)
    tcp, http, misc = rs.checkers
    assert tcp.kind == TCP_CHECK
    assert (tcp.connect_ip, tcp.connect_port, tcp.connect_timeout) == (
        ipaddress.ip_address("198.18.0.11"), 80, 5.0)
    assert (tcp.retry, tcp.delay_before_retry, tcp.delay_loop, tcp.warmup, tcp.alpha) == (
        1, 1.0, 60.0, 60.0, False)
    assert http.kind == HTTP_GET
    assert (http.retry, http.delay_before_retry, http.http_protocol) == (1, 3.0, "1.0")
    (url,) = http.urls
    assert (url.path, url.digest, url.status_codes) == ("/", None, DEFAULT_STATUS_CODES)
    assert misc.kind == MISC_CHECK
    assert misc.misc_path == ("/bin/check", "a b", "c")
    assert (misc.retry, misc.delay_before_retry, misc.misc_timeout, misc.misc_dynamic) == (
        0, 1.0, 60.0, False)
    assert misc.connect_ip is None


def test_unset_protocol_scheduler_and_method_get_keepalived_s_defaults() -> None:
    cfg = lvs("virtual_server 198.18.0.10 80 {\n real_server 198.18.0.11 80 {\n }\n}\n")
    assert said(cfg) == [
        "Virtual server [198.18.0.10]:none:80: no protocol set - defaulting to UDP",
        "Virtual server [198.18.0.10]:udp:80: no scheduler set, setting default 'wlc'",
        "Virtual server [198.18.0.10]:udp:80: no forwarding method set, setting default NAT"]
    (vs,) = cfg.virtual_servers
    assert (vs.protocol, vs.lvs_sched, vs.lvs_method) == ("UDP", "wlc", "NAT")


INHERIT = """\
virtual_server 198.18.0.10 80 {
    protocol TCP
    lb_algo wlc
    lb_kind NAT
    delay_loop 10
    connect_timeout 3
    retry 4
    delay_before_retry 2
    warmup 0
    weight 5
    alpha
    inhibit_on_failure
    virtualhost vs.example
    real_server 198.18.0.11 80 {
        TCP_CHECK {
        }
        SSL_GET {
            url {
                path /a
            }
        }
    }
    real_server 198.18.0.12 8080 {
        weight 2
        delay_loop 7
        retry 6
        connect_timeout 1.5
        inhibit_on_failure no
        alpha off
        virtualhost rs.example
        TCP_CHECK {
            connect_timeout 0.25
            retry 0
            delay_before_retry 0.5
            warmup 1
            alpha
        }
        HTTP_GET {
            virtualhost chk.example
            enable_sni
            url {
                path /b
                virtualhost url.example
            }
            url {
                path /c
            }
        }
        MISC_CHECK {
            misc_path /bin/true
            misc_timeout 4
            delay_loop 2
        }
    }
}
"""


def test_checkers_inherit_from_real_and_virtual_servers() -> None:
    cfg = lvs(INHERIT)
    assert said(cfg) == []
    (vs,) = cfg.virtual_servers
    a, b = vs.real_servers
    assert (a.weight, a.alpha, a.inhibit_on_failure) == (5, True, True)
    assert (b.weight, b.alpha, b.inhibit_on_failure, b.port) == (2, False, False, 8080)
    tcp, ssl = a.checkers
    assert (tcp.delay_loop, tcp.connect_timeout, tcp.retry, tcp.delay_before_retry,
            tcp.warmup, tcp.alpha) == (10.0, 3.0, 4, 2.0, 0.0, True)
    assert ssl.kind == SSL_GET
    assert (ssl.retry, ssl.delay_before_retry) == (4, 2.0)
    assert (ssl.default_host, ssl.sni_for(ssl.urls[0])) == ("vs.example", None)
    tcp, http, misc = b.checkers
    assert (tcp.delay_loop, tcp.connect_timeout, tcp.retry, tcp.delay_before_retry,
            tcp.warmup, tcp.alpha) == (7.0, 0.25, 0, 0.5, 1.0, True)
    assert (http.retry, http.delay_before_retry, http.connect_timeout, http.warmup) == (
        6, 2.0, 1.5, 0.0)
    u1, u2 = http.urls
    assert (http.host_for(u1), http.host_for(u2)) == ("url.example", "chk.example")
    assert (http.sni_for(u1), http.sni_for(u2)) == ("url.example", "chk.example")
    # misc_timeout is its own; without one it would be the virtual server's delay_loop
    assert (misc.delay_loop, misc.misc_timeout, misc.retry) == (2.0, 4.0, 6)


def test_real_server_virtualhost_is_the_host_header_but_not_the_sni() -> None:
    cfg = lvs(INHERIT.replace("virtualhost chk.example\n", ""))
    http = cfg.virtual_servers[0].real_servers[1].checkers[1]
    assert (http.host_for(http.urls[1]), http.sni_for(http.urls[1])) == (
        "rs.example", "vs.example")


def test_misc_timeout_defaults_to_the_virtual_server_delay_loop() -> None:
    cfg = lvs(MINIMAL.replace("lb_algo rr", "lb_algo rr\n    delay_loop 9").replace(
        "MISC_CHECK {", "MISC_CHECK {\n            delay_loop 2"))
    misc = cfg.virtual_servers[0].real_servers[0].checkers[2]
    assert (misc.delay_loop, misc.misc_timeout) == (2.0, 9.0)


# -- values ----------------------------------------------------------------------------------


def test_timers_read_as_keepalived_s_read_timer() -> None:
    cfg = lvs("virtual_server 198.18.0.10 80 {\n protocol TCP\n lb_algo rr\n lb_kind DR\n"
              " delay_loop 2.0000005\n connect_timeout 6x\n real_server 198.18.0.11 80 {\n"
              "  TCP_CHECK {\n  delay_before_retry .5\n  }\n }\n}\n")
    assert said(cfg) == ["(Line 5) number '2.0000005' has too many decimal places",
                         "(Line 6) invalid number '6x'"]
    (vs,) = cfg.virtual_servers
    tcp = vs.real_servers[0].checkers[0]
    # rounded to the microsecond; "6x" keeps its digits as microseconds, as keepalived does
    assert (vs.delay_loop, tcp.connect_timeout, tcp.delay_before_retry) == (2.000001, 6e-6, 0.5)


def test_digest_and_status_codes() -> None:
    cfg = lvs(MINIMAL.replace("path /", "path /index.html\n digest "
                              "0123456789ABCDEF0123456789abcdef\n"
                              " status_code 200 301-302 404"))
    (url,) = cfg.virtual_servers[0].real_servers[0].checkers[1].urls
    assert url.digest == "0123456789abcdef0123456789abcdef"
    assert url.status_codes == frozenset({200, 301, 302, 404})


def test_misc_user_that_does_not_exist_removes_the_checker() -> None:
    text = MINIMAL.replace('c"', f'c"\n user {NO_SUCH_USER}')
    cfg = lvs(text, lookup_user=user_exists)
    assert said(cfg) == ["(Line 15) Failed to set uid/gid for misc checker script "
                         "/bin/check a b c - removing"]
    assert [c.kind for c in cfg.virtual_servers[0].real_servers[0].checkers] == [
        TCP_CHECK, HTTP_GET]
    cfg = lvs(MINIMAL.replace('c"', 'c"\n user nobody nogroup'), lookup_user=user_exists)
    misc = cfg.virtual_servers[0].real_servers[0].checkers[2]
    assert (misc.user, misc.group) == ("nobody", "nogroup")


def test_nb_get_retry_is_the_old_retry_for_tcp_check_too() -> None:
    cfg = lvs(MINIMAL.replace("TCP_CHECK {", "TCP_CHECK {\n nb_get_retry 3"))
    assert said(cfg) == ["(Line 7) nb_get_retry is deprecated - please use 'retry'"]
    assert cfg.virtual_servers[0].real_servers[0].checkers[0].retry == 3


def test_quorum_is_capped_by_the_weights() -> None:
    cfg = lvs(MINIMAL.replace("lb_algo rr", "lb_algo rr\n quorum 5\n hysteresis 1\n"
                              " quorum_up \"/bin/up x\"\n quorum_down /bin/down"))
    assert said(cfg) == ["Warning - quorum 5 for [198.18.0.10]:tcp:80 exceeds total weight of "
                         "real servers 1, reducing quorum to 1",
                         "Virtual server [198.18.0.10]:tcp:80: hysteresis 1 >= quorum 1; "
                         "setting hysteresis to 0"]
    (vs,) = cfg.virtual_servers
    assert (vs.quorum, vs.hysteresis) == (1, 0)
    assert vs.quorum_up is not None and vs.quorum_up.argv == ("/bin/up", "x")
    assert vs.quorum_down is not None and vs.quorum_down.argv == ("/bin/down",)
    assert [s.argv for s in cfg.scripts()] == [("/bin/up", "x"), ("/bin/down",),
                                               ("/bin/check", "a b", "c")]


def test_sorry_server() -> None:
    cfg = lvs(MINIMAL.replace("lb_algo rr", "lb_algo rr\n sorry_server 198.18.0.20\n"
                              " sorry_server_inhibit"))
    sorry = cfg.virtual_servers[0].sorry_server
    assert sorry is not None
    # DR: the port follows the virtual server's
    assert (sorry.name, sorry.inhibit, sorry.lvs_method) == ("[198.18.0.20]:tcp:80", True, "DR")


def test_groups_number_their_virtual_servers() -> None:
    cfg = lvs("""\
virtual_server_group WEB {
    198.18.0.10 80
    198.18.0.20-29 80
    198.18.1.0/30 80
    fwmark 7 inet
}
virtual_server group WEB {
    protocol TCP
    lb_algo rr
    lb_kind NAT
    real_server 198.18.0.11 80 {
    }
}
virtual_server group WEB {
    protocol TCP
    lb_algo rr
    lb_kind NAT
    real_server 198.18.0.12 80 {
    }
}
""")
    assert said(cfg) == []
    assert [vs.name for vs in cfg.virtual_servers] == ["[WEB]:0", "[WEB]:1"]
    one, rng, mask, mark = cfg.groups["WEB"].entries
    assert len(one.addresses()) == 1 and len(rng.addresses()) == 10
    assert (str(mask.start), str(mask.end), mask.port) == ("198.18.1.0", "198.18.1.3", 80)
    assert (mark.is_fwmark, mark.fwmark, mark.fwmark_family) == (True, 7, 4)


def test_ssl_block() -> None:
    cfg = lvs("SSL {\n password pw\n ca /ca.pem\n certificate /c.pem\n key /k.pem\n}\n" +
              MINIMAL)
    assert cfg.ssl is not None
    assert (cfg.ssl.password, cfg.ssl.ca, cfg.ssl.certificate, cfg.ssl.key) == (
        "pw", "/ca.pem", "/c.pem", "/k.pem")


def test_unsupported_checkers_are_dropped_with_a_logged_note() -> None:
    cfg = lvs(MINIMAL.replace("TCP_CHECK {", "SMTP_CHECK {\n helo_name x\n }\n TCP_CHECK {"))
    assert said(cfg) == []
    assert said(cfg, "info") == ["(Line 6) SMTP_CHECK is not supported by halb - ignoring"]
    assert len(cfg.virtual_servers[0].real_servers[0].checkers) == 3


# -- the seeds -------------------------------------------------------------------------------


def _seed(name: str) -> LvsConfig:
    return virtual_servers(load(str(SEEDS / name), config_id="halb").config)


@pytest.mark.parametrize("name", ["002_4-13_lvs_master.conf", "002_4-14_lvs_backup.conf"])
def test_seed_002_lvs(name: str) -> None:
    cfg = _seed(name)
    assert [w.message for w in cfg.warnings] == [
        "nb_get_retry is deprecated - please use 'retry'"] * 2
    (vs,) = cfg.virtual_servers
    # 健康检查的时间 6 s, rr, DR, 会话持久化 5 s, TCP
    assert (vs.name, vs.delay_loop, vs.lvs_sched, vs.lvs_method, vs.persistence_timeout) == (
        "[198.18.156.150]:tcp:80", 6.0, "rr", "DR", 5)
    assert [rs.name for rs in vs.real_servers] == ["[198.18.156.135]:tcp:80",
                                                   "[198.18.156.137]:tcp:80"]
    for rs in vs.real_servers:
        assert rs.weight == 1
        (tcp,) = rs.checkers
        # 检查的80端口, 超时时间 2s, 重试次数 2次, 重试的间隔时间 3s
        assert (tcp.kind, tcp.connect_ip, tcp.connect_port) == (TCP_CHECK, rs.address, 80)
        assert (tcp.connect_timeout, tcp.retry, tcp.delay_before_retry) == (2.0, 2, 3.0)
        assert (tcp.delay_loop, tcp.warmup) == (6.0, 6.0)


@pytest.mark.parametrize("name", ["003_lvs_master.conf", "003_lvs_backup.conf"])
def test_seed_003_lvs(name: str) -> None:
    cfg = _seed(name)
    assert [w.message for w in cfg.warnings] == [
        "Unknown keyword 'nat_mask'", "number '0' outside range [1, 2678400]",
        "persistence_timeout invalid", "nb_get_retry is deprecated - please use 'retry'",
        "nb_get_retry is deprecated - please use 'retry'"]
    (vs,) = cfg.virtual_servers
    # persistence_timeout 0 is refused and means what the seed wants: no persistence
    assert (vs.name, vs.delay_loop, vs.lvs_sched, vs.lvs_method, vs.persistence_timeout) == (
        "[198.18.11.200]:tcp:80", 6.0, "wrr", "DR", 0)
    assert [(rs.name, rs.weight) for rs in vs.real_servers] == [
        ("[198.18.11.135]:tcp:80", 1), ("[198.18.11.138]:tcp:80", 2)]
    for rs in vs.real_servers:
        (tcp,) = rs.checkers
        assert (tcp.connect_port, tcp.connect_timeout, tcp.retry, tcp.delay_before_retry) == (
            80, 10.0, 3, 3.0)


def test_configs_without_virtual_servers_have_none() -> None:
    for p in sorted(SEEDS.glob("*.conf")):
        if "lvs" not in p.name:
            assert _seed(p.name) == LvsConfig()
