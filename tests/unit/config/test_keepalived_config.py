"""config/keepalived*.py: keepalived.conf as keepalived 2.2.7 reads it.

ORACLE holds configurations run through Debian's keepalived 2.2.7 `keepalived -t -i vm`; the
expected lines are what it printed (minus what needs the running system: interfaces that do not
exist, script files, script security), so `halb keepalived -t` says the same thing, in the same
order. The seeds' configurations (keepalived_seeds/, addresses mapped to 198.18.0.0/15) must load
and keep what the seeds mean; the rest covers the model: defaults, derivations, include,
conditionals, parameters, raw blocks.
"""

from __future__ import annotations

import ipaddress
import os
import pathlib

import pytest

from halb.config.errors import ConfigError
from halb.config.keepalived import (
    FatalConfigError,
    expand_braces,
    format_error,
    load,
    load_text,
)
from halb.config.keepalived_model import KeepalivedConfig, VrrpInstance
from halb.testing.vrrp_segment import Segment
from halb.vrrp.machine import Params, State

CONF = "/etc/keepalived/keepalived.conf"
SEEDS = pathlib.Path(__file__).parent / "keepalived_seeds"


def lines(warnings: list[ConfigError]) -> list[str]:
    return [format_error(w).replace(f"({CONF}: Line ", "(Line ") for w in warnings]


def loaded(text: str, **kw: object) -> KeepalivedConfig:
    return load_text(text, config_id="vm", **kw).config  # type: ignore[arg-type]


def instance(text: str) -> VrrpInstance:
    (inst,) = loaded(text).vrrp_instances
    return inst


# -- the oracle: keepalived 2.2.7's own words ------------------------------------------------

