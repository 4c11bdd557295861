"""What each of stork-py's service accounts must be allowed to do: the API calls its component
makes (manifests/base/rbac.yaml grants exactly these; tests/unit/test_check.py holds the two
together), asked of the cluster's authorizer one SubjectAccessReview per permission."""

from __future__ import annotations

from dataclasses import dataclass

READ = ("get", "list", "watch")
STORK = "stork.libopenstorage.org"


@dataclass(frozen=True)
class Permission:
    verb: str
    group: str
    resource: str  # may be "resource/subresource"
    namespace: str = ""  # "" : in every namespace (or cluster-scoped)
    name: str = ""  # "" : any object

    def describe(self) -> str:
        group = f".{self.group}" if self.group else ""
        what = f"{self.resource}{group}" + (f" {self.name}" if self.name else "")
        where = f" in namespace {self.namespace}" if self.namespace else ""
        return f"{self.verb} {what}{where}"


def _each(verbs: tuple[str, ...], group: str, resources: tuple[str, ...], **where: str) -> list[Permission]:
    return [Permission(v, group, r, **where) for r in resources for v in verbs]


def _storage_reader() -> list[Permission]:
    return [
        *_each(READ, "", ("nodes", "persistentvolumeclaims", "persistentvolumes", "pods")),
        *_each(READ, "storage.k8s.io", ("storageclasses", "csinodes")),
    ]


def _driver_access(driver: str, longhorn_namespace: str) -> list[Permission]:
    if driver == "longhorn":
        return _each(READ, "longhorn.io", ("volumes", "replicas", "nodes"), namespace=longhorn_namespace)
    if driver == "pxd":
        return [Permission("get", "", "services", namespace="kube-system", name="portworx-service")]
    return []


def _webhook_configurations(prefix: str) -> list[Permission]:
    kinds = ("mutatingwebhookconfigurations", "validatingwebhookconfigurations")
    return _each(("get", "update"), "admissionregistration.k8s.io", kinds, name=f"{prefix}-webhook")


def _lease(namespace: str, name: str) -> list[Permission]:
    return [
        Permission("create", "coordination.k8s.io", "leases", namespace=namespace),
        *_each(("get", "update"), "coordination.k8s.io", ("leases",), namespace=namespace, name=name),
    ]


def extender(namespace: str, prefix: str) -> list[Permission]:
    return [*_storage_reader(), Permission("create", "", "events")]


def webhook(namespace: str, prefix: str) -> list[Permission]:
    return [
        *_each(READ, "", ("nodes", "persistentvolumeclaims", "persistentvolumes")),
        *_each(READ, "storage.k8s.io", ("storageclasses", "csinodes")),
        *_each(("get",), STORK, ("rules", "schedulepolicies")),
    ]


def controller(namespace: str, prefix: str) -> list[Permission]:
    stork_kinds = ("groupvolumesnapshots", "rules", "volumesnapshotschedules", "schedulepolicies")
    return [
        *_storage_reader(),
        Permission("create", "", "events"),
        Permission("delete", "", "pods"),
        Permission("patch", "", "persistentvolumeclaims"),
        *_each(("create", "get"), "", ("pods/exec",)),
        *_each(READ, STORK, stork_kinds),
        *_each(("patch",), STORK, ("groupvolumesnapshots/status", "volumesnapshotschedules/status")),
        *_each(("create", "delete"), STORK, ("groupvolumesnapshots",)),
        *_each(("get", "list", "create", "delete"), "snapshot.storage.k8s.io", ("volumesnapshots",)),
        Permission("list", "snapshot.storage.k8s.io", "volumesnapshotclasses"),
        *_lease(namespace, f"{prefix}-controller"),
        *_each(("get", "update"), "", ("secrets",), namespace=namespace, name=f"{prefix}-tls"),
        *_each(("get", "patch"), "apps", ("deployments",), namespace=namespace, name=f"{prefix}-scheduler"),
        *_webhook_configurations(prefix),
    ]


def certs(namespace: str, prefix: str) -> list[Permission]:
    return [
        Permission("create", "", "secrets", namespace=namespace),
        *_each(("get", "update"), "", ("secrets",), namespace=namespace, name=f"{prefix}-tls"),
        Permission("get", "", "configmaps", namespace=namespace, name=f"{prefix}-config"),  # the Secret's owner
        *_webhook_configurations(prefix),
    ]


def scheduler(namespace: str, prefix: str) -> list[Permission]:
    """kube-scheduler's own needs (the standard roles system:kube-scheduler and
    system:volume-scheduler grant them), the ones a stork scheduler cannot work without."""
    return [
        *_each(("list", "watch"), "", ("pods", "nodes", "persistentvolumeclaims", "persistentvolumes")),
        Permission("create", "", "pods/binding"),
        Permission("patch", "", "pods/status"),
        *_each(("list", "watch"), "storage.k8s.io", ("storageclasses", "csinodes")),
        *_lease(namespace, f"{prefix}-scheduler"),
        Permission("get", "", "configmaps", namespace="kube-system", name="extension-apiserver-authentication"),
    ]


COMPONENTS = {"extender": extender, "webhook": webhook, "controller": controller, "certs": certs}
USES_DRIVER = ("extender", "webhook", "controller")


def needed(
    namespace: str, prefix: str, driver: str, longhorn_namespace: str, with_scheduler: bool
) -> dict[str, list[Permission]]:
    """Service account name -> the permissions it needs, for one install."""
    found: dict[str, list[Permission]] = {}
    for component, permissions in COMPONENTS.items():
        extra = _driver_access(driver, longhorn_namespace) if component in USES_DRIVER else []
        found[f"{prefix}-{component}"] = [*permissions(namespace, prefix), *extra]
    if with_scheduler:
        found[f"{prefix}-scheduler"] = scheduler(namespace, prefix)
    return found


def review(namespace: str, account: str, permission: Permission) -> dict:
    """A SubjectAccessReview for one service account and one permission."""
    resource, _, subresource = permission.resource.partition("/")
    attributes = {"verb": permission.verb, "group": permission.group, "resource": resource}
    if subresource:
        attributes["subresource"] = subresource
    if permission.namespace:
        attributes["namespace"] = permission.namespace
    if permission.name:
        attributes["name"] = permission.name
    return {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": f"system:serviceaccount:{namespace}:{account}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"],
            "resourceAttributes": attributes,
        },
    }
