"""VRRP advertisements on the wire: encode, decode and the receive checks (PURE).

Owns the byte layout of VRRPv2 (RFC 3768 §5, with RFC 2338's auth types 0 and 1) and VRRPv3
(RFC 5798 §5) over IPv4 and IPv6, the checksums, and every check keepalived's
`vrrp_check_packet` makes before an advert reaches the state machine. Layouts:

    v2:  ver|type  vrid  priority  count | auth_type  adver_int(s)  checksum | addrs | auth(8)
    v3:  ver|type  vrid  priority  count | rsvd(4) max_adver_int(12, cs)  checksum | addrs

Checksums (reference vrrp-keepalived.md §1.5): v2 is RFC 1071 over the VRRP message only; v3
over IPv6 adds the IPv6 pseudo-header; v3 over IPv4 is sent two ways in the field: with an IPv4
pseudo-header (keepalived's default, FRR, tcpdump) or without one (RFC 9568, Cisco, Juniper,
keepalived `v3_checksum_as_v2`). `decode` accepts either and says which one matched
(`Advert.checksum`), so the caller can answer a peer in its own form; old keepalived (<= 1.3.6)
put the multicast group into the pseudo-header of unicast adverts, and that form is accepted too.

Every invalid packet raises a PacketError subclass whose `reason` names the drop counter
(`too_short`, `bad_checksum`, ...); `str(err)` is keepalived's log wording. Checks that need the
receiving instance's configuration (auth, v2 interval, address list) are in `check()`.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar

IPPROTO_VRRP = 112
IPPROTO_AH = 51
TTL = 255
MCAST4 = ipaddress.IPv4Address("224.0.0.18")
MCAST6 = ipaddress.IPv6Address("ff02::12")
ADVERTISEMENT = 1
AUTH_NONE, AUTH_PASS, AUTH_AH = 0, 1, 2
AUTH_LEN = 8
HEADER_LEN = 8
IPV4_HEADER_LEN = 20

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Checksum(Enum):
    """The checksum forms; v2 always uses PLAIN and v3 over IPv6 always PSEUDO."""

    PSEUDO = "pseudo"  # v3/IPv4 with the IPv4 pseudo-header (keepalived default)
    PLAIN = "plain"  # no pseudo-header (v2; v3 per RFC 9568, `v3_checksum_as_v2`)
    PSEUDO_MCAST = "pseudo-mcast"  # keepalived <= 1.3.6 unicast: group address in the header


# -- errors ----------------------------------------------------------------------------------


class PacketError(ValueError):
    """An advert that must be dropped; `reason` names the counter the I/O layer increments."""

    reason: ClassVar[str] = "invalid"


class TooShort(PacketError):
    reason = "too_short"


class TooLong(PacketError):
    reason = "too_long"


class BadIpHeader(PacketError):
    reason = "bad_ip_header"


class NotVrrp(PacketError):
    reason = "not_vrrp"


class AhNotSupported(PacketError):
    reason = "ah_not_supported"


class BadTtl(PacketError):
    reason = "bad_ttl"


class BadVersion(PacketError):
    reason = "bad_version"


class BadType(PacketError):
    reason = "bad_type"


class BadVrid(PacketError):
    reason = "bad_vrid"


class BadAddressCount(PacketError):
    reason = "bad_address_count"


class BadChecksum(PacketError):
    reason = "bad_checksum"


class BadInterval(PacketError):
    reason = "bad_interval"


class BadAuthType(PacketError):
    reason = "bad_auth_type"


class WrongVersion(PacketError):
    reason = "wrong_version"


class AuthTypeMismatch(PacketError):
    reason = "auth_type_mismatch"


class AuthFailure(PacketError):
    reason = "auth_failure"


class IntervalMismatch(PacketError):
    reason = "interval_mismatch"


class AddressMismatch(PacketError):
    reason = "address_mismatch"


# -- the advert ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Advert:
    """One VRRP ADVERTISEMENT. `interval_cs` is in centiseconds for both versions (v2 carries
    whole seconds, so a v2 interval is a multiple of 100). `auth_data` is v2's 8-byte trailer
    (the zero-padded password for auth type 1). `checksum` says which form a decoded v3/IPv4
    advert matched; it is not part of equality."""

    version: int
    vrid: int
    priority: int
    addresses: tuple[Address, ...]
    interval_cs: int = 100
    auth_type: int = AUTH_NONE
    auth_data: bytes = b""
    checksum: Checksum | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.version not in (2, 3):
            raise ValueError(f"VRRP version {self.version} (2 or 3)")
        if not 1 <= self.vrid <= 255:
            raise ValueError(f"VRID {self.vrid} not in 1..255")
        if not 0 <= self.priority <= 255:
            raise ValueError(f"priority {self.priority} not in 0..255")
        if len(self.addresses) > 255:
            raise ValueError("more than 255 addresses")
        if len({a.version for a in self.addresses}) > 1:
            raise ValueError("addresses of both families in one advert")
        if self.version == 2:
            if any(a.version == 6 for a in self.addresses):
                raise ValueError("VRRPv2 carries IPv4 addresses only")
            if self.interval_cs % 100 or not 100 <= self.interval_cs <= 25500:
                raise ValueError(f"VRRPv2 interval {self.interval_cs} cs: whole seconds, 1..255")
            if self.auth_type not in (AUTH_NONE, AUTH_PASS, AUTH_AH):
                raise ValueError(f"auth type {self.auth_type}")
            if not self.auth_data:
                object.__setattr__(self, "auth_data", bytes(AUTH_LEN))
            if len(self.auth_data) != AUTH_LEN:
                raise ValueError("VRRPv2 authentication data is 8 bytes")
        else:
            if not 1 <= self.interval_cs <= 4095:
                raise ValueError(f"VRRPv3 interval {self.interval_cs} cs not in 1..4095")
            if not self.addresses:
                raise ValueError("VRRPv3 carries at least one address")
            if self.auth_type != AUTH_NONE or self.auth_data:
                raise ValueError("VRRPv3 has no authentication")

    @property
    def interval(self) -> float:
        """The advertisement interval in seconds."""
        return self.interval_cs / 100

    @property
    def family(self) -> int:
        return 6 if self.addresses and self.addresses[0].version == 6 else 4


def password(text: str | bytes) -> bytes:
    """keepalived's auth_pass as carried in the packet: the first 8 bytes, zero-padded."""
    raw = text.encode() if isinstance(text, str) else text
    return raw[:AUTH_LEN].ljust(AUTH_LEN, b"\0")


