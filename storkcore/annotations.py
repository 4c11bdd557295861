"""Annotation and label keys that users set on pods, claims, classes and nodes."""

STORK_PREFIX = "stork.libopenstorage.org/"

# Pod annotations
PREFER_LOCAL_NODE_ONLY = STORK_PREFIX + "preferLocalNodeOnly"
DISABLE_HYPERCONVERGENCE = STORK_PREFIX + "disableHyperconvergence"
DISABLE_ADMISSION_CONTROLLER = STORK_PREFIX + "disable-admission-controller"
DISABLE_HEALTH_MONITOR = STORK_PREFIX + "disable-health-monitor"

# Pod annotations written by the webhook (locality at scale, storkcore/locality.py): the nodes a
# pod was held to at admission, or why it was not held to any.
REPLICA_NODES = STORK_PREFIX + "replica-nodes"
LOCALITY = STORK_PREFIX + "locality"

# Volume labels (StorageClass parameters, PVC labels or PVC annotations)
PREFER_REMOTE_NODE = STORK_PREFIX + "preferRemoteNode"
PREFER_REMOTE_NODE_ONLY = STORK_PREFIX + "preferRemoteNodeOnly"
SKIP_SCHEDULER_SCORING = STORK_PREFIX + "skipSchedulerScoring"

# PVC annotations
RESTORE_IN_PROGRESS = STORK_PREFIX + "restore-in-progress"
# Until when pods of this claim are admitted without the replica-node constraint (RFC 3339,
# written by the controller when a held pod could not be placed on its replica nodes).
LOCALITY_FALLBACK_UNTIL = STORK_PREFIX + "locality-fallback-until"

# Node annotation set by the Portworx operator and honoured for every driver
NODE_UNSCHEDULABLE = "operator.libopenstorage.org/unschedulable"

# Node label for the rack level of topology
RACK_LABEL = STORK_PREFIX + "rack"

# Provisioner resolution
STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
BETA_DEFAULT_CLASS = "storageclass.beta.kubernetes.io/is-default-class"

TRUE_WORDS = frozenset({"true", "1", "t", "yes", "y"})
FALSE_WORDS = frozenset({"false", "0", "f", "no", "n"})


def is_true(value: object) -> bool:
    """True for the usual spellings of yes (`true`, `1`, `t`, `yes`, any case)."""
    return isinstance(value, str | bool) and str(value).strip().lower() in TRUE_WORDS


def is_false(value: object) -> bool:
    """True for the usual spellings of no; absent or garbage values are not false."""
    return isinstance(value, str | bool) and str(value).strip().lower() in FALSE_WORDS
