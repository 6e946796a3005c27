"""halb: the LVS + keepalived + nginx high-availability load-balancing cluster in one package.

Layering (DESIGN.md): config/ and balancing/ are pure; l7/ (the nginx role), vrrp/ and l4/ are
asyncio shells around pure cores; runtime/ runs processes; cli/ maps arguments to calls.
"""

__version__ = "0.1.0"