ORACLE: list[tuple[str, str, list[str], str | None]] = [
    ('unknown-keywords', """\
global_defs {
 router_id A}
foo 1
vrrp_instance V {
 interface eth0
 virtual_router_id 7
 bogus_kw 1
 virtual_ipaddress {
 198.18.0.1
 }
}
""",
     [
         "(Line 3) Unknown keyword 'foo'",
         "(Line 7) Unknown keyword 'bogus_kw'",
     ], None),
    ('unknown-block-closes-enclosing', """\
vrrp_instance VI_1 {
  interface eth0
  unknown_blk {
    a 1
  }
  virtual_router_id 51
  virtual_ipaddress {
    198.18.0.10/24
  }
}
""",
     [
         "(Line 3) Unknown keyword 'unknown_blk'",
         "(Line 3) Unexpected '{' - ignoring",
         "(Line 4) Unknown keyword 'a'",
         "(Line 6) Unknown keyword 'virtual_router_id'",
         "(Line 7) Unknown keyword 'virtual_ipaddress'",
         "(Line 7) Unexpected '{' - ignoring",
         "(Line 8) Unknown keyword '198.18.0.10/24'",
         "(Line 9) Unknown keyword '}'",
         "(Line 10) Unknown keyword '}'",
     ], '(VI_1) the virtual router id must be set'),
    ('top-level-braces', """\
foo {
}
}
vrrp_instance {
}
vrrp_sync_group
""",
     [
         "(Line 1) Unknown keyword 'foo'",
         "(Line 1) Unexpected '{' - ignoring",
         "(Line 2) Unknown keyword '}'",
         "(Line 3) Extra '}' found",
         "(Line 3) Unknown keyword '}'",
         '(Line 4) vrrp_instance must have a name',
         '(Line 6) vrrp_sync_group must have a name - skipping',
     ], None),
    ('instance-values', """\
vrrp_instance V {
 interface eth0
 state FOO
 virtual_router_id abc
 virtual_router_id 300
 virtual_router_id 7
 priority 0
 advert_int 0
 preempt_delay 2000
 garp_master_delay x
 version 4
 virtual_ipaddress {
 198.18.0.1
 }
}
""",
     [
         "(Line 3) (V) unknown state 'FOO', defaulting to BACKUP",
         "(Line 4) invalid number 'abc'",
         "(Line 4) (V): VRID 'abc' not valid - must be between 1 & 255",
         "(Line 5) number '300' outside range [1, 255]",
         "(Line 5) (V): VRID '300' not valid - must be between 1 & 255",
         "(Line 7) number '0' outside range [1, 255]",
         '(Line 7) (V) Priority not valid! must be between 1 & 255. Using default 100',
         "(Line 8) number '0' outside range [0.010000, 255.000000]",
         '(Line 8) (V) Advert interval (0) not valid! Must be > 0 - ignoring',
         "(Line 9) number '2000' outside range [0.000000, 1000.000000]",
         '(Line 9) (V) Preempt_delay not valid! must be between 0-1000',
         "(Line 10) invalid number 'x'",
         "(Line 10) (V): garp_master_delay 'x' invalid - ignoring",
         "(Line 11) number '4' outside range [2, 3]",
         '(Line 11) (V): Version must be either 2 or 3',
     ], None),
    ('master-nopreempt-v3-auth', """\
vrrp_instance V {
 interface eth0
 state MASTER
 nopreempt
 preempt_delay 5
 virtual_router_id 7
 advert_int 1.5
 version 3
 authentication {
 auth_type PASS
 auth_pass secret
 }
 virtual_ipaddress {
 198.18.0.1
 }
}
""",
     [
         '(V) VRRP version 3 does not support authentication. Ignoring.',
         '(V) nopreempt is incompatible with priority 255. resetting nopreempt',
         '(V) Warning - preempt delay will not work with initial state MASTER - clearing',
     ], None),
    ('owner-no-vip', """\
vrrp_instance V {
 interface eth0
 virtual_router_id 7
 priority 255
 nopreempt
 advert_int 300
 authentication {
 auth_type XYZ
 }
}
""",
     [
         "(Line 6) number '300' outside range [0.010000, 255.000000]",
         '(Line 6) (V) Advert interval (300) not valid! Must be > 0 - ignoring',
         "(Line 8) (V) unknown authentication type 'XYZ'",
         '(V) No VIP specified; at least one is sensible',
         '(V) nopreempt is incompatible with priority 255. resetting nopreempt',
     ], None),
    ('vips', """\
vrrp_instance V {
 interface eth0
 virtual_router_id 7
 virtual_ipaddress {
 198.18.0.1/24 dev eth0 label eth0:vip brd 198.18.0.255 scope link
 198.18.0.2/33
 198.18.0.3 foo
 bogus
 198.18.0.4/24 brd +
 198.18.0.6 scope weird
 198.18.0.7 dev
 fe80::1
 198.18.0.8 label eth0:averyveryverylonglabel
 }
 virtual_ipaddress_excluded {
 198.18.1.1/32
 2001:2::1/64
 }
}
""",
     [
         "(Line 6) number '33' outside range [0, 32]",
         '(Line 6) Invalid address prefix len 33 for address 198.18.0.2/33 - using 32',
         "(Line 7) Unknown configuration entry 'foo' for ip address - ignoring",
         '(Line 8) VRRP parsed invalid IP bogus. skipping IP...',
         "(Line 10) Invalid scope 'weird' specified for 198.18.0.6 - ignoring",
         '(Line 11) No dev parameter specified for 198.18.0.7',
         '(Line 12) (V): address family must match VRRP instance [fe80::1] - ignoring',
         '(Line 13) Address label eth0:averyveryverylonglabel is longer than maximum length 15 - removing address',
     ], None),
    ('advert-int-rounding', """\
vrrp_instance V {
 interface eth0
 virtual_router_id 7
 advert_int 1.4
 virtual_ipaddress {
 198.18.0.1
 }
}
vrrp_instance W {
 interface eth0
 virtual_router_id 8
 version 3
 advert_int 50
 virtual_ipaddress {
 198.18.0.1
 }
}
vrrp_instance X {
 interface eth0
 virtual_router_id 9
 version 3
 advert_int 0.015
 virtual_ipaddress {
 198.18.0.1
 }
}
""",
     [
         '(V) VRRPv2 advertisement interval 1.400000s must be an integer. rounding',
         '(W) VRRPv3 advertisement interval 50.00s is out of range. Must be less than 40.96s. Setting to 40.95s',
         '(X) VRRPv3 advertisement interval 0.015000s must be in units of 10ms - rounding',
     ], None),
    ('auth', """\
vrrp_instance V {
 interface eth0
 virtual_router_id 7
 virtual_ipaddress {
 198.18.0.1
 }
 authentication {
 auth_type PASS
 auth_pass 123456789012
 }
}
vrrp_instance W {
 interface eth0
 virtual_router_id 9
 virtual_ipaddress {
 198.18.0.1
 }
 authentication {
 auth_type PASS
 }
}
""",
     [
         '(Line 9) Truncating auth_pass to 8 characters',
         '(W) Authentication specified but no password given. Ignoring',
     ], None),
    ('scripts', """\
vrrp_script s {
 script "/bin/true"
 interval 0
 timeout -1
 weight 300
 rise 0
 fall x
}
vrrp_script t {
 interval 2
}
vrrp_instance V {
 interface eth0
 virtual_router_id 7
 virtual_ipaddress {
 198.18.0.1
 }
 track_script {
 s weight 10
 s weight 400
 t
 later
 }
 notify_master /bin/true
 notify_master /bin/false
}
vrrp_script later {
 script /bin/true
}
""",
     [
         '(Line 3) (s): vrrp script interval must be greater than 0, setting to 1',
         "(Line 4) negative number '-1'",
         "(Line 4) (s): vrrp script timeout '-1' invalid - ignoring",
         "(Line 5) number '300' outside range [-253, 253]",
         '(Line 5) vrrp_script s weight 300 must be in [-253, 253]',
         "(Line 6) number '0' outside range [1, 2147483647]",
         "(Line 6) (s): vrrp script rise value '0' invalid, defaulting to 1",
         "(Line 7) invalid number 'x'",
         "(Line 7) (s): vrrp script fall value 'x' invalid, defaulting to 1",
         '(Line 11) No script set for vrrp_script t - removing',
         '(Line 20) (V) duplicate track_script s - ignoring',
         '(Line 21) (V) track script t not found, ignoring...',
         '(Line 22) (V) track script later not found, ignoring...',
         '(Line 25) (V) notify_master script already specified - ignoring /bin/false',
     ], None),
    ('track-weights', """\
vrrp_script s {
 script "/bin/true"
 weight -254
}
vrrp_script u {
 script "/bin/true"
}
vrrp_script w {
 script "/bin/true"
}
vrrp_instance V {
 interface eth0
 virtual_router_id 7
 virtual_ipaddress {
 198.18.0.1
 }
 track_script {
 s weight 400
 u weight 254
 w foo
 }
 garp_master_repeat 0
 unicast_ttl 300
}
""",
     [
         "(Line 3) number '-254' outside range [-253, 253]",
         '(Line 3) vrrp_script s weight -254 must be in [-253, 253]',
         "(Line 18) number '400' outside range [-254, 254]",
         '(Line 18) (V) track script s: weight must be between [-253..253] inclusive, ignoring...',
         '(Line 19) (V) weight for u cannot be +/-254. Setting to +/-253',
         '(Line 20) (V) unknown track script option foo - ignoring',
         '(Line 22) (V): garp_master_repeat must be greater than 0, setting to 1',
         "(Line 23) number '300' outside range [0, 255]",
         "(Line 23) (V): TTL '300' not valid - must be between 0 & 255",
     ], None),
    ('track-interface', """\
vrrp_instance V {
 interface eth0
 virtual_router_id 7
 virtual_ipaddress {
 198.18.0.1
 }
 track_interface {
 ifb0 weight 10
 ifb1 weight
 lo weight 300
 ifb0
 eth0
 }
}
""",
     [
         '(Line 9) (V) weight without value specified for track_interface ifb1 - ignoring',
         "(Line 10) number '300' outside range [-254, 254]",
         '(Line 10) (V) weight 300 for lo must be between [-253..253] inclusive. Ignoring...',
         '(Line 11) (V) duplicate track_interface ifb0 - ignoring',
         '(V) Ignoring track_interface eth0 since own interface',
     ], None),
    ('globals', """\
global_defs {
 vrrp_version 3
 vrrp_version 5
 router_id r1
 router_id
 vrrp_garp_master_repeat x
 vrrp_garp_master_refresh -3
 vrrp_garp_interval 0
 notification_email {
 }
 notification_email_from
 script_user
 vrrp_mcast_group4 198.18.0.1
 smtp_connect_timeout 0
}
""",
     [
         "(Line 3) number '5' outside range [2, 3]",
         '(Line 3) VRRP Error: Version must be either 2 or 3',
         '(Line 5) routerid name missing - ignoring',
         "(Line 6) invalid number 'x'",
         "(Line 6) vrrp_garp_master_repeat 'x' invalid - ignoring",
         "(Line 7) negative number '-3'",
         "(Line 7) Invalid vrrp_garp_master_refresh '-3' - ignoring",
         "(Line 8) number '0' outside range [0.000001, 4294.967295]",
         "(Line 8) vrrp_garp_interval '0' is invalid",
         '(Line 10) Warning - empty notification_email block',
         '(Line 11) emailfrom missing - ignoring',
         '(Line 12) No script username specified',
         '(Line 13) vrrp_mcast_group4 [198.18.0.1] is not multicast. Skipping',
         '(Line 14) smtp_conect_timeout must be greater than 0, setting to 1',
     ], None),
    ('sync-groups', """\
vrrp_instance V {
 interface eth0
 virtual_router_id 7
 virtual_ipaddress {
 198.18.0.1
 }
}
vrrp_instance W {
 interface eth0
 virtual_router_id 8
 virtual_ipaddress {
 198.18.0.2
 }
}
vrrp_sync_group G {
 group {
 V
 W
 nosuch
 }
}
vrrp_sync_group H {
 group {
 V
 }
}
vrrp_sync_group E {
 group {
 }
}
vrrp_sync_group F {
}
""",
     [
         '(Line 29) Warning - sync group E has empty group block',
         "Virtual router nosuch specified in sync group G doesn't exist - ignoring",
         'Virtual router V cannot exist in more than one sync group; ignoring H',
         'Sync group H, no matching virtual router found in group declaration - removing',
         'Sync group E has no virtual router(s). removing',
         'Sync group F has no virtual router(s). removing',
     ], None),
    ('ipv6', """\
vrrp_instance V {
 interface eth0
 virtual_router_id 7
 virtual_ipaddress {
 2001:2::1 label foo
 fe80::1
 }
 unicast_ttl 5
}
vrrp_instance V {
}
""",
     [
         '(Line 5) Cannot specify label for IPv6 addresses (2001:2::1) - ignoring label',
         '(Line 9) (V): Cannot use unicast_ttl without unicast peers - resetting',
         '(Line 10) vrrp instance V already defined',
     ], None),
    ('strict', """\
global_defs {
 vrrp_strict
}
vrrp_instance V {
 interface eth0
 state MASTER
 priority 100
 virtual_router_id 7
 preempt_delay 3
 garp_lower_prio_repeat 2
 lower_prio_no_advert false
 higher_prio_send_advert
 authentication {
 auth_type PASS
 auth_pass abc
 }
 virtual_ipaddress {
 198.18.0.1
 }
}
""",
     [
         '(V) State MASTER must match being address owner',
         '(V) Strict mode does not support authentication. Ignoring.',
         '(V) preempt_delay is incompatible with strict mode - resetting',
         '(V) Strict mode requires no repeat garps. resetting',
         '(V) Strict mode requires no lower priority advert. resetting',
         '(V) strict mode requires higher_prio_send_advert to be clear. resetting',
     ], None),
    ('unicast', """\
vrrp_instance V {
 interface eth0
 virtual_router_id 7
 virtual_ipaddress {
 198.18.0.1
 }
 unicast_src_ip bogus
 mcast_src_ip 2001:2::5
 mcast_dst_ip 198.18.0.5
 unicast_peer {
 198.18.0.2 min_ttl 200 max_ttl 3
 198.18.0.3 foo 1
 bad
 }
}
""",
     [
         '(Line 7) Configuration error: VRRP instance[V] malformed src address[bogus]. Skipping...',
         '(Line 8) Configuration error: VRRP instance[V] and src address[2001:2::5] MUST be of the same family !!! Skipping...',
         '(Line 9) (V) mcast_dst_ip 198.18.0.5 not multicast. Skipping...',
         '(Line 11) (V) min_ttl 200 > max_ttl 3 - all packets will be discarded',
         '(Line 12) (V) unknown unicast_peer option foo',
         '(Line 13) Configuration error: VRRP instance[V] malformed unicast peer address[bad]. Skipping...',
     ], None),
    ('unicast-keyword-without-peers', """\
vrrp_instance V {
 interface eth0
 virtual_router_id 7
 virtual_ipaddress {
 198.18.0.1
 }
 unicast_src_ip 198.18.0.5
}
""",
     [
         '(V) A unicast keyword has been specified without any unicast peers. Defaulting to multicast. This usage is deprecated - please update your configuration.',
     ], None),
    ('conditionals-and-parameters', """\
@vm router_id X
@^vm foo
@zz bar
@^zz baz
  @vm foo2
@vm
$X=1
$Y=${X}2
$X qux
${Y}bar
$Z quux
""",
     [
         "(Line 1) Unknown keyword 'router_id'",
         "(Line 4) Unknown keyword 'baz'",
         "(Line 5) Unknown keyword 'foo2'",
         "(Line 9) Unknown keyword '1'",
         "(Line 10) Unknown keyword '12bar'",
         "(Line 11) Unknown keyword '$Z'",
     ], None),
    ('missing-include', """\
include /nonexist/x.conf
""",
     [
         "(Line 1) Config files missing '/nonexist/x.conf'.",
     ], None),
    ('brace-on-next-line', """\
global_defs {
 router_id A}
vrrp_instance V
{
 interface eth0
 virtual_router_id 5
 virtual_ipaddress
 {
 198.18.0.1
 }
}
""",
     [
     ], None),
    ('one-line-blocks', """\
vrrp_instance V {
 interface eth0
 virtual_router_id 5
 virtual_ipaddress { 198.18.0.1 }
 authentication { auth_type PASS
 auth_pass 11 }
}
""",
     [
     ], None),
    ('no-vrid', """\
vrrp_instance V {
 interface eth0
 virtual_ipaddress {
 198.18.0.1
 }
}
""",
     [
     ], '(V) the virtual router id must be set'),
    ('duplicate-vrid', """\
vrrp_instance V {
 interface eth0
 virtual_router_id 7
 virtual_ipaddress {
 198.18.0.1
 }
}
vrrp_instance W {
 interface eth0
 virtual_router_id 7
 virtual_ipaddress {
 198.18.0.2
 }
}
""",
     [
     ], 'V and W both use VRID 7 with IPv4 on interface eth0'),
    ('missing-parameter', """\
vrrp_instance V {
 interface eth0
 virtual_router_id
}
""",
     [
     ], '(/etc/keepalived/keepalived.conf: Line 3) *** Configuration line starting `virtual_router_id` is missing a parameter after keyword `virtual_router_id` at word position 2'),
    ('v3-without-vip', """\
vrrp_instance V {
 interface eth0
 virtual_router_id 5
 version 3
}
""",
     [
     ], '(V) No VIP specified; at least one is required'),
    ('no-interface', """\
vrrp_instance V {
 virtual_router_id 5
 virtual_ipaddress {
 198.18.0.1
 }
}
""",
     [
     ], '(V) Unknown interface!'),
    ('switches', """\
global_defs {
 vrrp_strict bogus
 vrrp_lower_prio_no_advert bogus
 dynamic_interfaces bogus
 vrrp_min_garp no
}
vrrp_instance V {
 strict_mode bogus
 accept bogus
 check_unicast_src bogus
 interface eth0
 virtual_router_id 5
 virtual_ipaddress {
 198.18.0.1
 }
}
""",
     [
         "(Line 3) Invalid value for vrrp_lower_prio_no_advert specified",
         "(Line 4) Unknown dynamic_interfaces option 'bogus'",
         "(Line 8) (V) invalid strict_mode bogus specified",
         "(V) A unicast keyword has been specified without any unicast peers. Defaulting to "
         "multicast. This usage is deprecated - please update your configuration.",
         "(V) warning - accept mode for VRRP version 2 does not comply with RFC3768 - resetting",
     ], None),
]


