"""`storkctl restore`: PVCs from a Successful GroupVolumeSnapshot, and clear errors."""

from __future__ import annotations

import pytest

from storkcore.kube import NAMESPACES, PVCS, ApiError
from storkcore.snapshots import GROUP_SNAPSHOTS, VOLUME_SNAPSHOT_CONTENTS, VOLUME_SNAPSHOTS
from storkctl.cli import build_parser, main
from storkctl.objects import Refused
from storkctl.restore import restore


class FakeKube:
    def __init__(self, objects):
        self.objects = objects  # (resource, namespace, name) -> object
        self.created = []

    def get(self, resource, namespace, name):
        return self.objects.get((resource, namespace, name))

    def create(self, resource, namespace, body):
        key = (resource, namespace, body["metadata"]["name"])
        if key in self.objects:
            raise ApiError(409, "AlreadyExists")
        self.objects[key] = body
        self.created.append(body)
        return body


def cluster(state="Successful"):
    group = {
        "metadata": {"name": "db-backup", "namespace": "prod"},
        "status": {
            "status": state,
            "reason": "PreChecks: PVC data not Bound yet" if state == "Failed" else "",
            "volumeSnapshots": [{"volumeSnapshotName": "db-backup-data-0", "parentVolumeID": "data"}],
        },
    }
    source = {
        "metadata": {"name": "data", "namespace": "prod", "labels": {"app": "db"}},
        "spec": {
            "storageClassName": "longhorn",
            "accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": "5Gi"}},
        },
    }
    snapshot = {
        "metadata": {"name": "db-backup-data-0", "namespace": "prod", "uid": "u-1"},
        "status": {"restoreSize": "5Gi", "readyToUse": True, "boundVolumeSnapshotContentName": "snapcontent-u-1"},
    }
    content = {
        "metadata": {"name": "snapcontent-u-1"},
        "spec": {"driver": "driver.longhorn.io", "volumeSnapshotClassName": "longhorn-snapshots"},
        "status": {"snapshotHandle": "bs://pvc-1/backup-1", "readyToUse": True},
    }
    return FakeKube(
        {
            (GROUP_SNAPSHOTS, "prod", "db-backup"): group,
            (PVCS, "prod", "data"): source,
            (VOLUME_SNAPSHOTS, "prod", "db-backup-data-0"): snapshot,
            (VOLUME_SNAPSHOT_CONTENTS, "", "snapcontent-u-1"): content,
            (NAMESPACES, "", "staging"): {"metadata": {"name": "staging"}},
        }
    )


def args(*extra):
    return build_parser().parse_args(["restore", "db-backup", "-n", "prod", *extra])


def test_restore_creates_a_claim_like_the_source_from_each_snapshot(capsys):
    kube = cluster()
    restore(kube, args("--suffix", "restored"))
    (claim,) = kube.created
    assert claim["metadata"]["name"] == "data-restored"
    assert claim["metadata"]["labels"] == {"app": "db", "stork.libopenstorage.org/restored-from": "db-backup"}
    assert claim["spec"] == {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": "5Gi"}},
        "storageClassName": "longhorn",
        "dataSource": {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "db-backup-data-0"},
    }
    assert (
        capsys.readouterr().out == "persistentvolumeclaim/data-restored created from volumesnapshot/db-backup-data-0\n"
    )


@pytest.mark.parametrize(
    "kube,extra,message",
    [
        (
            cluster("Failed"),
            (),
            "groupvolumesnapshot db-backup is Failed, not Successful: PreChecks: PVC data not Bound yet",
        ),
        (cluster(), (), "persistentvolumeclaim prod/data already exists (use --suffix)"),
        (FakeKube({}), (), "groupvolumesnapshot prod/db-backup not found"),
    ],
)
def test_restore_refuses_with_a_clear_message(kube, extra, message):
    with pytest.raises(Refused, match=message.replace("(", r"\(").replace(")", r"\)")):
        restore(kube, args(*extra))


