"""VRRP (RFC 3768 v2, RFC 5798 v3) as keepalived runs it: the failover of virtual IPs.

Pure cores, thin shells (DESIGN.md rule 1):

* packet.py  PURE  the advertisement codec (v2 with auth types 0/1, v3 over IPv4 and IPv6),
                   checksums (both v3-over-IPv4 forms) and the receive checks, each failure a
                   PacketError subclass named after its reason so drops can be counted.
* machine.py PURE  the RFC 5798 state machine with keepalived's specifics (FAULT, the "forcing
                   new election" advert, preempt_delay ...): inputs in, Actions and the next
                   deadline out; time is passed in.

The I/O side (raw sockets, VIPs over netlink, gratuitous ARP, tracking, notify scripts) sits on
top of these and is the only part that touches the system.
"""