@pytest.mark.parametrize(("name", "text", "expected", "fatal"), ORACLE, ids=[c[0] for c in ORACLE])
def test_keepalived_says_the_same(name: str, text: str, expected: list[str],
                                  fatal: str | None) -> None:
    if fatal is None:
        got = load_text(text, config_id="vm").warnings
    else:
        with pytest.raises(FatalConfigError) as info:
            load_text(text, config_id="vm")
        assert format_error(info.value) == fatal
        got = info.value.warnings
    assert [line for line in lines(got) if "IPSEC-AH" not in line] == expected


def test_format_error() -> None:
    from halb.config.errors import Pos

    assert format_error(ConfigError("x", Pos("/a.conf", 3))) == "(/a.conf: Line 3) x"
    assert format_error(ConfigError("x")) == "x"


def test_a_missing_brace_is_reported_and_the_block_read_as_keepalived_s_vrrp_process_does() -> None:
    # keepalived's parent process reads the rest of that file differently (and says so too);
    # the VRRP process, which runs the instance, enters the block anyway
    text = ("vrrp_instance V {\n interface eth0\n virtual_router_id 5\n authentication\n"
            " auth_type PASS\n }\n virtual_ipaddress {\n 198.18.0.1\n }\n}\n}\n")
    r = load_text(text, config_id="vm")
    assert lines(r.warnings) == ["(Line 5) Missing '{' at beginning of configuration block",
                                 "(Line 10) Extra '}' found", "(Line 11) Extra '}' found",
                                 "(Line 11) Unknown keyword '}'",
                                 "(V) Authentication specified but no password given. Ignoring"]
    assert [str(v.address) for v in r.config.vrrp_instances[0].vips] == ["198.18.0.1/32"]


