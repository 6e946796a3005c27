"""A table and the exact text Debian's ipvsadm 1.31 prints for it, captured through the
LD_PRELOAD shim of tests/conformance/l4 (ipvsadm_oracle.py): the golden outputs the formatter
is compared with byte for byte. Regenerate with that oracle, never by hand."""

from __future__ import annotations

from halb.l4.model import (
    ConnView,
    DestSpec,
    DestView,
    Forward,
    Proto,
    ServiceKey,
    ServiceSpec,
    ServiceView,
    Stats,
    TableView,
)

ZERO = Stats()


def dest(addr: str, port: int, fwd: Forward = Forward.MASQ, weight: int = 1, *, active: int = 0,
         inactive: int = 0, persist: int = 0, upper: int = 0, lower: int = 0,
         stats: Stats = ZERO, rates: Stats = ZERO) -> DestView:
    return DestView(DestSpec(addr, port, fwd, weight, upper, lower), active, inactive, persist,
                    stats, rates)


BIG = Stats(71257, 1674702, 1656295, 137911234, 2088123456)
GOLDEN = TableView(services=(
    ServiceView(ServiceSpec(ServiceKey(Proto.TCP, "10.0.0.100", 80), "wlc", 300),
                (dest("192.168.10.2", 80, weight=3, active=12, inactive=40, stats=BIG,
                      rates=Stats(12, 350, 340, 41234, 512345)),
                 dest("192.168.10.4", 80, weight=0, active=2, inactive=9),
                 dest("192.168.10.3", 80, active=4, inactive=17, upper=100, lower=75, persist=7)),
                BIG, Stats(16, 470, 456, 55280, 687227)),
    ServiceView(ServiceSpec(ServiceKey(Proto.FWM, fwmark=7), "sh", 600, "255.255.255.0",
                            sched_flags=("sh-fallback", "sh-port")),
                (dest("192.168.20.2", 0, Forward.ROUTE),
                 dest("192.168.20.3", 0, Forward.TUNNEL))),
    ServiceView(ServiceSpec(ServiceKey(Proto.UDP, "200.0.0.1", 53), "rr", ops=True),
                (dest("127.0.0.1", 53, Forward.ROUTE,
                      stats=Stats(10**8, 10**9, 4294967295, 10**14, 99999999),
                      rates=Stats(4294967295, 5, 6, 4294967295, 100000000)),)),
    ServiceView(ServiceSpec(ServiceKey(Proto.TCP, "127.0.0.1", 22), "mh",
                            sched_flags=("mh-fallback", "mh-port", "flag-3"))),
    ServiceView(ServiceSpec(ServiceKey(Proto.SCTP, "10.9.9.9", 80), "wrr", 100, "255.255.0.0"),
                (dest("10.0.0.1", 80, Forward.LOCAL),)),
), connections=(
    ConnView("TCP", 898.7, "ESTABLISHED", ("203.0.113.7", 51234), ("10.0.0.100", 80),
             ("192.168.10.2", 80)),
    ConnView("TCP", 299, "NONE", ("203.0.113.7", 0), ("10.0.0.100", 80), ("192.168.10.2", 80),
             template=True),
    ConnView("UDP", 295, "UDP", ("127.0.0.1", 5353), ("127.0.0.1", 53), ("127.0.0.1", 53)),
    ConnView("TCP", 12, "ESTABLISHED", ("203.0.113.7", 5), ("10.0.0.100", 80),
             ("192.168.10.2", 80), pe_name="sip", pe_data="abc"),
))

