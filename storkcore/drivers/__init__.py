"""Storage drivers, chosen by name.

Built-in: `csi`, `longhorn`, `pxd` (Portworx) and `linstor`. A third-party package registers more through
the entry-point group `stork_py.drivers` (name = driver name, value = a
`Driver` subclass taking `(cluster, options)`).
"""

from __future__ import annotations

from importlib.metadata import entry_points

from storkcore.cluster import ClusterState
from storkcore.drivers.base import Driver, DriverOptions
from storkcore.drivers.csi import CsiDriver
from storkcore.drivers.linstor import LinstorDriver
from storkcore.drivers.longhorn import LonghornDriver
from storkcore.drivers.pxd import PortworxDriver

ENTRY_POINT_GROUP = "stork_py.drivers"
BUILT_IN: dict[str, type[Driver]] = {
    "csi": CsiDriver,
    "longhorn": LonghornDriver,
    "pxd": PortworxDriver,
    "linstor": LinstorDriver,
}

__all__ = ["Driver", "DriverOptions", "available_drivers", "make_driver"]


def available_drivers() -> dict[str, type[Driver]]:
    found = dict(BUILT_IN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep)  # loaded only when chosen
    return found


def make_driver(name: str, cluster: ClusterState, options: DriverOptions) -> Driver:
    drivers = available_drivers()
    if name not in drivers:
        raise ValueError(f"unknown driver {name!r}; known: {', '.join(sorted(drivers))}")
    chosen = drivers[name]
    driver_class = chosen if isinstance(chosen, type) else chosen.load()
    if not (isinstance(driver_class, type) and issubclass(driver_class, Driver)):
        raise ValueError(f"driver {name!r} does not name a Driver subclass")
    return driver_class(cluster, options)