def listing(kube, *namespaces: str):
    group = kube.objects[(GROUP_SNAPSHOTS, "prod", "db-backup")]
    group["spec"] = {"restoreNamespaces": list(namespaces)}
    return kube


def test_restore_into_a_listed_namespace_binds_a_copy_of_each_snapshot_there(capsys):
    kube = listing(cluster(), "staging")
    restore(kube, args("--to-namespace", "staging"))
    content, snapshot, claim = kube.created
    copy = "stork-restore-u-1-staging"
    assert content["metadata"]["name"] == copy
    assert content["spec"] == {
        "deletionPolicy": "Retain",
        "driver": "driver.longhorn.io",
        "source": {"snapshotHandle": "bs://pvc-1/backup-1"},
        "volumeSnapshotClassName": "longhorn-snapshots",
        "volumeSnapshotRef": {
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshot",
            "namespace": "staging",
            "name": "db-backup-data-0",
        },
    }
    assert snapshot["metadata"]["namespace"] == "staging"
    assert snapshot["spec"] == {
        "source": {"volumeSnapshotContentName": copy},
        "volumeSnapshotClassName": "longhorn-snapshots",
    }
    assert claim["metadata"]["namespace"] == "staging" and claim["spec"]["dataSource"]["name"] == "db-backup-data-0"
    assert capsys.readouterr().out.splitlines() == [
        f"volumesnapshotcontent/{copy} created (Retain, on the source snapshot's handle)",
        "volumesnapshot/db-backup-data-0 created in namespace staging",
        "persistentvolumeclaim/data created from volumesnapshot/db-backup-data-0",
    ]
    # A second restore into staging reuses the copy; only the claims need new names.
    with pytest.raises(Refused, match="persistentvolumeclaim staging/data already exists"):
        restore(kube, args("--to-namespace", "staging"))
    restore(kube, args("--to-namespace", "staging", "--suffix", "again"))
    assert [c["metadata"]["name"] for c in kube.created[3:]] == ["data-again"]


@pytest.mark.parametrize(
    ("listed", "target", "message"),
    [
        ((), "staging", "may not be restored into namespace staging: its spec.restoreNamespaces lists none"),
        (("qa",), "staging", "may not be restored into namespace staging: its spec.restoreNamespaces lists qa"),
        (("gone",), "gone", "namespace gone not found"),
    ],
)
def test_restore_into_another_namespace_is_refused_unless_listed_and_present(listed, target, message):
    kube = listing(cluster(), *listed)
    with pytest.raises(Refused, match=message):
        restore(kube, args("--to-namespace", target))
    assert kube.created == []


def test_a_snapshot_copy_that_is_not_this_restores_is_refused():
    kube = listing(cluster(), "staging")
    kube.objects[(VOLUME_SNAPSHOTS, "staging", "db-backup-data-0")] = {
        "metadata": {"name": "db-backup-data-0"},
        "spec": {"source": {"persistentVolumeClaimName": "other"}},
    }
    with pytest.raises(
        Refused, match="volumesnapshot staging/db-backup-data-0 already exists and is not this restore's"
    ):
        restore(kube, args("--to-namespace", "staging"))


def test_a_missing_kubeconfig_is_a_clear_error_with_exit_code_1(capsys):
    assert main(["--kubeconfig", "/nonexistent/kubeconfig", "restore", "x"]) == 1
    assert capsys.readouterr().err.startswith("error: cannot load cluster credentials:")
    with pytest.raises(SystemExit) as usage:
        main(["restore"])
    assert usage.value.code == 2


class ListingKube(FakeKube):
    def request(self, method, path, query=None, body=None):
        plural = path.rstrip("/").split("/")[-1]
        namespaced = "/namespaces/" in path
        items = [
            o
            for (resource, namespace, _), o in self.objects.items()
            if resource.plural == plural and (not namespaced or f"/namespaces/{namespace}/" in path)
        ]
        return {"items": items}