# -- checksums -------------------------------------------------------------------------------


def inet_checksum(data: bytes, start: int = 0) -> int:
    """RFC 1071: the one's-complement of the one's-complement sum of 16-bit words."""
    if len(data) % 2:
        data += b"\0"
    total = start + sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _pseudo(src: Address, dst: Address, length: int) -> bytes:
    if src.version == 4:
        return src.packed + dst.packed + struct.pack("!BBH", 0, IPPROTO_VRRP, length)
    return src.packed + dst.packed + struct.pack("!I3xB", length, IPPROTO_VRRP)


def _checksum(msg: bytes, form: Checksum, src: Address | None, dst: Address | None) -> int:
    if form is Checksum.PLAIN:
        return inet_checksum(msg)
    if src is None or dst is None:
        raise ValueError("a pseudo-header checksum needs the source and destination")
    if form is Checksum.PSEUDO_MCAST:
        dst = MCAST4
    return inet_checksum(_pseudo(src, dst, len(msg)) + msg)


# -- encode ----------------------------------------------------------------------------------


def encode(advert: Advert, src: Address | None = None, dst: Address | None = None,
           checksum: Checksum = Checksum.PSEUDO) -> bytes:
    """The VRRP message (the IP payload). v3 needs `src` and `dst` for the pseudo-header unless
    `checksum` is PLAIN; v2 ignores `checksum`, v3 over IPv6 always uses the pseudo-header."""
    n = len(advert.addresses)
    if advert.version == 2:
        second = struct.pack("!BB", advert.auth_type, advert.interval_cs // 100)
        form = Checksum.PLAIN
    else:
        second = struct.pack("!H", advert.interval_cs & 0x0FFF)
        form = Checksum.PSEUDO if advert.family == 6 else checksum
    head = struct.pack("!BBBB", advert.version << 4 | ADVERTISEMENT, advert.vrid,
                       advert.priority, n) + second
    body = b"".join(a.packed for a in advert.addresses) + advert.auth_data
    csum = _checksum(head + b"\0\0" + body, form, src, dst)
    return head + struct.pack("!H", csum) + body


def encode_ipv4(advert: Advert, src: ipaddress.IPv4Address, dst: ipaddress.IPv4Address = MCAST4,
                ttl: int = TTL, checksum: Checksum = Checksum.PSEUDO) -> bytes:
    """A whole IPv4 datagram as keepalived builds it for IP_HDRINCL: TOS 0xc0 (internet
    control), id 0, no fragmentation, protocol 112, TTL 255."""
    payload = encode(advert, src, dst, checksum)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0xC0, IPV4_HEADER_LEN + len(payload), 0, 0, ttl,
                      IPPROTO_VRRP, 0, src.packed, dst.packed)
    hdr = hdr[:10] + struct.pack("!H", inet_checksum(hdr)) + hdr[12:]
    return hdr + payload


