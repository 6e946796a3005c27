"""The LVS role: virtual services, the director, its data planes and `halb ipvsadm`."""