def test_get_prints_a_table_and_yaml(capsys):
    from storkcore.snapshots import SCHEDULE_POLICIES, SNAPSHOT_SCHEDULES
    from storkctl.objects import get

    kube = ListingKube(cluster().objects)
    kube.objects[(SNAPSHOT_SCHEDULES, "prod", "nightly")] = {
        "metadata": {"name": "nightly", "namespace": "prod", "creationTimestamp": "2020-01-01T00:00:00Z"},
        "spec": {"schedulePolicyName": "daily"},
        "status": {
            "items": {
                "Daily": [
                    {"name": "nightly-daily-1", "creationTimestamp": "2020-01-02T00:00:00Z", "status": "Successful"}
                ]
            }
        },
    }
    kube.objects[(SCHEDULE_POLICIES, "", "daily")] = {
        "metadata": {"name": "daily"},
        "policy": {"daily": {"time": "1:00AM", "retain": 3}},
    }
    get(kube, build_parser().parse_args(["get", "schedules", "-n", "prod"]))
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["NAME", "POLICY", "SUSPEND", "LAST", "LAST-STATUS", "AGE"]
    assert row.split()[:5] == ["nightly", "daily", "false", "nightly-daily-1", "Successful"]
    get(kube, build_parser().parse_args(["get", "sp", "-o", "wide"]))
    assert "1:00AM retain 3" in capsys.readouterr().out
    get(kube, build_parser().parse_args(["get", "gvs", "db-backup", "-n", "prod", "-o", "yaml"]))
    assert "volumeSnapshotName: db-backup-data-0" in capsys.readouterr().out


def test_create_builds_upstream_shaped_objects_and_refuses_ambiguous_selection(capsys):
    from storkctl.objects import Refused, create

    kube = FakeKube({})
    create(
        kube,
        build_parser().parse_args(
            ["create", "schedule", "nightly", "-n", "prod", "--policy", "daily", "--pvc", "data", "--pre-rule", "lock"]
        ),
    )
    (schedule,) = kube.created
    assert schedule["spec"] == {
        "schedulePolicyName": "daily",
        "suspend": False,
        "reclaimPolicy": "Delete",
        "preExecRule": "lock",
        "template": {"spec": {"persistentVolumeClaimName": "data"}},
    }
    create(
        kube,
        build_parser().parse_args(["create", "groupsnapshot", "now", "-n", "prod", "--pvc-selector", "app=db,tier=x"]),
    )
    assert kube.created[-1]["spec"] == {"pvcSelector": {"matchLabels": {"app": "db", "tier": "x"}}}
    assert capsys.readouterr().out.splitlines() == [
        "volumesnapshotschedule/nightly created",
        "groupvolumesnapshot/now created",
    ]
    with pytest.raises(Refused, match="exactly one of --pvc NAME and --pvc-selector"):
        create(kube, build_parser().parse_args(["create", "groupsnapshot", "x", "--pvc", "a", "--pvc-selector", "a=b"]))


def test_explain_takes_the_installed_driver_and_score_mode_from_stork_config():
    from storkcore.kube import CONFIG_MAPS
    from storkctl.explain import installed_settings

    kube = FakeKube(
        {
            (CONFIG_MAPS, "stork", "stork-config"): {
                "data": {
                    "STORK_DRIVER": "csi",
                    "STORK_CSI_DRIVER_NAME": "a.csi,b.csi",
                    "STORK_SCORE_MODE": "normalized",
                }
            }
        }
    )
    args = build_parser().parse_args(["explain", "pod", "web-0"])
    installed_settings(kube, args, args.stork_namespace)
    assert (args.driver, args.csi_driver_name, args.score_mode) == ("csi", ["a.csi", "b.csi"], "normalized")
    from storkctl.objects import Refused

    linstor = FakeKube(
        {
            (CONFIG_MAPS, "stork", "stork-config"): {
                "data": {"STORK_DRIVER": "linstor", "LS_CONTROLLERS": "http://ls:3370"}
            }
        }
    )
    args = build_parser().parse_args(["explain", "pod", "web-0"])
    installed_settings(linstor, args, "stork")
    assert (args.driver, args.linstor_controllers) == ("linstor", "http://ls:3370")
    args = build_parser().parse_args(["explain", "pod", "web-0", "--linstor-controllers", "http://127.0.0.1:3370"])
    installed_settings(linstor, args, "stork")
    assert args.linstor_controllers == "http://127.0.0.1:3370"  # the command line wins

    with pytest.raises(Refused, match="no --driver given and no STORK_DRIVER in stork/stork-config"):
        installed_settings(FakeKube({}), build_parser().parse_args(["explain", "pod", "web-0"]), "stork")