# -- decode ----------------------------------------------------------------------------------


def decode(data: bytes, src: Address, dst: Address, ttl: int | None = None) -> Advert:
    """Parse and validate one VRRP message received from `src` to `dst`.

    `ttl` is the IPv4 TTL / IPv6 hop limit of the datagram; pass None where keepalived skips the
    check (unicast peers, or a hop limit the socket did not report). The checks, in order:
    complete header, version (v2 only over IPv4), exact length for the address count (short:
    TooShort, trailing bytes: TooLong, as keepalived drops both), TTL 255, type, VRID, v3 address
    count and interval non-zero, v2 auth type known, checksum.
    """
    if len(data) < HEADER_LEN:
        raise TooShort(f"vrrp packet too short, length {len(data)} and expect {HEADER_LEN}")
    vers_type, vrid, priority, count = data[0], data[1], data[2], data[3]
    version, kind = vers_type >> 4, vers_type & 0x0F
    if version not in (2, 3) or (version == 2 and src.version == 6):
        raise BadVersion(f"wrong version. Received {version} and expect "
                         f"{3 if src.version == 6 else '2 or 3'}")
    size = 4 if src.version == 4 else 16
    expected = HEADER_LEN + count * size + (AUTH_LEN if version == 2 else 0)
    if len(data) != expected:
        cls = TooLong if len(data) > expected else TooShort
        raise cls(f"vrrp packet too {'long' if cls is TooLong else 'short'}, "
                  f"length {len(data)} and expect {expected}")
    if ttl is not None and ttl != TTL:
        raise BadTtl(f"invalid TTL/HL. Received {ttl} and expect {TTL}")
    if kind != ADVERTISEMENT:
        raise BadType(f"Invalid packet type. {kind} and expect {ADVERTISEMENT}")
    if vrid == 0:
        raise BadVrid("VRID 0 is invalid")
    if version == 3:
        interval_cs = struct.unpack_from("!H", data, 4)[0] & 0x0FFF  # reserved bits ignored
        auth_type, auth_data = AUTH_NONE, b""
        if count == 0:
            raise BadAddressCount("VRRPv3 advert without addresses")
        if interval_cs == 0:
            raise BadInterval("VRRPv3 advert with Max Adver Int 0")
    else:
        auth_type, interval_cs = data[4], data[5] * 100
        auth_data = data[-AUTH_LEN:]
        if auth_type not in (AUTH_NONE, AUTH_PASS, AUTH_AH):
            raise BadAuthType(f"Invalid auth type: {auth_type}")
        if interval_cs == 0:
            raise BadInterval("VRRPv2 advert with Adver Int 0")
    form = _verify(data, version, src, dst)
    cls_addr = ipaddress.IPv4Address if size == 4 else ipaddress.IPv6Address
    addrs = tuple(cls_addr(data[HEADER_LEN + i * size:HEADER_LEN + (i + 1) * size])
                  for i in range(count))
    return Advert(version, vrid, priority, addrs, interval_cs, auth_type, auth_data, form)


