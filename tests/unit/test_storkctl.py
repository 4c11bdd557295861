"""`storkctl restore`: PVCs from a Successful GroupVolumeSnapshot, and clear errors."""

from __future__ import annotations

import pytest

from storkcore.kube import PVCS, ApiError
from storkcore.snapshots import GROUP_SNAPSHOTS, VOLUME_SNAPSHOTS
from storkctl.cli import build_parser, main, restore


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
    snapshot = {"metadata": {"name": "db-backup-data-0"}, "status": {"restoreSize": "5Gi"}}
    return FakeKube(
        {
            (GROUP_SNAPSHOTS, "prod", "db-backup"): group,
            (PVCS, "prod", "data"): source,
            (VOLUME_SNAPSHOTS, "prod", "db-backup-data-0"): snapshot,
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
    from storkctl.cli import Refused

    with pytest.raises(Refused, match=message.replace("(", r"\(").replace(")", r"\)")):
        restore(kube, args(*extra))


def test_a_missing_kubeconfig_is_a_clear_error_with_exit_code_1(capsys):
    assert main(["--kubeconfig", "/nonexistent/kubeconfig", "restore", "x"]) == 1
    assert capsys.readouterr().err.startswith("error: cannot load cluster credentials:")
    with pytest.raises(SystemExit) as usage:
        main(["restore"])
    assert usage.value.code == 2