def test_fatal_errors_carry_the_warnings_before_them() -> None:
    with pytest.raises(FatalConfigError) as info:
        load_text("foo\nvrrp_instance V {\n interface eth0\n}\n", config_id="vm")
    assert format_error(info.value) == "(V) the virtual router id must be set"
    assert lines(info.value.warnings) == ["(Line 1) Unknown keyword 'foo'"]
    with pytest.raises(FatalConfigError, match="could not be read"):
        load("/nonexistent/keepalived.conf", config_id="vm")
    with pytest.raises(FatalConfigError, match="unterminated quoted string"):
        load_text('vrrp_script s {\n script "/bin/true\n}\n')


# -- the seeds --------------------------------------------------------------------------------

SEED_FILES = sorted(p.name for p in SEEDS.glob("*.conf"))


def test_every_seed_config_is_here() -> None:
    assert SEED_FILES == [
        "001_heredoc.conf", "001_sections.conf", "002_3-13_dual_135.conf",
        "002_3-13_dual_136.conf", "002_3-4_master.conf", "002_3-7_backup.conf",
        "002_3-9_fragment.conf", "002_3-9_track_script.conf", "002_4-13_lvs_master.conf",
        "002_4-14_lvs_backup.conf", "003_lvs_backup.conf", "003_lvs_master.conf"]


