"""PURE. The lab's plan: hosts, addresses and the configuration files of every role.

The seeds' chapter-4 cluster (seed 002 §4-13 / §4-14: two LVS directors running keepalived, DR to
two nginx nodes; the nginx nodes proxy to Tomcat / httpd backends), on one LAN 198.18.0.0/24
(DESIGN.md address plan; the seeds' 192.168.156.x mapped):

    client  198.18.0.200 (+ .201-.204: more client addresses, for ip_hash and persistence)
    dir1    198.18.0.1   LVS master  (seed: 192.168.156.136, LVS_136, MASTER, priority 100)
    dir2    198.18.0.2   LVS backup  (seed: LVS_152, BACKUP, priority 50)
    ngx1    198.18.0.11  nginx node  (seed: 192.168.156.135)   VIP on lo, arp_ignore/announce
    ngx2    198.18.0.12  nginx node  (seed: 192.168.156.137)
    web1-3  198.18.0.21-23:8080      halb backend (the seeds' Tomcats)
    VIP     198.18.0.100:80          (seed: 192.168.156.150) — virtual_router_id 51
    VIP1/2  198.18.0.101 / .102      chapter 3's dual master on the nginx nodes (seed 002 §3-13,
                                     192.168.156.161 / .162), virtual_router_id 61 / 62 (the
                                     seed's 51 / 52 would collide with the directors' 51 on
                                     this one LAN), with the seed's check_nginx vrrp_script

Deviations from the seeds' text, each for a reason the lab states: TCP_CHECK timers shortened
(delay_loop 2, connect_timeout 1, retry 1, delay_before_retry 1 instead of 6 / 2 / 2 / 3;
keepalived 2.2 knows nb_get_retry in TCP_CHECK only as `retry`)
so a scenario takes seconds, not a minute; the check script gets `timeout 6` (it sleeps 3 s,
longer than keepalived's default timeout, the interval of 2 s, which would kill it before it
can stop keepalived); the script asks "does this namespace listen on :80" instead of
`ps -C nginx` and kills its own node's keepalived by pid file instead of `killall keepalived`
(both would reach every namespace's processes on one host).
"""

from __future__ import annotations

from dataclasses import dataclass

SUBNET = "198.18.0.0/24"
PREFIXLEN = 24
VIP = "198.18.0.100"
VIP1 = "198.18.0.101"
VIP2 = "198.18.0.102"
PORT = 80
BACKEND_PORT = 8080
CLIENT_EXTRA = ("198.18.0.201", "198.18.0.202", "198.18.0.203", "198.18.0.204")
DEFAULT_PREFIX = "hlab-"
MODES = ("halb", "peers")


@dataclass(frozen=True)
class Host:
    name: str
    addr: str
    role: str  # client | director | nginx | backend


HOSTS = (
    Host("client", "198.18.0.200", "client"),
    Host("dir1", "198.18.0.1", "director"),
    Host("dir2", "198.18.0.2", "director"),
    Host("ngx1", "198.18.0.11", "nginx"),
    Host("ngx2", "198.18.0.12", "nginx"),
    Host("web1", "198.18.0.21", "backend"),
    Host("web2", "198.18.0.22", "backend"),
    Host("web3", "198.18.0.23", "backend"),
)
BY_NAME = {h.name: h for h in HOSTS}
BY_ADDR = {h.addr: h.name for h in HOSTS}
DIRECTORS = tuple(h for h in HOSTS if h.role == "director")
NGINX = tuple(h for h in HOSTS if h.role == "nginx")
BACKENDS = tuple(h for h in HOSTS if h.role == "backend")
CLIENTS = ("198.18.0.200", *CLIENT_EXTRA)


def host(name: str) -> Host:
    return BY_NAME[name]


def node_of(addr: str) -> str | None:
    """The host name of an address ("198.18.0.11" or "198.18.0.11:43210" -> "ngx1")."""
    return BY_ADDR.get(addr.rsplit(":", 1)[0] if addr.count(":") == 1 else addr)


# -- directors (seed 002 §4-13 master, §4-14 backup) --------------------------------------------

_DIRECTOR = {"dir1": ("LVS_136", "MASTER", 100), "dir2": ("LVS_152", "BACKUP", 50)}


def director_vrrp(name: str) -> str:
    router_id, state, priority = _DIRECTOR[name]
    return f"""! Configuration File for keepalived (seed 002 {"4-13" if state == "MASTER" else "4-14"})

global_defs {{
   router_id {router_id}
}}

vrrp_instance VI_1 {{
    state {state}
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int 1
    authentication {{
        auth_type PASS
        auth_pass 1111
    }}
    virtual_ipaddress {{
        {VIP}
    }}
}}
"""


