"""Debian's ipvsadm 1.31 as an oracle on a kernel without IPVS.

ipvsadm_shim.c (LD_PRELOAD) answers libipvs's sockopt API from a table file written here from
a `model.TableView`, logs the set-commands ipvsadm would send to the kernel, and can make them
fail with a chosen errno. Nothing reaches the kernel or the network. The sockopt API carries
IPv4 only, no persistence engine and no tunnel type, so tables for the oracle stay within that.
"""

from __future__ import annotations

import ipaddress
import os
import pathlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

from halb.l4.model import Command, ConnView, Forward, Op, Proto, Stats, TableView

SHIM_SOURCE = pathlib.Path(__file__).with_name("ipvsadm_shim.c")
PROTO = {Proto.TCP: 6, Proto.UDP: 17, Proto.SCTP: 132, Proto.FWM: 6}
CONN_FLAGS = {Forward.MASQ: 0, Forward.LOCAL: 1, Forward.TUNNEL: 2, Forward.ROUTE: 3}
SCHED_BITS = {"flag-1": 8, "sh-fallback": 8, "mh-fallback": 8, "flag-2": 16, "sh-port": 16,
              "mh-port": 16, "flag-3": 32}


@dataclass(frozen=True)
class Result:
    stdout: str
    stderr: str
    code: int
    log: list[str]


def build_shim(workdir: pathlib.Path) -> pathlib.Path | None:
    """Compile the shim; None when there is no C compiler."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        return None
    out = workdir / "ipvsadm_shim.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(out), str(SHIM_SOURCE), "-ldl"],
                   check=True, capture_output=True, timeout=120)
    return out


def _stats(st: Stats, rates: Stats) -> str:
    return " ".join(str(v) for v in (st.conns, st.inpkts, st.outpkts, st.inbytes, st.outbytes,
                                     rates.conns, rates.inpkts, rates.outpkts, rates.inbytes,
                                     rates.outbytes))


def table_file(table: TableView) -> str:
    lines = [f"T {table.timeouts.tcp} {table.timeouts.tcpfin} {table.timeouts.udp}"]
    for svc in table.services:
        spec, key = svc.spec, svc.spec.key
        flags = (1 if spec.persistent else 0) | (4 if spec.ops else 0)
        for f in spec.sched_flags:
            flags |= SCHED_BITS[f]
        addr = key.addr or "0.0.0.0"
        mask = spec.netmask if "." in spec.netmask else "255.255.255.255"
        lines.append(f"S {PROTO[key.proto]} {addr} {key.port} {key.fwmark} {spec.scheduler} "
                     f"{flags} {spec.persistent} {mask} {_stats(svc.stats, svc.rates)}")
        for d in svc.dests:
            s = d.spec
            lines.append(f"D {s.addr} {s.port} {CONN_FLAGS[s.forward]} {s.weight} "
                         f"{s.u_threshold} {s.l_threshold} {d.active} {d.inactive} {d.persist} "
                         f"{_stats(d.stats, d.rates)}")
    return "\n".join(lines) + "\n"


def _hex(addr: str) -> str:
    return f"{int(ipaddress.IPv4Address(addr)):08X}"


def conn_file(conns: tuple[ConnView, ...]) -> str:
    """/proc/net/ip_vs_conn as the kernel prints it for IPv4."""
    out = ["Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n"]
    for c in conns:
        pe = f" {c.pe_name} {c.pe_data}" if c.pe_name else ""
        out.append(f"{c.proto:<3} {_hex(c.client[0])} {c.client[1]:04X} {_hex(c.virtual[0])} "
                   f"{c.virtual[1]:04X} {_hex(c.dest[0])} {c.dest[1]:04X} {c.state:<11} "
                   f"{int(c.expires):7d}{pe}\n")
    return "".join(out)


class Oracle:
    def __init__(self, binary: str, shim: pathlib.Path, workdir: pathlib.Path) -> None:
        self.binary, self.shim, self.workdir = binary, shim, workdir

    def run(self, args: list[str], table: TableView | None = None, *, errno: int = 0,
            stdin: str = "") -> Result:
        with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
            d = pathlib.Path(tmp)
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C",
                   "LD_PRELOAD": str(self.shim), "HALB_FAKE_IPVS_LOG": str(d / "log"),
                   "HALB_FAKE_IPVS_ERRNO": str(errno)}
            if table is not None:
                (d / "table").write_text(table_file(table))
                (d / "conn").write_text(conn_file(table.connections))
                env["HALB_FAKE_IPVS_TABLE"] = str(d / "table")
                env["HALB_FAKE_IPVS_CONN"] = str(d / "conn")
            proc = subprocess.run(["ipvsadm", *args], executable=self.binary, input=stdin,
                                  capture_output=True,
                                  text=True, env=env, timeout=30)
            log = (d / "log").read_text().splitlines() if (d / "log").exists() else []
        return Result(proc.stdout, proc.stderr, proc.returncode, log)


def log_line(cmd: Command) -> str:
    """The shim's log line for what ipvsadm would send the kernel for `cmd` (IPv4 only)."""
    names = {Op.ADD_SERVICE: "ADD", Op.EDIT_SERVICE: "EDIT", Op.DEL_SERVICE: "DEL",
             Op.CLEAR: "FLUSH", Op.ADD_DEST: "ADDDEST", Op.EDIT_DEST: "EDITDEST",
             Op.DEL_DEST: "DELDEST", Op.ZERO: "ZERO", Op.SET_TIMEOUTS: "TIMEOUT"}
    line = names[cmd.op]
    if cmd.op is Op.SET_TIMEOUTS:
        assert cmd.timeouts is not None
        return f"{line} {cmd.timeouts.tcp} {cmd.timeouts.tcpfin} {cmd.timeouts.udp}"
    if cmd.op is Op.CLEAR:
        return line
    svc = cmd.service
    if svc is None:  # -Z for every service: an empty service
        return f"{line} proto=0 addr=0.0.0.0 port=0 fwmark=0 sched= flags=0 timeout=0 " \
               "netmask=255.255.255.255"
    key = svc.key
    full = cmd.op in (Op.ADD_SERVICE, Op.EDIT_SERVICE)
    flags = 0
    if full:
        flags = (1 if svc.persistent else 0) | (4 if svc.ops else 0)
        for f in svc.sched_flags:
            flags |= SCHED_BITS[f]
    line += (f" proto={PROTO[key.proto]} addr={key.addr or '0.0.0.0'} port={key.port} "
             f"fwmark={key.fwmark} sched={svc.scheduler[:15] if full else ''} flags={flags} "
             f"timeout={svc.persistent if full else 0} "
             f"netmask={svc.netmask if full else '255.255.255.255'}")
    if cmd.dest is not None:
        d = cmd.dest
        line += (f" daddr={d.addr} dport={d.port} conn_flags={CONN_FLAGS[d.forward]} "
                 f"weight={d.weight} u={d.u_threshold} l={d.l_threshold}")
    return line
