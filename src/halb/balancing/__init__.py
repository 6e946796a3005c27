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