def _verify(data: bytes, version: int, src: Address, dst: Address) -> Checksum:
    if version == 2:
        forms = (Checksum.PLAIN,)
    elif src.version == 6:
        forms = (Checksum.PSEUDO,)
    elif dst.is_multicast:
        forms = (Checksum.PSEUDO, Checksum.PLAIN)
    else:
        forms = (Checksum.PSEUDO, Checksum.PLAIN, Checksum.PSEUDO_MCAST)
    for form in forms:
        if _checksum(data, form, src, dst) == 0:  # a correct checksum sums to zero
            return form
    raise BadChecksum(f"Invalid VRRPv{version} checksum")


def decode_ipv4(datagram: bytes, check_ttl: bool = True
                ) -> tuple[Advert, ipaddress.IPv4Address, ipaddress.IPv4Address, int]:
    """A whole IPv4 datagram as a raw IPPROTO_VRRP socket returns it: (advert, src, dst, ttl).

    An AH datagram (IP protocol 51) is refused the way keepalived refuses it when AH is not
    configured ("Received AH header but auth type not AH"): halb implements no IPsec-AH."""
    if len(datagram) < IPV4_HEADER_LEN:
        raise TooShort(f"vrrp packet too short, length {len(datagram)} and expect "
                       f"{IPV4_HEADER_LEN + HEADER_LEN}")
    ver_ihl, ttl, proto = datagram[0], datagram[8], datagram[9]
    tot_len = struct.unpack_from("!H", datagram, 2)[0]
    ihl = (ver_ihl & 0x0F) * 4
    if ver_ihl >> 4 != 4 or ihl < IPV4_HEADER_LEN or len(datagram) < ihl:
        raise BadIpHeader("not an IPv4 header")
    if proto == IPPROTO_AH:
        raise AhNotSupported("Received AH header but auth type not AH")
    if proto != IPPROTO_VRRP:
        raise NotVrrp(f"IP protocol {proto} is not VRRP")
    src = ipaddress.IPv4Address(datagram[12:16])
    dst = ipaddress.IPv4Address(datagram[16:20])
    advert = decode(datagram[ihl:], src, dst, ttl if check_ttl else None)
    if tot_len != len(datagram):
        raise BadIpHeader(f"ip_tot_len mismatch against received length. {tot_len} and "
                          f"received {len(datagram)}")
    return advert, src, dst, ttl


# -- the receiving instance's checks ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Expect:
    """What the receiving instance is configured with, for `check`. `addresses` is the VIP list
    to compare (None skips it, as keepalived does with skip_check_adv_addr for a known master)."""

    version: int
    auth_type: int = AUTH_NONE
    auth_data: bytes = bytes(AUTH_LEN)
    interval_cs: int = 100
    addresses: tuple[Address, ...] | None = None


def check(advert: Advert, expect: Expect) -> None:
    """keepalived's per-instance checks after decode, in its order: version, v2 auth type and
    password, v2 Adver Int equal to ours (RFC 3768 §7.1; v3 backups adopt the master's instead),
    then the address count and list (RFC "MAY"; keepalived drops on a mismatch)."""
    if advert.version != expect.version:
        raise WrongVersion(f"wrong version. Received {advert.version} and expect "
                           f"{expect.version}")
    if advert.version == 2:
        if advert.auth_type != expect.auth_type:
            raise AuthTypeMismatch(f"received a {advert.auth_type} auth, expecting "
                                   f"{expect.auth_type}!")
        if advert.auth_type == AUTH_PASS and advert.auth_data != expect.auth_data:
            raise AuthFailure("received an invalid passwd!")
        if advert.interval_cs != expect.interval_cs:
            raise IntervalMismatch(f"advertisement interval mismatch mine="
                                   f"{expect.interval_cs // 100} sec rcv'd="
                                   f"{advert.interval_cs // 100} sec")
    if expect.addresses is None:
        return
    if len(advert.addresses) != len(expect.addresses):
        raise AddressMismatch(f"received an unexpected ip number count {len(advert.addresses)}"
                              f", expected {len(expect.addresses)}!")
    for addr in expect.addresses:
        if addr not in advert.addresses:
            raise AddressMismatch(f"ip address associated with VRID not present in MASTER "
                                  f"advert : {addr}")