# ipvsadm 1.31 (Debian 1:1.31-1+b1), LD_PRELOAD=ipvsadm_shim.so, the table above.
GOLDEN_OUTPUTS = {
    '-Ln': (
        'IP Virtual Server version 1.2.1 (size=4096)\n'
        'Prot LocalAddress:Port Scheduler Flags\n'
        '  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n'
        'TCP  10.0.0.100:80 wlc persistent 300\n'
        '  -> 192.168.10.2:80              Masq    3      12         40        \n'
        '  -> 192.168.10.3:80              Masq    1      4          17        \n'
        '  -> 192.168.10.4:80              Masq    0      2          9         \n'
        'TCP  127.0.0.1:22 mh (mh-fallback,mh-port)\n'
        'UDP  200.0.0.1:53 rr ops\n'
        '  -> 127.0.0.1:53                 Route   1      0          0         \n'
        'SCTP 10.9.9.9:80 wrr persistent 100 mask 255.255.0.0\n'
        '  -> 10.0.0.1:80                  Local   1      0          0         \n'
        'FWM  7 sh (sh-fallback,sh-port) persistent 600 mask 255.255.255.0\n'
        '  -> 192.168.20.2:0               Route   1      0          0         \n'
        '  -> 192.168.20.3:0               Tunnel  1      0          0         \n'
    ),
    '-Ln --stats': (
        'IP Virtual Server version 1.2.1 (size=4096)\n'
        'Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n'
        '  -> RemoteAddress:Port\n'
        'TCP  10.0.0.100:80                   71257  1674702  1656295  137911K    2088M\n'
        '  -> 192.168.10.2:80                 71257  1674702  1656295  137911K    2088M\n'
        '  -> 192.168.10.3:80                     0        0        0        0        0\n'
        '  -> 192.168.10.4:80                     0        0        0        0        0\n'
        'TCP  127.0.0.1:22                        0        0        0        0        0\n'
        'UDP  200.0.0.1:53                        0        0        0        0        0\n'
        '  -> 127.0.0.1:53                  100000K    1000M    4294M     100T 99999999\n'
        'SCTP 10.9.9.9:80                         0        0        0        0        0\n'
        '  -> 10.0.0.1:80                         0        0        0        0        0\n'
        'FWM  7                                   0        0        0        0        0\n'
        '  -> 192.168.20.2:0                      0        0        0        0        0\n'
        '  -> 192.168.20.3:0                      0        0        0        0        0\n'
    ),
    '-Ln --stats --exact': (
        'IP Virtual Server version 1.2.1 (size=4096)\n'
        'Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n'
        '  -> RemoteAddress:Port\n'
        'TCP  10.0.0.100:80                   71257  1674702  1656295 137911234 2088123456\n'
        '  -> 192.168.10.2:80                 71257  1674702  1656295 137911234 2088123456\n'
        '  -> 192.168.10.3:80                     0        0        0        0        0\n'
        '  -> 192.168.10.4:80                     0        0        0        0        0\n'
        'TCP  127.0.0.1:22                        0        0        0        0        0\n'
        'UDP  200.0.0.1:53                        0        0        0        0        0\n'
        '  -> 127.0.0.1:53                 100000000 1000000000 4294967295 100000000000000 99999999\n'
        'SCTP 10.9.9.9:80                         0        0        0        0        0\n'
        '  -> 10.0.0.1:80                         0        0        0        0        0\n'
        'FWM  7                                   0        0        0        0        0\n'
        '  -> 192.168.20.2:0                      0        0        0        0        0\n'
        '  -> 192.168.20.3:0                      0        0        0        0        0\n'
    ),
    '-Ln --rate': (
        'IP Virtual Server version 1.2.1 (size=4096)\n'
        'Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n'
        '  -> RemoteAddress:Port\n'
        'TCP  10.0.0.100:80                      16      470      456    55280   687227\n'
        '  -> 192.168.10.2:80                    12      350      340    41234   512345\n'
        '  -> 192.168.10.3:80                     0        0        0        0        0\n'
        '  -> 192.168.10.4:80                     0        0        0        0        0\n'
        'TCP  127.0.0.1:22                        0        0        0        0        0\n'
        'UDP  200.0.0.1:53                        0        0        0        0        0\n'
        '  -> 127.0.0.1:53                 4294967295        5        6    4294M  100000K\n'
        'SCTP 10.9.9.9:80                         0        0        0        0        0\n'
        '  -> 10.0.0.1:80                         0        0        0        0        0\n'
        'FWM  7                                   0        0        0        0        0\n'
        '  -> 192.168.20.2:0                      0        0        0        0        0\n'
        '  -> 192.168.20.3:0                      0        0        0        0        0\n'
    ),
    '-Ln --thresholds': (
        'IP Virtual Server version 1.2.1 (size=4096)\n'
        'Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn \n'
        '  -> RemoteAddress:Port\n'
        'TCP  10.0.0.100:80 wlc persistent 300\n'
        '  -> 192.168.10.2:80              0          0          12         40        \n'
        '  -> 192.168.10.3:80              100        75         4          17        \n'
        '  -> 192.168.10.4:80              0          0          2          9         \n'
        'TCP  127.0.0.1:22 mh (mh-fallback,mh-port)\n'
        'UDP  200.0.0.1:53 rr ops\n'
        '  -> 127.0.0.1:53                 0          0          0          0         \n'
        'SCTP 10.9.9.9:80 wrr persistent 100 mask 255.255.0.0\n'
        '  -> 10.0.0.1:80                  0          0          0          0         \n'
        'FWM  7 sh (sh-fallback,sh-port) persistent 600 mask 255.255.255.0\n'
        '  -> 192.168.20.2:0               0          0          0          0         \n'
        '  -> 192.168.20.3:0               0          0          0          0         \n'
    ),
    '-Ln --persistent-conn': (
        'IP Virtual Server version 1.2.1 (size=4096)\n'
        'Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn \n'
        '  -> RemoteAddress:Port\n'
        'TCP  10.0.0.100:80 wlc persistent 300\n'
        '  -> 192.168.10.2:80              3         0           12         40        \n'
        '  -> 192.168.10.3:80              1         7           4          17        \n'
        '  -> 192.168.10.4:80              0         0           2          9         \n'
        'TCP  127.0.0.1:22 mh (mh-fallback,mh-port)\n'
        'UDP  200.0.0.1:53 rr ops\n'
        '  -> 127.0.0.1:53                 1         0           0          0         \n'
        'SCTP 10.9.9.9:80 wrr persistent 100 mask 255.255.0.0\n'
        '  -> 10.0.0.1:80                  1         0           0          0         \n'
        'FWM  7 sh (sh-fallback,sh-port) persistent 600 mask 255.255.255.0\n'
        '  -> 192.168.20.2:0               1         0           0          0         \n'
        '  -> 192.168.20.3:0               1         0           0          0         \n'
    ),
    '-Ln --tun-info': (
        'IP Virtual Server version 1.2.1 (size=4096)\n'
        'Prot LocalAddress:Port Scheduler Flags\n'
        '  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n'
        'TCP  10.0.0.100:80 wlc persistent 300\n'
        '  -> 192.168.10.2:80              Masq    n/a           3      12         40        \n'
        '  -> 192.168.10.3:80              Masq    n/a           1      4          17        \n'
        '  -> 192.168.10.4:80              Masq    n/a           0      2          9         \n'
        'TCP  127.0.0.1:22 mh (mh-fallback,mh-port)\n'
        'UDP  200.0.0.1:53 rr ops\n'
        '  -> 127.0.0.1:53                 Route   n/a           1      0          0         \n'
        'SCTP 10.9.9.9:80 wrr persistent 100 mask 255.255.0.0\n'
        '  -> 10.0.0.1:80                  Local   n/a           1      0          0         \n'
        'FWM  7 sh (sh-fallback,sh-port) persistent 600 mask 255.255.255.0\n'
        '  -> 192.168.20.2:0               Route   n/a           1      0          0         \n'
        '  -> 192.168.20.3:0               Tunnel  ipip          1      0          0         \n'
    ),
    '-Sn': (
        '-A -t 10.0.0.100:80 -s wlc -p 300\n'
        '-a -t 10.0.0.100:80 -r 192.168.10.2:80 -m -w 3\n'
        '-a -t 10.0.0.100:80 -r 192.168.10.3:80 -m -w 1\n'
        '-a -t 10.0.0.100:80 -r 192.168.10.4:80 -m -w 0\n'
        '-A -t 127.0.0.1:22 -s mh -b mh-fallback,mh-port\n'
        '-A -u 200.0.0.1:53 -s rr -o\n'
        '-a -u 200.0.0.1:53 -r 127.0.0.1:53 -g -w 1\n'
        '-A --sctp-service 10.9.9.9:80 -s wrr -p 100 -M 255.255.0.0\n'
        '-a --sctp-service 10.9.9.9:80 -r 10.0.0.1:80 -g -w 1\n'
        '-A -f 7 -s sh -p 600 -M 255.255.255.0 -b sh-fallback,sh-port\n'
        '-a -f 7 -r 192.168.20.2:0 -g -w 1\n'
        '-a -f 7 -r 192.168.20.3:0 -i -w 1 --tun-type ipip\n'
    ),
    '-Ln --nosort': (
        'IP Virtual Server version 1.2.1 (size=4096)\n'
        'Prot LocalAddress:Port Scheduler Flags\n'
        '  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n'
        'TCP  10.0.0.100:80 wlc persistent 300\n'
        '  -> 192.168.10.2:80              Masq    3      12         40        \n'
        '  -> 192.168.10.4:80              Masq    0      2          9         \n'
        '  -> 192.168.10.3:80              Masq    1      4          17        \n'
        'FWM  7 sh (sh-fallback,sh-port) persistent 600 mask 255.255.255.0\n'
        '  -> 192.168.20.2:0               Route   1      0          0         \n'
        '  -> 192.168.20.3:0               Tunnel  1      0          0         \n'
        'UDP  200.0.0.1:53 rr ops\n'
        '  -> 127.0.0.1:53                 Route   1      0          0         \n'
        'TCP  127.0.0.1:22 mh (mh-fallback,mh-port)\n'
        'SCTP 10.9.9.9:80 wrr persistent 100 mask 255.255.0.0\n'
        '  -> 10.0.0.1:80                  Local   1      0          0         \n'
    ),
    '-Lnc': (
        'IPVS connection entries\n'
        'pro expire state       source             virtual            destination\n'
        'TCP 14:58  ESTABLISHED 203.0.113.7:51234  10.0.0.100:80      192.168.10.2:80\n'
        'TCP 04:59  NONE        203.0.113.7:0      10.0.0.100:80      192.168.10.2:80\n'
        'UDP 04:55  UDP         127.0.0.1:5353     127.0.0.1:53       127.0.0.1:53\n'
        'TCP 00:12  ESTABLISHED 203.0.113.7:5      10.0.0.100:80      192.168.10.2:80\n'
    ),
    '-Lnc --persistent-conn': (
        'IPVS connection entries\n'
        'pro expire state       source             virtual            destination        pe name          pe_data\n'
        'TCP 14:58  ESTABLISHED 203.0.113.7:51234  10.0.0.100:80      192.168.10.2:80\n'
        'TCP 04:59  NONE        203.0.113.7:0      10.0.0.100:80      192.168.10.2:80\n'
        'UDP 04:55  UDP         127.0.0.1:5353     127.0.0.1:53       127.0.0.1:53\n'
        'TCP 00:12  ESTABLISHED 203.0.113.7:5      10.0.0.100:80      192.168.10.2:80  sip                abc\n'
    ),
    '-Ln -t 10.0.0.100:80': (
        'Prot LocalAddress:Port Scheduler Flags\n'
        '  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n'
        'TCP  10.0.0.100:80 wlc persistent 300\n'
        '  -> 192.168.10.2:80              Masq    3      12         40        \n'
        '  -> 192.168.10.3:80              Masq    1      4          17        \n'
        '  -> 192.168.10.4:80              Masq    0      2          9         \n'
    ),
}


