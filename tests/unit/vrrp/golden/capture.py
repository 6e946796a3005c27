"""Capture golden VRRP adverts from the real keepalived (run by hand as root; not a test).

    .venv/bin/python tests/unit/vrrp/golden/capture.py [OUTDIR]

For each scenario: two network namespaces joined by a veth pair on 198.18.0.0/15 (IPv6:
link-local and the benchmarking prefix 2001:2::/48, never routed), keepalived (VRRP only) in
one, tcpdump in the other; after a few adverts keepalived gets SIGTERM so its priority-0 advert
is captured too. Each packet is written as the hex of the whole IP datagram with tcpdump's own
verbose decode, which is the independent oracle test_packet.py checks the decoder against.
Everything created (namespaces, links, processes, temp files) is removed in `finally`.
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

NS_A, NS_B = "halb-gold-a", "halb-gold-b"
IF_A, IF_B = "hgolda", "hgoldb"

SCENARIOS: dict[str, str] = {
    "v2_pass": """
vrrp_instance VI_1 {
    state MASTER
    interface hgolda
    virtual_router_id 51
    priority 100
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass 1111
    }
    virtual_ipaddress {
        198.18.0.100/24
        198.18.0.101
    }
}
""",
    "v2_noauth_owner": """
vrrp_instance VI_2 {
    state MASTER
    interface hgolda
    virtual_router_id 52
    advert_int 2
    virtual_ipaddress {
        198.18.0.102
    }
}
""",
    "v3_ipv4": """
global_defs {
    vrrp_version 3
}
vrrp_instance VI_3 {
    state BACKUP
    interface hgolda
    virtual_router_id 53
    priority 150
    advert_int 0.5
    virtual_ipaddress {
        198.18.0.110/24
    }
}
""",
    "v3_ipv6": """
vrrp_instance VI_6 {
    state BACKUP
    interface hgolda
    virtual_router_id 54
    priority 200
    advert_int 0.25
    virtual_ipaddress {
        fe80::18:110/64
        2001:2::110/64
    }
}
""",
}


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


def setup() -> None:
    sh("ip", "netns", "add", NS_A)
    sh("ip", "netns", "add", NS_B)
    sh("ip", "link", "add", IF_A, "netns", NS_A, "type", "veth", "peer", "name", IF_B,
       "netns", NS_B)
    for ns, ifname, addr in ((NS_A, IF_A, "198.18.0.1/24"), (NS_B, IF_B, "198.18.0.2/24")):
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{ifname}.accept_dad=0")
        sh("ip", "-n", ns, "addr", "add", addr, "dev", ifname)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "link", "set", ifname, "up")


def teardown() -> None:
    for ns in (NS_A, NS_B):
        sh("ip", "netns", "del", ns, check=False)


def run(name: str, conf: str, workdir: str, seconds: float) -> tuple[bytes, str, str]:
    conf_path = os.path.join(workdir, f"{name}.conf")
    pcap = os.path.join(workdir, f"{name}.pcap")
    with open(conf_path, "w") as f:
        f.write(conf)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        dump = subprocess.Popen(["ip", "netns", "exec", NS_B, "tcpdump", "-i", IF_B, "-n",
                                 "-U", "-w", pcap, "ip proto 112 or ip6 proto 112"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(dump)
        time.sleep(1.0)
        log = open(os.path.join(workdir, f"{name}.log"), "wb")  # noqa: SIM115
        ka = subprocess.Popen(["ip", "netns", "exec", NS_A, "keepalived", "-n", "-l", "-D",
                               "-P", "-f", conf_path, "-p", os.path.join(workdir, "ka.pid"),
                               "-r", os.path.join(workdir, "vrrp.pid"), "-i", "golden"],
                              stdout=log, stderr=log)
        procs.append(ka)
        time.sleep(seconds)
        ka.send_signal(signal.SIGTERM)
        ka.wait(timeout=10)
        log.close()
        time.sleep(0.5)
        dump.send_signal(signal.SIGINT)
        dump.wait(timeout=10)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    with open(pcap, "rb") as f:
        data = f.read()
    verbose = sh("tcpdump", "-n", "-v", "-r", pcap).stdout
    with open(os.path.join(workdir, f"{name}.log")) as f:
        return data, verbose, f.read()


def packets(pcap: bytes) -> list[tuple[float, bytes]]:
    """(timestamp, IP datagram) from an Ethernet pcap."""
    magic = struct.unpack_from("<I", pcap)[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
    out, off = [], 24
    while off + 16 <= len(pcap):
        sec, frac, caplen, _ = struct.unpack_from(endian + "IIII", pcap, off)
        frame = pcap[off + 16:off + 16 + caplen]
        off += 16 + caplen
        out.append((sec + frac / (1e9 if nano else 1e6), frame[14:]))
    return out


def verbose_lines(text: str) -> list[str]:
    """tcpdump -v prints one or two lines per packet; join them per packet."""
    pkts: list[str] = []
    for line in text.splitlines():
        if line[:1].isdigit():
            pkts.append(line.strip())
        elif pkts:
            pkts[-1] += " " + line.strip()
    return pkts


def main() -> None:
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    version = sh("keepalived", "--version", check=False).stderr.splitlines()[0]
    workdir = tempfile.mkdtemp(prefix="halb-golden-")
    try:
        for name, conf in SCENARIOS.items():
            teardown()
            setup()
            try:
                pcap, verbose, log = run(name, conf, workdir, 6.0)
            finally:
                teardown()
            pkts = packets(pcap)
            decoded = verbose_lines(verbose)
            assert len(pkts) == len(decoded), (name, len(pkts), len(decoded))
            with open(os.path.join(outdir, f"{name}.txt"), "w") as f:
                f.write(f"# Golden VRRP adverts captured from {version} by capture.py\n")
                f.write("# (veth pair between two namespaces; keepalived -P -n, then SIGTERM).\n")
                f.write("# config:\n")
                for line in conf.strip().splitlines():
                    f.write(f"#   {line}\n")
                f.write("# keepalived log:\n")
                for line in log.splitlines():
                    if "STATE" in line or "priority" in line.lower():
                        f.write(f"#   {line.strip()}\n")
                t0 = pkts[0][0] if pkts else 0.0
                for (ts, ip), text in zip(pkts, decoded, strict=True):
                    f.write(f"\ntime +{ts - t0:.3f}\n")
                    f.write(f"tcpdump {text.split(' ', 1)[1]}\n")
                    f.write(f"ip {ip.hex()}\n")
            print(name, len(pkts), "packets")
    finally:
        teardown()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
