"""The storage model (SPEC §2): storage nodes, volumes, and what drivers raise."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple


class NodeStatus(StrEnum):
    ONLINE = "Online"
    OFFLINE = "Offline"
    # The node runs but its local storage does not; its pods can still reach
    # their data over the network.
    STORAGE_DOWN = "StorageDown"
    DEGRADED = "Degraded"


USABLE = frozenset({NodeStatus.ONLINE, NodeStatus.STORAGE_DOWN})


class DriverError(Exception):
    """The driver cannot answer right now (its state is missing or unreadable)."""


class Topology(NamedTuple):
    # A NamedTuple hashes as fast as a tuple: scoring groups thousands of nodes by it.
    region: str = ""
    zone: str = ""
    rack: str = ""

    # Locality keys nest so that equal rack names in different zones never
    # match; a level whose label is missing has no key and never matches.
    @property
    def region_key(self) -> str | None:
        return self.region or None

    @property
    def zone_key(self) -> str | None:
        return f"{self.region}/{self.zone}" if self.zone else None

    @property
    def rack_key(self) -> str | None:
        return f"{self.region}/{self.zone}/{self.rack}" if self.rack else None


@dataclass(frozen=True)
class StorageNode:
    storage_id: str
    scheduler_id: str
    hostname: str
    status: NodeStatus
    ips: tuple[str, ...] = ()
    topology: Topology = Topology()  # noqa: RUF009 (immutable tuple)

    @property
    def usable(self) -> bool:
        """Can pods run here and reach their data (SPEC §5 filter step 5)."""
        return self.status in USABLE


@dataclass(frozen=True)
class Volume:
    id: str
    claim: str  # "namespace/name" of the PVC, for messages
    data_nodes: tuple[str, ...]  # storage ids of the nodes holding a replica
    labels: Mapping[str, str] = field(default_factory=dict)
    needs_anti_hyperconvergence: bool = False
    windows: bool = False
