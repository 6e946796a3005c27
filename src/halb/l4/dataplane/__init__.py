"""L4 data planes: one module per way of forwarding (userspace.py, nftables.py) behind base.py."""