@pytest.mark.parametrize("name", SEED_FILES)
def test_seed_loads(name: str) -> None:
    r = load(str(SEEDS / name), config_id="halb")
    for w in r.warnings:
        assert w.pos is None or w.pos.file == str(SEEDS / name)
    for inst in r.config.vrrp_instances:
        assert all(ipaddress.ip_network("198.18.0.0/15").supernet_of(v.address.network)
                   for v in inst.vips)


def _seed(name: str) -> tuple[KeepalivedConfig, list[str]]:
    r = load(str(SEEDS / name), config_id="halb")
    return r.config, [format_error(w).split(") ", 1)[-1] if w.pos else format_error(w)
                      for w in r.warnings]


def test_seed_001_heredoc() -> None:
    cfg, warnings = _seed("001_heredoc.conf")
    # the seed types `weight -5` with U+2010 HYPHEN: keepalived refuses it and keeps weight 0,
    # so a failing chk_nginx puts VI_1 in FAULT instead of lowering its priority by 5
    assert warnings == ["invalid number '\u20105'", "vrrp_script chk_nginx weight \u20105 must "
                        "be in [-253, 253]"]
    assert cfg.global_defs.router_id == "LVS_DEVEL"
    script = cfg.vrrp_scripts["chk_nginx"]
    assert (script.script.argv, script.interval, script.weight) == (
        ("/etc/keepalived/check_nginx.sh",), 2.0, 0)
    inst = cfg.instance("VI_1")
    assert (inst.state, inst.interface, inst.virtual_router_id, inst.priority, inst.advert_int,
            inst.auth_type, inst.auth_pass, inst.version) == (
        "MASTER", "ens33", 51, 101, 2.0, "PASS", "1111", 2)
    assert [str(v.address) for v in inst.vips] == ["198.18.31.240/32"]
    assert [(t.name, t.weight) for t in inst.track_scripts] == [("chk_nginx", 0)]


def test_seed_001_sections_strict() -> None:
    cfg, warnings = _seed("001_sections.conf")
    g = cfg.global_defs
    assert (g.router_id, g.vrrp_strict, g.vrrp_skip_check_adv_addr, g.smtp_server,
            g.notification_email, g.notification_email_from, g.smtp_connect_timeout) == (
        "198.18.224.206", True, True, "198.18.200.1",
        ("acassen@firewall.loc", "failover@firewall.loc", "sysadmin@firewall.loc"),
        "Alexandre.Cassen@firewall.loc", 30)
    assert warnings == [
        "number '0' outside range [0.000001, 4294.967295]", "vrrp_garp_interval '0' is invalid",
        "number '0' outside range [0.000001, 4294.967295]", "vrrp_gna_interval '0' is invalid",
        "(VI_1) Strict mode does not support authentication. Ignoring."]
    inst = cfg.instance("VI_1")
    assert (inst.strict_mode, inst.auth_type, inst.accept, inst.lower_prio_no_advert,
            inst.skip_check_adv_addr) == (True, None, False, True, True)
    assert inst.unicast_src_ip == ipaddress.ip_address("198.18.224.206")  # mcast_src_ip
    assert [(t.name, t.weight) for t in inst.track_scripts] == [("chk_nginx", -20)]


def test_seed_002_pair_and_dual_master() -> None:
    master, w1 = _seed("002_3-4_master.conf")
    backup, w2 = _seed("002_3-7_backup.conf")
    assert w1 == w2 == []
    m, b = master.instance("VI_1"), backup.instance("VI_1")
    assert (m.state, m.priority, b.state, b.priority) == ("MASTER", 100, "BACKUP", 80)
    assert m.vips == b.vips or [v.address for v in m.vips] == [v.address for v in b.vips]
    for name in ("002_3-13_dual_136.conf", "002_3-13_dual_135.conf"):
        cfg, warnings = _seed(name)
        assert warnings == []
        assert [(i.name, i.virtual_router_id) for i in cfg.vrrp_instances] == [
            ("VI_1", 51), ("VI_2", 52)]
    tracked, _ = _seed("002_3-9_track_script.conf")
    assert [(t.name, t.weight) for t in tracked.instance("VI_1").track_scripts] == [
        ("check_nginx_alive", 10)]


def test_seed_002_fragment_loads_with_keepalived_s_complaints() -> None:
    cfg, warnings = _seed("002_3-9_fragment.conf")
    assert warnings == ["Unknown keyword 'track_script'", "Unexpected '{' - ignoring",
                        "Unknown keyword 'check_nginx_alive'", "Unknown keyword '}'"]
    assert list(cfg.vrrp_scripts) == ["check_nginx_alive"] and cfg.vrrp_instances == ()