def test_no_permission_is_a_clear_error_with_exit_code_1(monkeypatch, capsys):
    import storkctl.cli as cli

    class Forbidden(FakeKube):
        def get(self, resource, namespace, name):
            raise ApiError(403, 'groupvolumesnapshots "x" is forbidden: User "dev" cannot get resource')

    monkeypatch.setattr(cli, "load_api_client", lambda *a, **k: None)
    monkeypatch.setattr(cli, "Kube", lambda client: Forbidden({}))
    assert main(["restore", "x"]) == 1
    assert capsys.readouterr().err.startswith('error: no permission: groupvolumesnapshots "x" is forbidden')


@pytest.mark.parametrize("node_count", [5, 150])
def test_explain_says_why_a_pod_is_not_on_a_kept_replica_node(node_count, capsys):
    """The pod landed on n3 although n1 holds its replica and passes the filter: explain says
    that kube-scheduler did not offer n1, and above 100 nodes that it may not have sampled it."""
    from storkctl.explain import _report, print_report
    from tests.builders import longhorn_world, pod, topology_labels

    nodes = {f"n{i}": topology_labels(rack=str(i % 3)) for i in range(1, node_count + 1)}
    world = longhorn_world(nodes, {"vol1": ["n1"]})
    args = build_parser().parse_args(
        ["explain", "pod", "app", "-n", "default", "--driver", "longhorn", "--score-mode", "stork"]
    )
    report = _report(world.driver, pod("app", ["pvc-vol1"], node="n3"), args)
    assert not report["chosen_holds_replica"] and report["kept_replica_nodes"] == ["n1"]
    print_report(report, "table")
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "(n1), but kube-scheduler did not offer them" in last
    assert ("percentageOfNodesToScore" in last) == (node_count > 100)
    report = _report(world.driver, pod("app", ["pvc-vol1"], node="n1"), args)
    assert report["chosen_holds_replica"]
    print_report(report, "table")
    assert "did not offer" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("annotations", "line"),
    [
        (
            {"stork.libopenstorage.org/replica-nodes": "n1,n2"},
            "locality: held to its replica nodes n1, n2 at admission",
        ),
        (
            {"stork.libopenstorage.org/locality": "not held to replica nodes: the pod has topologySpreadConstraints"},
            "locality: not held to replica nodes: the pod has topologySpreadConstraints",
        ),
        ({}, "locality: not considered at admission"),
    ],
)
def test_explain_says_which_mechanism_kept_the_pod_next_to_its_data(annotations, line, capsys):
    from storkctl.explain import _report, print_report
    from tests.builders import longhorn_world, pod

    world = longhorn_world({f"n{i}": {} for i in range(1, 4)}, {"vol1": ["n1", "n2"]})
    args = build_parser().parse_args(["explain", "pod", "app", "--driver", "longhorn", "--score-mode", "stork"])
    report = _report(world.driver, pod("app", ["pvc-vol1"], node="n1", annotations=annotations), args)
    assert report["locality"]["held_to"] == (
        ["n1", "n2"] if annotations.get("stork.libopenstorage.org/replica-nodes") else []
    )
    print_report(report, "table")
    assert line in capsys.readouterr().out