def _real_server(addr: str) -> str:
    return f"""    real_server {addr} {PORT} {{
        weight 1
        TCP_CHECK {{
            connect_port {PORT}
            connect_timeout 1
            retry 1
            delay_before_retry 1
        }}
    }}
"""


def director_lvs() -> str:
    """The virtual_server block of the seed, DR to the two nginx nodes."""
    servers = "".join(_real_server(h.addr) for h in NGINX)
    return f"""
# the cluster's address and port, as nginx's: 80
virtual_server {VIP} {PORT} {{
    delay_loop 2
    lb_algo rr
    lb_kind DR
    persistence_timeout 5
    protocol TCP

{servers}}}
"""


def director_conf(name: str) -> str:
    """The whole keepalived.conf of a director (VRRP + virtual_server), as the seed has it."""
    return director_vrrp(name) + director_lvs()


# -- nginx nodes: chapter 3's keepalived (seed 002 §3-9, §3-13) ----------------------------------

_NGINX_KA = {"ngx1": ("keep_136", ("MASTER", 100, True), ("BACKUP", 80, False)),
             "ngx2": ("keep_135", ("BACKUP", 100, False), ("MASTER", 100, True))}


def _instance(name: str, vrid: int, vip: str, spec: tuple[str, int, bool]) -> str:
    state, priority, track = spec
    tracking = """    track_script {
        check_nginx_alive
    }
""" if track else ""
    return f"""vrrp_instance {name} {{
    state {state}
    interface eth0
    virtual_router_id {vrid}
    priority {priority}
    advert_int 1
    authentication {{
        auth_type PASS
        auth_pass 1111
    }}
{tracking}    virtual_ipaddress {{
        {vip}
    }}
}}
"""


def nginx_keepalived_conf(name: str, script: str) -> str:
    """Seed 002 §3-13 (dual master) with §3-9's check_nginx vrrp_script; `script` its path."""
    router_id, vi1, vi2 = _NGINX_KA[name]
    return f"""! Configuration File for keepalived (seed 002 3-13, dual master)

global_defs {{
   router_id {router_id}
   script_user root
   enable_script_security
}}

# seed 002 3-9: restart nginx, or give the VIP away
vrrp_script check_nginx_alive {{
    script "{script}"
    interval 2
    timeout 6
    weight 10
}}

{_instance("VI_1", 61, VIP1, vi1)}
{_instance("VI_2", 62, VIP2, vi2)}"""


def check_nginx_script(start_nginx: str, keepalived_pid: str) -> str:
    """Seed 002 §3-9 check_nginx_alive_or_dead.sh, for a node of the lab."""
    return f"""#!/bin/bash
# seed 002 3-9: is nginx alive? If not, start it; if it still is not, stop keepalived so
# that the backup takes the VIP. (Lab: "alive" is "this namespace listens on :{PORT}"; the
# node's own keepalived is stopped by its pid file.)
A=`ss -Hltn 'sport = :{PORT}' | wc -l`
if [ $A -eq 0 ];then
    {start_nginx}
    sleep 3
    if [ `ss -Hltn 'sport = :{PORT}' | wc -l` -eq 0 ];then
        kill `cat {keepalived_pid}`
    fi
fi
"""


def start_nginx_script(argv: list[str], broken_flag: str) -> str:
    """The node's nginx start command (the lab and the check script both use it); it fails
    while `broken_flag` exists (the scenario of an nginx that cannot come back)."""
    cmd = " ".join(_quote(a) for a in argv)
    return f"""#!/bin/sh
[ -e {_quote(broken_flag)} ] && {{ echo "nginx is broken on this node" >&2; exit 1; }}
exec {cmd}
"""


def _quote(s: str) -> str:
    if s and all(c.isalnum() or c in "/._-=:,@+" for c in s):
        return s
    return "'" + s.replace("'", "'\\''") + "'"


# -- nginx.conf (same text for halb nginx and nginx) ---------------------------------------------


def nginx_conf(name: str) -> str:
    servers = "".join(f"        server {h.addr}:{BACKEND_PORT};\n" for h in BACKENDS)
    return f"""# {name}: the seeds' nginx node (seed 002 2-8, seed 004): a proxy to three backends
worker_processes  1;
pid               logs/nginx.pid;
error_log         logs/error.log notice;

events {{
    worker_connections  1024;
}}

http {{
    access_log  off;
    keepalive_timeout  65;

    upstream tomcats {{
{servers}    }}

    upstream sticky {{
        ip_hash;
{servers}    }}

    server {{
        listen       {PORT};
        server_name  localhost;

        location / {{
            proxy_pass http://tomcats;
            proxy_set_header Host $host;
            proxy_connect_timeout 1s;
            proxy_read_timeout 5s;
        }}

        location /sticky/ {{
            proxy_pass http://sticky;
            proxy_set_header Host $host;
            proxy_connect_timeout 1s;
            proxy_read_timeout 5s;
        }}
    }}
}}
"""