def test_seed_003_lvs_keeps_virtual_server_raw() -> None:
    cfg, warnings = _seed("003_lvs_master.conf")
    assert warnings == ["Warning - empty notification_email block"]
    assert cfg.global_defs.router_id == "LVS_DEVEL"  # "router_id LVS_DEVEL}" closes the block
    (vs,) = cfg.raw_blocks("virtual_server")
    assert (vs.name, vs.args, vs.pos.line) == ("virtual_server", ("198.18.11.200", "80"), 22)
    assert vs.block is not None
    assert [(s.name, s.args) for s in vs.block if s.block is None] == [
        ("delay_loop", ("6",)), ("lb_algo", ("wrr",)), ("lb_kind", ("DR",)),
        ("nat_mask", ("255.255.255.0",)), ("persistence_timeout", ("0",)), ("protocol", ("TCP",))]
    rs = [s for s in vs.block if s.name == "real_server"]
    assert [r.args for r in rs] == [("198.18.11.135", "80"), ("198.18.11.138", "80")]
    assert rs[1].block is not None
    weight, check = rs[1].block
    assert weight.args == ("2",) and check.name == "TCP_CHECK" and check.block is not None
    assert [(s.name, s.args) for s in check.block] == [
        ("connect_timeout", ("10",)), ("nb_get_retry", ("3",)), ("delay_before_retry", ("3",)),
        ("connect_port", ("80",))]


def _params(inst: VrrpInstance, address: str) -> Params:
    return Params(ipaddress.ip_address(address), vrid=inst.virtual_router_id,
                  version=inst.version, priority=inst.priority, advert_int_cs=inst.advert_int_cs,
                  initial_master=inst.state == "MASTER", nopreempt=inst.nopreempt,
                  preempt_delay=inst.preempt_delay, garp_master_delay=inst.garp_master_delay,
                  garp_master_repeat=inst.garp_master_repeat)


@pytest.mark.parametrize(("master", "backup"), [
    ("002_3-4_master.conf", "002_3-7_backup.conf"),
    ("003_lvs_master.conf", "003_lvs_backup.conf"),
])
def test_seed_pairs_elect_and_fail_over(master: str, backup: str) -> None:
    # the seeds' test lists: stop the master and the VIP moves to the backup (seed 000 "关掉主机
    # 虚拟IP漂移到备机"); start it again and it takes the VIP back (seed 003 "主机自动上位")
    m, b = (_seed(name)[0].vrrp_instances[0] for name in (master, backup))
    seg = Segment()
    for node, inst, addr in (("master", m, "198.18.0.1"), ("backup", b, "198.18.0.2")):
        seg.add(node, password=inst.auth_pass, vips=tuple(v.ip for v in inst.vips),
                **vars_of(_params(inst, addr)))
    seg.start()
    seg.advance(10)
    assert seg.holders() == ["master"]
    seg.stop("master")
    seg.advance(2)
    assert seg.holders() == ["backup"]
    seg.restart("master")
    seg.advance(10)
    assert seg.holders() == ["master"] and seg.nodes["backup"].state is State.BACKUP


def vars_of(p: Params) -> dict[str, object]:
    return {f: getattr(p, f) for f in p.__dataclass_fields__ if f != "address"} | {
        "address": p.address}


# -- resolution of an instance ----------------------------------------------------------------

BASE = ("vrrp_instance V {{\n interface eth0\n virtual_router_id 7\n{body}\n"
        " virtual_ipaddress {{\n {vip}\n }}\n}}\n")


def inst_with(body: str = "", vip: str = "198.18.0.1", glob: str = "") -> VrrpInstance:
    return instance(glob + BASE.format(body=body, vip=vip))


@pytest.mark.parametrize(("body", "priority", "state"), [
    ("", 100, "BACKUP"),
    (" state MASTER", 255, "MASTER"),  # no priority: MASTER means the owner (keepalived)
    (" state BACKUP", 100, "BACKUP"),
    (" priority 255", 255, "MASTER"),  # no state: the owner starts MASTER
    (" priority 255\n state BACKUP", 255, "BACKUP"),
    (" state MASTER\n priority 100", 100, "MASTER"),
])
def test_priority_and_state_derive_from_each_other(body: str, priority: int, state: str) -> None:
    inst = inst_with(body)
    assert (inst.priority, inst.state) == (priority, state)


def test_defaults() -> None:
    inst = inst_with()
    assert (inst.version, inst.family, inst.advert_int, inst.advert_int_cs, inst.auth_type,
            inst.nopreempt, inst.preempt_delay, inst.garp_master_delay, inst.garp_master_repeat,
            inst.garp_master_refresh, inst.garp_master_refresh_repeat, inst.accept,
            inst.down_timer_adverts, inst.unicast_ttl, inst.sync_group) == (
        2, 4, 1.0, 100, None, False, 0.0, 5.0, 5, 0.0, 1, True, 3, 255, None)


def test_global_defaults_flow_into_instances() -> None:
    glob = ("global_defs {\n vrrp_version 3\n vrrp_garp_master_delay 2\n"
            " vrrp_garp_master_repeat 3\n vrrp_garp_master_refresh 30\n"
            " vrrp_lower_prio_no_advert\n vrrp_down_timer_adverts 5\n v3_checksum_as_v2\n}\n")
    inst = inst_with(" advert_int 0.25", glob=glob)
    assert (inst.version, inst.advert_int_cs, inst.garp_master_delay, inst.garp_master_repeat,
            inst.garp_master_refresh, inst.lower_prio_no_advert, inst.down_timer_adverts,
            inst.v3_checksum_as_v2) == (3, 25, 2, 3, 30, True, 5, True)
    own = inst_with(" garp_master_delay 1\n garp_master_repeat 2", glob=glob)
    assert (own.garp_master_delay, own.garp_master_repeat) == (1, 2)
    min_garp = inst_with(glob="global_defs {\n vrrp_min_garp\n}\n")
    assert (min_garp.garp_master_delay, min_garp.garp_master_repeat) == (0, 1)


def test_ipv6_instances_are_version_3() -> None:
    inst = inst_with(vip="fe80::18:1/64")
    assert (inst.family, inst.version) == (6, 3)
    r = load_text(BASE.format(body=" version 2", vip="fe80::18:1"), config_id="vm")
    assert r.config.vrrp_instances[0].version == 3
    assert lines(r.warnings) == ["(V) cannot use IPv6 with VRRP version 2; setting version 3"]


