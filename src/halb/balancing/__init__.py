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

# IPVS family, registered under their ipvsadm names (rr wrr lc wlc sed nq sh dh lblc lblcr mh fo
# ovf twos)
# isort: split
from halb.balancing import (
    ipvs_dh,  # noqa: F401
    ipvs_fo,  # noqa: F401
    ipvs_lblc,  # noqa: F401
    ipvs_lblcr,  # noqa: F401
    ipvs_lc,  # noqa: F401
    ipvs_mh,  # noqa: F401
    ipvs_nq,  # noqa: F401
    ipvs_ovf,  # noqa: F401
    ipvs_rr,  # noqa: F401
    ipvs_sed,  # noqa: F401
    ipvs_sh,  # noqa: F401
    ipvs_twos,  # noqa: F401
    ipvs_wlc,  # noqa: F401
    ipvs_wrr,  # noqa: F401
)