# `ipvsadm -h` (exit 0, stdout)
HELP_TEXT = (
    'ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\n'
    'Usage:\n'
    '  ipvsadm -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [--pe persistence_engine] [-b sched-flags]\n'
    '  ipvsadm -D virtual-service\n'
    '  ipvsadm -C\n'
    '  ipvsadm -R\n'
    '  ipvsadm -S [-n]\n'
    '  ipvsadm -a|e virtual-service -r server-address [options]\n'
    '  ipvsadm -d virtual-service -r server-address\n'
    '  ipvsadm -L|l [virtual-service] [options]\n'
    '  ipvsadm -Z [virtual-service]\n'
    '  ipvsadm --set tcp tcpfin udp\n'
    '  ipvsadm --start-daemon {master|backup} [daemon-options]\n'
    '  ipvsadm --stop-daemon {master|backup}\n'
    '  ipvsadm -h\n'
    '\n'
    'Commands:\n'
    'Either long or short options are allowed.\n'
    '  --add-service     -A        add virtual service with options\n'
    '  --edit-service    -E        edit virtual service with options\n'
    '  --delete-service  -D        delete virtual service\n'
    '  --clear           -C        clear the whole table\n'
    '  --restore         -R        restore rules from stdin\n'
    '  --save            -S        save rules to stdout\n'
    '  --add-server      -a        add real server with options\n'
    '  --edit-server     -e        edit real server with options\n'
    '  --delete-server   -d        delete real server\n'
    '  --list            -L|-l     list the table\n'
    '  --zero            -Z        zero counters in a service or all services\n'
    '  --set tcp tcpfin udp        set connection timeout values\n'
    '  --start-daemon              start connection sync daemon\n'
    '  --stop-daemon               stop connection sync daemon\n'
    '  --help            -h        display this help message\n'
    '\n'
    'virtual-service:\n'
    '  --tcp-service|-t  service-address   service-address is host[:port]\n'
    '  --udp-service|-u  service-address   service-address is host[:port]\n'
    '  --sctp-service    service-address   service-address is host[:port]\n'
    '  --fwmark-service|-f fwmark          fwmark is an integer greater than zero\n'
    '\n'
    'Options:\n'
    '  --ipv6         -6                   fwmark entry uses IPv6\n'
    '  --scheduler    -s scheduler         one of rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|fo|ovf|mh,\n'
    '                                      the default scheduler is wlc.\n'
    '  --pe            engine              alternate persistence engine may be sip,\n'
    '                                      not set by default.\n'
    '  --persistent   -p [timeout]         persistent service\n'
    '  --netmask      -M netmask           persistent granularity mask\n'
    '  --real-server  -r server-address    server-address is host (and port)\n'
    '  --gatewaying   -g                   gatewaying (direct routing) (default)\n'
    '  --ipip         -i                   ipip encapsulation (tunneling)\n'
    '  --masquerading -m                   masquerading (NAT)\n'
    '  --tun-type      type                one of ipip|gue|gre,\n'
    '                                      the default tunnel type is ipip.\n'
    '  --tun-port      port                tunnel destination port\n'
    '  --tun-nocsum                        tunnel encapsulation without checksum\n'
    '  --tun-csum                          tunnel encapsulation with checksum\n'
    '  --tun-remcsum                       tunnel encapsulation with remote checksum\n'
    '  --weight       -w weight            capacity of real server\n'
    '  --u-threshold  -x uthreshold        upper threshold of connections\n'
    '  --l-threshold  -y lthreshold        lower threshold of connections\n'
    '  --connection   -c                   output of current IPVS connections\n'
    '  --timeout                           output of timeout (tcp tcpfin udp)\n'
    '  --daemon                            output of daemon information\n'
    '  --stats                             output of statistics information\n'
    '  --rate                              output of rate information\n'
    '  --exact                             expand numbers (display exact values)\n'
    '  --thresholds                        output of thresholds information\n'
    '  --persistent-conn                   output of persistent connection info\n'
    '  --tun-info                          output of tunnel information\n'
    '  --nosort                            disable sorting output of service/server entries\n'
    '  --sort                              does nothing, for backwards compatibility\n'
    '  --ops          -o                   one-packet scheduling\n'
    '  --numeric      -n                   numeric output of addresses and ports\n'
    '  --sched-flags  -b flags             scheduler flags (comma-separated)\n'
    'Daemon Options:\n'
    '  --syncid sid                        syncid for connection sync (default=255)\n'
    '  --sync-maxlen length                Max sync message length (default=1472)\n'
    '  --mcast-interface interface         multicast interface for connection sync\n'
    '  --mcast-group address               IPv4/IPv6 group (default=224.0.0.81)\n'
    '  --mcast-port port                   UDP port (default=8848)\n'
    '  --mcast-ttl ttl                     Multicast TTL (default=1)\n'
)