@pytest.mark.parametrize(("version", "given", "resolved"), [
    (2, "1", 1.0), (2, "1.4", 1.0), (2, "1.5", 2.0), (2, "0.3", 1.0), (2, "255", 255.0),
    (3, "0.01", 0.01), (3, "0.015", 0.02), (3, "0.014", 0.01), (3, "40.95", 40.95),
    (3, "41", 40.95), (3, "1.5", 1.5),
])
def test_advert_int_is_rounded_per_version(version: int, given: str, resolved: float) -> None:
    inst = inst_with(f" version {version}\n advert_int {given}")
    assert inst.advert_int == resolved


def test_vips_and_their_options() -> None:
    text = BASE.format(body="", vip="198.18.0.1/24 dev eth1 label eth1:vip brd 198.18.0.255 "
                                    "scope link no_track\n 198.18.0.2 peer 198.18.0.9/32 home\n"
                                    " 198.18.0.3/32 scope 250")
    text = text.replace(" }\n}", " }\n virtual_ipaddress_excluded {\n 2001:2::10/64\n }\n}")
    inst = instance(text)
    a, b, c = inst.vips
    assert (str(a.address), a.dev, a.label, a.brd, a.scope, a.no_track) == (
        "198.18.0.1/24", "eth1", "eth1:vip", "198.18.0.255", "link", True)
    assert (str(b.address), str(b.peer), b.other) == ("198.18.0.2/32", "198.18.0.9/32",
                                                      ("home",))
    assert c.scope == "250" and c.pos is not None and c.pos.line == 8
    assert [str(e.address) for e in inst.evips] == ["2001:2::10/64"]  # any family


def test_unicast() -> None:
    inst = inst_with(" unicast_src_ip 198.18.0.1\n unicast_ttl 5\n unicast_peer {\n"
                     "  198.18.0.2\n  198.18.0.3 min_ttl 250 max_ttl 255\n }")
    assert inst.unicast_src_ip == ipaddress.ip_address("198.18.0.1") and inst.unicast_ttl == 5
    assert [(str(p.address), p.min_ttl, p.max_ttl) for p in inst.unicast_peers] == [
        ("198.18.0.2", 0, 255), ("198.18.0.3", 250, 255)]
    # unicast needs no interface
    r = load_text("vrrp_instance V {\n virtual_router_id 7\n unicast_peer {\n 198.18.0.2\n }\n"
                  " virtual_ipaddress {\n 198.18.0.1\n }\n}\n")
    assert r.config.vrrp_instances[0].interface is None


def test_preemption_settings() -> None:
    inst = inst_with(" nopreempt")
    assert inst.nopreempt and inst.state == "BACKUP"
    assert inst_with(" nopreempt\n preempt").nopreempt is False
    assert inst_with(" preempt_delay 2.5").preempt_delay == 2.5
    r = load_text(BASE.format(body=" nopreempt\n preempt_delay 3", vip="198.18.0.1"))
    inst = r.config.vrrp_instances[0]
    assert (inst.nopreempt, inst.preempt_delay) == (True, 0.0)
    assert lines(r.warnings) == ["(V) preempt_delay is incompatible with nopreempt mode - "
                                 "resetting"]


def test_tracking_and_notify() -> None:
    text = ("vrrp_script chk {\n script \"/usr/bin/check --flag 'a b'\"\n interval 3\n"
            " timeout 2\n weight -20\n rise 2\n fall 3\n user nobody nogroup\n init_fail\n}\n"
            + BASE.format(body=" track_script {\n  chk weight 15 reverse\n }\n"
                               " track_interface {\n  eth1 weight -30\n  eth2\n }\n"
                               " dont_track_primary\n"
                               " notify_master \"/etc/keepalived/master.sh up\" root\n"
                               " notify /etc/keepalived/notify.sh", vip="198.18.0.1"))
    cfg = loaded(text)
    s = cfg.vrrp_scripts["chk"]
    assert (s.script.argv, s.script.user, s.script.group, s.interval, s.timeout, s.weight,
            s.rise, s.fall, s.init_fail, s.effective_timeout) == (
        ("/usr/bin/check", "--flag", "a b"), "nobody", "nogroup", 3.0, 2.0, -20, 2, 3, True, 2.0)
    inst = cfg.vrrp_instances[0]
    assert [(t.name, t.weight, t.reverse) for t in inst.track_scripts] == [("chk", 15, True)]
    assert [(t.name, t.weight) for t in inst.track_interfaces] == [("eth1", -30), ("eth2", 0)]
    assert inst.dont_track_primary
    assert inst.notify_master is not None and inst.notify is not None
    assert (inst.notify_master.argv, inst.notify_master.user) == (
        ("/etc/keepalived/master.sh", "up"), "root")
    assert inst.notify.command == "/etc/keepalived/notify.sh"
    assert inst.notify_backup is None and inst.notify_fault is None and inst.notify_stop is None


def test_sync_group() -> None:
    text = (BASE.format(body="", vip="198.18.0.1") +
            BASE.format(body="", vip="198.18.0.2").replace("V {", "W {").replace(" 7\n", " 8\n")
            + "vrrp_sync_group G {\n group {\n  V W\n }\n notify_master /bin/m\n"
              " notify_backup /bin/b\n}\n")
    cfg = loaded(text)
    (g,) = cfg.vrrp_sync_groups
    assert g.group == ("V", "W") and g.notify_master is not None and g.notify_backup is not None
    assert [i.sync_group for i in cfg.vrrp_instances] == ["G", "G"]


def test_auth_pass_is_cut_to_8_and_ah_is_kept_but_flagged() -> None:
    inst = inst_with(" authentication {\n  auth_type PASS\n  auth_pass 0123456789\n }")
    assert inst.auth_pass == "01234567"
    r = load_text(BASE.format(body=" authentication {\n auth_type AH\n auth_pass x\n }",
                              vip="198.18.0.1"))
    assert r.config.vrrp_instances[0].auth_type == "AH"
    assert "IPSEC-AH authentication is not implemented by halb" in lines(r.warnings)[-1]


