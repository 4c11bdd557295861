"""The local control plane accepts what a released Kubernetes 1.20 accepts.

Every end-to-end result rests on the locally built apiserver behaving like a released one. Its
build once refused "" in a custom resource's string field (Go 1.19 under a library written for
Go 1.15; scripts/build-k8s.sh patches it). These tests keep that from coming back, and show that
objects upstream Stork's Go client wrote are taken and stored as sent.
"""

from __future__ import annotations

import pytest

from localcluster.simulate import CRDS, _wait_for_crd
from storkcore.kube import Resource
from storkcore.snapshots import GROUP_SNAPSHOTS, RULES, SCHEDULE_POLICIES, SNAPSHOT_SCHEDULES
from tests.upstream_objects import upstream_object

pytestmark = pytest.mark.e2e

GROUP = "e2e.stork-py.test"
SAMPLES = Resource(GROUP, "v1", "samples")
# Each JSON type's zero value, and a non-zero one, in a field of that type.
TYPES = {"string": ("", "x"), "integer": (0, 7), "number": (0.0, 1.5), "boolean": (False, True)}
ZERO_SHAPES = {"list": ({"type": "array", "items": {"type": "string"}}, []), "map": ({"type": "object"}, {})}


@pytest.fixture(scope="module")
def samples(kube):
    fields = {name: {"type": name} for name in TYPES} | {name: schema for name, (schema, _) in ZERO_SHAPES.items()}
    fields["nullable"] = {"type": "string", "nullable": True}
    kube.create(
        CRDS,
        "",
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"samples.{GROUP}"},
            "spec": {
                "group": GROUP,
                "scope": "Namespaced",
                "names": {"kind": "Sample", "plural": "samples", "singular": "sample", "listKind": "SampleList"},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "properties": {"spec": {"type": "object", "properties": fields}},
                            }
                        },
                    }
                ],
            },
        },
    )
    _wait_for_crd(kube, SAMPLES)
    return kube


def _sample(kube, name: str, spec: dict) -> dict:
    body = {"apiVersion": f"{GROUP}/v1", "kind": "Sample", "metadata": {"name": name}, "spec": spec}
    kube.create(SAMPLES, "default", body)
    return kube.get(SAMPLES, "default", name)["spec"]


@pytest.mark.parametrize("kind", sorted(TYPES))
def test_zero_and_nonzero_values_of_every_type_are_accepted_and_read_back(samples, kind):
    zero, other = TYPES[kind]
    assert _sample(samples, f"zero-{kind}", {kind: zero}) == {kind: zero}
    assert _sample(samples, f"nonzero-{kind}", {kind: other}) == {kind: other}


def test_empty_lists_and_maps_and_a_nullable_null_are_kept(samples):
    spec = {name: value for name, (_, value) in ZERO_SHAPES.items()} | {"nullable": None}
    assert _sample(samples, "empty-shapes", spec) == spec


def test_a_wrong_type_is_still_refused(samples):
    from storkcore.kube import ApiError

    with pytest.raises(ApiError) as refused:
        _sample(samples, "wrong", {"string": 5})
    assert refused.value.status == 422 and "spec.string" in str(refused.value.body)


KINDS = [
    ("Rule", RULES, "default"),
    ("GroupVolumeSnapshot", GROUP_SNAPSHOTS, "default"),
    ("SchedulePolicy", SCHEDULE_POLICIES, ""),
    ("VolumeSnapshotSchedule", SNAPSHOT_SCHEDULES, "default"),
]


def _without_nulls(value):
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


@pytest.mark.parametrize(("kind", "resource", "namespace"), KINDS, ids=[k for k, _, _ in KINDS])
def test_objects_upstream_wrote_are_accepted_and_stored_as_sent(cluster, kube, kind, resource, namespace):
    name = "hourly" if kind == "SchedulePolicy" else f"upstream-{kind.lower()}"
    sent = upstream_object(kind, name, namespace)
    kube.create(resource, namespace, sent)
    stored = kube.get(resource, namespace, name)
    if kind not in ("Rule", "SchedulePolicy"):  # nothing for a later test's controller to act on
        kube.delete(resource, namespace, name)
    for part in ("rules", "policy", "spec"):
        if part in sent:
            # "" and 0 stay; a null is dropped by the apiserver as a released 1.20 drops it for
            # a field that is not nullable (it then reads as unset, which is what null meant).
            assert stored[part] == _without_nulls(sent[part]), part
