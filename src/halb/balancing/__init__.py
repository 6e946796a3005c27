"""Balancing algorithms (PURE): one module per algorithm behind balancing.base.Balancer.

Importing the package registers every algorithm by its field name.
"""

from halb.balancing.base import (
    REGISTRY,
    Balancer,
    ConfigurationError,
    Needs,
    Outcome,
    Peer,
    PickContext,
    create,
    register,
)

__all__ = ["REGISTRY", "Balancer", "ConfigurationError", "Needs", "Outcome", "Peer",
           "PickContext", "create", "register"]

# nginx family (each module registers itself)
from halb.balancing import (
    hash,  # noqa: F401
    ip_hash,  # noqa: F401
    least_conn,  # noqa: F401
    least_time,  # noqa: F401
    nginx_peers,  # noqa: F401
    random,  # noqa: F401
    round_robin,  # noqa: F401
)