def test_other_keywords_are_kept_verbatim() -> None:
    cfg = loaded("global_defs {\n max_auto_priority 10\n enable_script_security\n"
                 " script_user keepalived_script\n}\n" +
                 BASE.format(body=" use_vmac vrrp.7\n virtual_routes {\n  198.18.5.0/24 dev eth0\n"
                                  " }", vip="198.18.0.1"))
    g = cfg.global_defs
    assert (g.enable_script_security, g.script_user) == (True, "keepalived_script")
    assert g.other["max_auto_priority"] == ("10",)
    other = cfg.vrrp_instances[0].other
    assert other["use_vmac"] == ("vrrp.7",)
    assert other["virtual_routes"] == ("198.18.5.0/24 dev eth0",)


def test_vips_beyond_what_fits_in_a_packet_move_to_evips() -> None:
    vips = "\n ".join(f"2001:2::{i:x}" for i in range(1, 92))
    r = load_text(BASE.format(body="", vip="fe80::1\n " + vips))
    inst = r.config.vrrp_instances[0]
    assert (len(inst.vips), len(inst.evips)) == (88, 4)  # keepalived keeps one fewer than max
    assert lines(r.warnings)[-1] == ("(V) Number of VIPs (92) exceeds maximum/space available in"
                                     " packet (max 89 addresses) - excess moved to eVIPs")


# -- include, conditionals, parameters --------------------------------------------------------


def test_include_is_relative_to_the_including_file(tmp_path: pathlib.Path) -> None:
    (tmp_path / "conf.d" / "more").mkdir(parents=True)
    (tmp_path / "keepalived.conf").write_text(
        "include conf.d/*.conf\ninclude conf.d/{x,y}.inc\ninclude missing.conf\n")
    (tmp_path / "conf.d" / "a.conf").write_text("global_defs {\n router_id A\n}\n"
                                                "include more/b.conf\n")
    (tmp_path / "conf.d" / "more" / "b.conf").write_text(BASE.format(body="", vip="198.18.0.1"))
    (tmp_path / "conf.d" / "x.inc").write_text("foo\n")
    (tmp_path / "conf.d" / "y.inc").write_text("bar\n")
    conf = str(tmp_path / "keepalived.conf")
    r = load(conf, config_id="vm")
    assert r.config.global_defs.router_id == "A"
    assert r.config.vrrp_instances[0].pos is not None
    assert r.config.vrrp_instances[0].pos.file == "more/b.conf"  # shown as keepalived shows it
    assert r.config.files == (conf, *(os.path.join(tmp_path, "conf.d", n) for n in
                                      ("a.conf", "more/b.conf", "x.inc", "y.inc")))
    assert [format_error(w) for w in r.warnings] == [
        "(conf.d/x.inc: Line 1) Unknown keyword 'foo'",
        "(conf.d/y.inc: Line 1) Unknown keyword 'bar'",
        f"({conf}: Line 3) Config files missing 'missing.conf'."]


def test_include_of_a_pattern_matching_nothing_is_silent() -> None:
    r = load_text("include /etc/keepalived/conf.d/*.conf\n",
                  files={"/etc/keepalived/conf.d/README": ""})
    assert r.warnings == []


def test_brace_expansion() -> None:
    assert expand_braces("a{b,c{d,e}}f") == ["abf", "acdf", "acef"]
    assert expand_braces("{,x}.conf") == [".conf", "x.conf"]
    assert expand_braces("plain{x}") == ["plain{x}"]


def test_conditionals_use_the_config_id() -> None:
    text = ("global_defs {\n @main router_id main_router\n @backup router_id backup_router\n}\n"
            "vrrp_instance VRRP {\n interface eth0\n virtual_router_id 7\n"
            " @main unicast_src_ip 198.18.0.4\n @backup unicast_src_ip 198.18.0.5\n"
            " unicast_peer {\n  @^main 198.18.0.4\n  @^backup 198.18.0.5\n"
            "  @^backup2 198.18.0.6\n }\n virtual_ipaddress {\n 198.18.0.1\n }\n}\n")
    main = load_text(text, config_id="main").config
    assert main.global_defs.router_id == "main_router" and main.config_id == "main"
    inst = main.vrrp_instances[0]
    assert str(inst.unicast_src_ip) == "198.18.0.4"
    assert [str(p.address) for p in inst.unicast_peers] == ["198.18.0.5", "198.18.0.6"]
    other = load_text(text, config_id="elsewhere").config
    assert other.global_defs.router_id is None
    assert len(other.vrrp_instances[0].unicast_peers) == 3


def test_conditional_include_and_block() -> None:
    files = {"/etc/keepalived/main.conf": "global_defs {\n router_id M\n}\n"}
    cfg = load_text("@main include main.conf\n", files=files, config_id="main").config
    assert cfg.global_defs.router_id == "M"
    cfg = load_text("@main include main.conf\n", files=files, config_id="other").config
    assert cfg.global_defs.router_id is None


def test_default_config_id_is_the_short_host_name() -> None:
    from halb.config.keepalived import default_config_id

    assert default_config_id() == os.uname().nodename.split(".")[0]
    assert load_text("").config.config_id == "halb"


def test_parameters() -> None:
    cfg = loaded("$VIP=198.18.0.1\n$PRIO=1${ZERO}0\n$ZERO=0\n"
                 + BASE.format(body=" priority ${PRIO}", vip="${VIP}/24"))
    inst = cfg.vrrp_instances[0]
    assert (inst.priority, str(inst.vips[0].address)) == (100, "198.18.0.1/24")
