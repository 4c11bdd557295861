"""The mutating and validating webhooks (SPEC §3, §4) through Flask's test client."""

from __future__ import annotations

import base64
import json

import jsonpatch
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storkcore.drivers.longhorn import PROVISIONER as LONGHORN
from tests.builders import World, pod, pvc, storage_class
from tests.metrics import responses_counted
from tests.upstream_objects import UPSTREAM_GROUP, UPSTREAM_POLICY, UPSTREAM_RULE, UPSTREAM_SCHEDULE
from webhook.admission import AdmissionSettings
from webhook.app import create_app


def review(obj, operation="CREATE", namespace="default", dry_run=False, kind=("", "v1", "Pod"), uid="uid-1"):
    group, version, kind_name = kind
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": version, "kind": kind_name},
            "resource": {"group": group, "version": version, "resource": kind_name.lower() + "s"},
            "namespace": namespace,
            "operation": operation,
            "object": obj,
            "dryRun": dry_run,
        },
    }


@pytest.fixture
def world():
    w = World("longhorn")
    w.add(
        storage_class("longhorn", LONGHORN),
        storage_class("other", "other.example.com", default=True),
        pvc("data", storage_class_name="longhorn", volume="pv-data"),
        pvc("foreign", storage_class_name="other", volume="pv-foreign"),
        pvc("defaulted", storage_class_name=None),  # stays Pending: resolved through the default class
    )
    w.cluster.pvc("default", "defaulted")["spec"].pop("storageClassName")
    return w


class Webhook:
    def __init__(self, world, **kwargs):
        self.http = create_app(world.driver, AdmissionSettings(**kwargs)).test_client()

    def post(self, path, body):
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        resp = self.http.post(path, data=raw, content_type="application/json")
        return resp.status_code, orjson.loads(resp.data)

    def mutate(self, obj, **kwargs):
        status, answer = self.post("/mutate", review(obj, **kwargs))
        assert status == 200
        return answer


def scheduler_after(answer, obj):
    response = answer["response"]
    assert response["allowed"] is True
    if "patch" not in response:
        return obj.get("spec", {}).get("schedulerName")
    assert response["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(response["patch"]))
    assert patch == [{"op": "add", "path": "/spec/schedulerName", "value": patch[0]["value"]}]  # only that field
    return jsonpatch.apply_patch(obj, patch)["spec"]["schedulerName"]


def test_pod_with_driver_claim_goes_to_stork(world):
    the_pod = pod("app", ["data"])
    assert scheduler_after(Webhook(world).mutate(the_pod), the_pod) == "stork"


def test_response_echoes_review_and_uid(world):
    answer = Webhook(world).mutate(pod("app", ["data"]), uid="abc-123")
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == "abc-123"


def test_template_pod_uses_request_namespace(world):
    from_template = pod("", ["data"], namespace="")
    from_template["metadata"] = {"generateName": "web-5d9f-"}  # no name, no namespace
    assert scheduler_after(Webhook(world).mutate(from_template, namespace="default"), from_template) == "stork"
    elsewhere = Webhook(world).mutate(from_template, namespace="other-ns")  # the claim is not there
    assert scheduler_after(elsewhere, from_template) is None


def test_ephemeral_volume_of_driver_class_and_default_class(world):
    mine = pod("app", ephemeral={"scratch": "longhorn"})
    assert scheduler_after(Webhook(world).mutate(mine), mine) == "stork"
    theirs = pod("app", ephemeral={"scratch": "other"})
    assert scheduler_after(Webhook(world).mutate(theirs), theirs) is None
    world.add(storage_class("other", "other.example.com"), storage_class("lh-default", LONGHORN, default=True))
    defaulted = pod("app", ephemeral={"scratch": "x"})
    del defaulted["spec"]["volumes"][0]["ephemeral"]["volumeClaimTemplate"]["spec"]["storageClassName"]
    assert scheduler_after(Webhook(world).mutate(defaulted), defaulted) == "stork"


def test_claim_without_class_resolves_through_default_class(world):
    the_pod = pod("app", ["defaulted"])
    assert scheduler_after(Webhook(world).mutate(the_pod), the_pod) is None  # default class is not Longhorn
    world.add(storage_class("other", "other.example.com"), storage_class("lh-default", LONGHORN, default=True))
    assert scheduler_after(Webhook(world).mutate(the_pod), the_pod) == "stork"


def test_pod_without_driver_volumes_is_left_alone(world):
    for the_pod in (pod("plain"), pod("app", ["foreign"])):
        answer = Webhook(world).mutate(the_pod)
        assert "patch" not in answer["response"] and "warnings" not in answer["response"]


def test_missing_claim_is_not_ours_with_a_warning(world):
    answer = Webhook(world).mutate(pod("app", ["later"]))
    assert "patch" not in answer["response"]
    (warning,) = answer["response"]["warnings"]
    assert "PVC later not found" in warning and len(warning) < 120


def test_explicit_scheduler_is_kept_and_default_scheduler_is_replaced(world):
    custom = pod("app", ["data"], scheduler="my-scheduler")
    assert scheduler_after(Webhook(world).mutate(custom), custom) == "my-scheduler"
    default = pod("app", ["data"], scheduler="default-scheduler")
    assert scheduler_after(Webhook(world).mutate(default), default) == "stork"


@pytest.mark.parametrize(
    ("value", "opted_out"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("t", True),
        ("yes", True),
        ("false", False),
        ("0", False),
        ("maybe", False),
        ("", False),
    ],
)
def test_opt_out_annotation(world, value, opted_out):
    the_pod = pod("app", ["data"], annotations={"stork.libopenstorage.org/disable-admission-controller": value})
    assert (scheduler_after(Webhook(world).mutate(the_pod), the_pod) is None) is opted_out


def test_opt_out_key_and_scheduler_name_are_configurable(world):
    hook = Webhook(world, scheduler_name="stork-b", skip_annotation="example.com/skip")
    the_pod = pod("app", ["data"])
    assert scheduler_after(hook.mutate(the_pod), the_pod) == "stork-b"
    skipped = pod("app", ["data"], annotations={"example.com/skip": "true"})
    assert scheduler_after(hook.mutate(skipped), skipped) is None


def test_two_mutations_in_a_row_give_one_patch(world):
    hook = Webhook(world)
    the_pod = pod("app", ["data"])
    first = hook.mutate(the_pod)
    patched = jsonpatch.apply_patch(the_pod, json.loads(base64.b64decode(first["response"]["patch"])))
    second = hook.mutate(patched)
    assert "patch" not in second["response"]


def test_dry_run_is_answered_the_same(world):
    the_pod = pod("app", ["data"])
    assert Webhook(world).mutate(the_pod, dry_run=True)["response"] == Webhook(world).mutate(the_pod)["response"]


def test_only_create_is_mutated(world):
    answer = Webhook(world).mutate(pod("app", ["data"]), operation="UPDATE")
    assert answer["response"] == {"uid": "uid-1", "allowed": True}


class Unreachable:
    def get(self, *args, **kwargs):
        raise ConnectionError("refused")


def test_internal_trouble_allows_without_patch_and_warns(world):
    world.cluster.kube = Unreachable()  # claim not cached, API unreachable
    answer = Webhook(world).mutate(pod("app", ["not-cached"]))
    response = answer["response"]
    assert response["allowed"] is True and "patch" not in response
    assert "left on its scheduler" in response["warnings"][0] and len(response["warnings"][0]) < 120


def test_malformed_pod_in_a_valid_review_is_allowed(world):
    for obj in ({"spec": {"volumes": "x"}}, {"metadata": 5}, None, [1, 2]):
        answer = Webhook(world).mutate(obj)
        assert answer["response"]["allowed"] is True and "patch" not in answer["response"]


@pytest.mark.parametrize(
    "body",
    [b"nope", b"[]", b'{"kind": "Pod"}', b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}'],
)
@pytest.mark.parametrize("path", ["/mutate", "/validate"])
def test_non_reviews_get_400_json(world, path, body):
    status, answer = Webhook(world).post(path, body)
    assert status == 400 and answer["error"]


def rule(*items):
    return {
        "apiVersion": "stork.libopenstorage.org/v1alpha1",
        "kind": "Rule",
        "metadata": {"name": "r"},
        "rules": list(items),
    }


RULE_KIND = ("stork.libopenstorage.org", "v1alpha1", "Rule")


def validate(world, obj, operation="CREATE"):
    status, answer = Webhook(world).post("/validate", review(obj, operation=operation, kind=RULE_KIND))
    assert status == 200
    return answer["response"]


def test_valid_rule_is_allowed(world):
    good = rule(
        {
            "podSelector": {"app": "mysql"},
            "container": "db",
            "actions": [
                {"type": "command", "value": "mysql -e 'FLUSH TABLES WITH READ LOCK; ${WAIT_CMD}'", "background": True},
                {"type": "command", "value": "sync", "runInSinglePod": True},
            ],
        }
    )
    assert validate(world, good)["allowed"] is True
    assert validate(world, good, operation="UPDATE")["allowed"] is True


@pytest.mark.parametrize(
    ("item", "path"),
    [
        ({"podSelector": {}, "actions": [{"type": "command", "value": "x"}]}, "rules[1].podSelector"),
        ({"podSelector": {"a": "b"}, "actions": [{"type": "shell", "value": "x"}]}, "rules[1].actions[0].type"),
        ({"podSelector": {"a": "b"}, "actions": [{"type": "command", "value": " "}]}, "rules[1].actions[0].value"),
        (
            {"podSelector": {"a": "b"}, "actions": [{"type": "command", "value": "sleep", "background": True}]},
            "${WAIT_CMD}",
        ),
        ({"podSelector": {"a": "b"}, "actions": []}, "rules[1].actions"),
        (
            {"podSelector": {"a": "b"}, "actions": [{"type": "command", "value": "x", "background": "yes"}]},
            "rules[1].actions[0].background",
        ),
    ],
)
def test_invalid_rules_are_denied_naming_the_field(world, item, path):
    good = {"podSelector": {"app": "x"}, "actions": [{"type": "command", "value": "true"}]}
    response = validate(world, rule(good, item))
    assert response["allowed"] is False
    assert path in response["status"]["message"]  # the second item is the bad one


def test_rule_deletes_and_other_kinds_are_not_validated(world):
    assert validate(world, rule(), operation="DELETE")["allowed"] is True
    _, answer = Webhook(world).post("/validate", review(pod("x")))
    assert answer["response"]["allowed"] is True


def test_metrics_count_decisions(world):
    hook = Webhook(world)
    hook.mutate(pod("app", ["data"]))
    hook.mutate(pod("plain"))
    text = hook.http.get("/metrics").data.decode()
    assert 'stork_webhook_admissions_total{decision="mutated",webhook="mutate"} 1.0' in text
    assert 'stork_webhook_admissions_total{decision="not-ours",webhook="mutate"} 1.0' in text
    assert "stork_webhook_request_duration_seconds_bucket" in text


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
review_like = st.fixed_dictionaries(
    {"apiVersion": st.sampled_from(["admission.k8s.io/v1", "x"]), "kind": st.sampled_from(["AdmissionReview", "Pod"])},
    optional={
        "request": st.fixed_dictionaries(
            {"uid": st.text(min_size=1, max_size=5)},
            optional={
                "operation": st.sampled_from(["CREATE", "UPDATE", "DELETE"]),
                "namespace": json_values,
                "kind": st.fixed_dictionaries(
                    {
                        "group": st.sampled_from(["", "stork.libopenstorage.org"]),
                        "kind": st.sampled_from(["Pod", "Rule"]),
                    }
                ),
                "object": json_values
                | st.fixed_dictionaries(
                    {"spec": st.fixed_dictionaries({}, optional={"volumes": json_values}), "rules": json_values}
                ),
            },
        )
    },
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=review_like | json_values)
def test_arbitrary_json_never_gets_a_server_error(world, body):
    hook = Webhook(world)
    for path in ("/mutate", "/validate"):
        status, answer = hook.post(path, json.dumps(body).encode())
        assert status in (200, 400)
        if status == 200:
            assert answer["response"]["uid"] == body["request"]["uid"]
            if path == "/mutate":
                assert answer["response"]["allowed"] is True


def test_webhook_configuration_manifests_follow_the_safety_rules():
    from pathlib import Path

    import yaml

    docs = list(yaml.safe_load_all(Path("manifests/base/webhook-configurations.yaml").read_text()))
    assert {d["kind"] for d in docs} == {"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}
    for doc in docs:
        for hook in doc["webhooks"]:
            assert hook["failurePolicy"] == "Ignore" and hook["sideEffects"] == "None"
            assert hook["timeoutSeconds"] == 3 and hook["admissionReviewVersions"] == ["v1"]
            assert hook["matchPolicy"] == "Equivalent"
            excluded = {e["key"]: e for e in hook["namespaceSelector"]["matchExpressions"]}
            assert excluded["kubernetes.io/metadata.name"]["values"] == ["kube-system", "stork"]
            assert excluded["stork.libopenstorage.org/admission"] == {
                "key": "stork.libopenstorage.org/admission",
                "operator": "NotIn",
                "values": ["disabled"],
            }
    mutating = next(d for d in docs if d["kind"] == "MutatingWebhookConfiguration")
    assert mutating["webhooks"][0]["reinvocationPolicy"] == "IfNeeded"


GVS_KIND = ("stork.libopenstorage.org", "v1alpha1", "GroupVolumeSnapshot")


def validate_group(world, spec, namespace="default"):
    body = {
        "apiVersion": "stork.libopenstorage.org/v1alpha1",
        "kind": "GroupVolumeSnapshot",
        "metadata": {"name": "g", "namespace": namespace},
        "spec": spec,
    }
    status, answer = Webhook(world).post("/validate", review(body, namespace=namespace, kind=GVS_KIND))
    assert status == 200
    return answer["response"]


def test_a_well_formed_group_snapshot_is_allowed_even_before_its_rules_exist(world):
    spec = {
        "pvcSelector": {"matchLabels": {"app": "mysql"}, "matchExpressions": [{"key": "tier", "operator": "Exists"}]},
        "preExecRule": "mysql-lock",
        "postExecRule": "mysql-unlock",
        "maxRetries": 2,
    }
    assert validate_group(world, spec)["allowed"] is True


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "spec.pvcSelector: must be a label selector"),
        ({"pvcSelector": {}}, "spec.pvcSelector: must select something"),
        ({"pvcSelector": {"matchLabels": {"a": 1}}}, "spec.pvcSelector.matchLabels: must map label keys to string"),
        (
            {"pvcSelector": {"matchExpressions": [{"key": "a", "operator": "Is"}]}},
            "spec.pvcSelector.matchExpressions[0].operator: must be one of In, NotIn, Exists, DoesNotExist",
        ),
        (
            {"pvcSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
            "spec.pvcSelector.matchExpressions[0].values: must be a non-empty list for In",
        ),
        (
            {"pvcSelector": {"matchLabels": {"a": "b"}}, "preExecRule": "Not A Name"},
            "spec.preExecRule: must be the name",
        ),
        ({"pvcSelector": {"matchLabels": {"a": "b"}}, "maxRetries": -1}, "spec.maxRetries: must be a whole number"),
    ],
)
def test_malformed_group_snapshots_are_denied_naming_the_field(world, spec, message):
    response = validate_group(world, spec)
    assert response["allowed"] is False
    assert message in response["status"]["message"]


def test_a_post_rule_with_a_background_action_is_denied(world):
    from storkcore.snapshots import RULES

    held = rule(
        {"podSelector": {"app": "x"}, "actions": [{"type": "command", "value": "${WAIT_CMD}", "background": True}]}
    )
    held["metadata"] = {"name": "hold", "namespace": "default"}
    world.cluster.store(RULES).upsert(held)
    response = validate_group(world, {"pvcSelector": {"matchLabels": {"a": "b"}}, "postExecRule": "hold"})
    assert response["allowed"] is False
    assert "spec.postExecRule: Rule hold has a background action (rules[0].actions[0])" in response["status"]["message"]
    assert validate_group(world, {"pvcSelector": {"matchLabels": {"a": "b"}}, "preExecRule": "hold"})["allowed"] is True


def test_a_csi_snapshot_with_upstream_rule_annotations_is_admitted_with_a_warning(world):
    snap = {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshot",
        "metadata": {
            "name": "s",
            "namespace": "default",
            "annotations": {"stork.libopenstorage.org/pre-snapshot-rule": "lock"},
        },
        "spec": {"source": {"persistentVolumeClaimName": "data"}},
    }
    _, answer = Webhook(world).post("/validate", review(snap, kind=("snapshot.storage.k8s.io", "v1", "VolumeSnapshot")))
    response = answer["response"]
    assert response["allowed"] is True
    assert (
        "CSI cuts this snapshot at once" in response["warnings"][0] and "GroupVolumeSnapshot" in response["warnings"][0]
    )
    del snap["metadata"]["annotations"]
    _, answer = Webhook(world).post("/validate", review(snap, kind=("snapshot.storage.k8s.io", "v1", "VolumeSnapshot")))
    assert answer["response"]["allowed"] is True and "warnings" not in answer["response"]


def validate_kind(world, kind, body, namespace="default"):
    status, answer = Webhook(world).post(
        "/validate", review(body, namespace=namespace, kind=("stork.libopenstorage.org", "v1alpha1", kind))
    )
    assert status == 200
    return answer["response"]


def test_a_schedule_policy_of_every_type_is_allowed(world):
    policy = {
        "policy": {
            "interval": {"intervalMinutes": 30, "retain": 4},
            "daily": {"time": "10:14PM"},
            "weekly": {"day": "Sunday", "time": "1:00AM", "retain": 2},
            "monthly": {"date": 31, "time": "6:30AM"},
        }
    }
    assert validate_kind(world, "SchedulePolicy", policy, namespace="")["allowed"] is True


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({}, "policy: must have at least one of interval, daily, weekly, monthly"),
        ({"interval": {"intervalMinutes": 0}}, "policy.interval.intervalMinutes: must be 1 or more"),
        ({"daily": {"time": "22:14"}}, "policy.daily.time: must be a time like 10:14PM, got '22:14'"),
        ({"weekly": {"day": "Funday", "time": "1:00AM"}}, "policy.weekly.day: must be a weekday"),
        ({"monthly": {"date": 32, "time": "1:00AM"}}, "policy.monthly.date: must be a day of the month, 1-31"),
        ({"daily": {"time": "1:00AM", "retain": -1}}, "policy.daily.retain: must be 1 or more"),
    ],
)
def test_bad_schedule_policies_are_denied_naming_the_field(world, policy, message):
    response = validate_kind(world, "SchedulePolicy", {"policy": policy}, namespace="")
    assert response["allowed"] is False and message in response["status"]["message"]


def test_a_snapshot_schedule_needs_an_existing_policy_and_one_way_to_choose_its_pvcs(world):
    from storkcore.snapshots import SCHEDULE_POLICIES

    world.cluster.store(SCHEDULE_POLICIES).upsert(
        {"metadata": {"name": "nightly"}, "policy": {"daily": {"time": "1:00AM"}}}
    )
    good = {"spec": {"schedulePolicyName": "nightly", "template": {"spec": {"persistentVolumeClaimName": "data"}}}}
    assert validate_kind(world, "VolumeSnapshotSchedule", good)["allowed"] is True
    cases = [
        (
            {"schedulePolicyName": "weekly", "template": {"spec": {"persistentVolumeClaimName": "data"}}},
            "spec.schedulePolicyName: SchedulePolicy weekly does not exist",
        ),
        (
            {"schedulePolicyName": "nightly", "template": {"spec": {}}},
            "spec.template.spec: needs exactly one of persistentVolumeClaimName and pvcSelector",
        ),
        (
            {
                "schedulePolicyName": "nightly",
                "reclaimPolicy": "Keep",
                "template": {"spec": {"pvcSelector": {"matchLabels": {"a": "b"}}}},
            },
            "spec.reclaimPolicy: must be Delete or Retain",
        ),
    ]
    for spec, message in cases:
        response = validate_kind(world, "VolumeSnapshotSchedule", {"spec": spec})
        assert response["allowed"] is False and message in response["status"]["message"]


def test_every_response_is_counted_by_status_code_even_an_unhandled_error(world):
    app = create_app(world.driver, AdmissionSettings())

    @app.get("/boom")
    def boom():
        raise RuntimeError("a bug")

    client = app.test_client()
    client.post("/mutate", data=b"not json", content_type="application/json")
    client.get("/boom")
    client.get("/livez")
    counted = responses_counted(client)
    assert counted == {("/mutate", "400"): 1.0, ("/boom", "500"): 1.0, ("/livez", "200"): 1.0}


# -- objects as upstream Stork's Go client writes them: every field, unset strings as "" -------


@pytest.mark.parametrize(
    ("kind", "body", "warned"),
    [
        ("Rule", UPSTREAM_RULE, []),
        ("GroupVolumeSnapshot", UPSTREAM_GROUP, []),
        (
            "SchedulePolicy",
            UPSTREAM_POLICY,
            ["policy.daily.options: kept, has no effect", "policy.daily.forceFullSnapshotDay: kept, has no effect"],
        ),
        ("VolumeSnapshotSchedule", UPSTREAM_SCHEDULE, []),
    ],
)
def test_upstream_objects_with_empty_strings_are_allowed_and_told_what_has_no_effect(world, kind, body, warned):
    from storkcore.snapshots import SCHEDULE_POLICIES

    world.cluster.store(SCHEDULE_POLICIES).upsert({"metadata": {"name": "hourly"}, **UPSTREAM_POLICY})
    namespace = "" if kind == "SchedulePolicy" else "default"
    response = validate_kind(world, kind, body, namespace=namespace)
    assert response["allowed"] is True, response
    warnings = response.get("warnings", [])
    assert len(warnings) == len(warned)
    for expected, got in zip(warned, warnings, strict=True):
        assert got.startswith(expected)


@pytest.mark.parametrize(
    ("options", "allowed", "said"),
    [
        ({"portworx/snapshot-type": "local"}, True, "spec.options.portworx/snapshot-type: local is taken as a CSI"),
        ({"portworx/snapshot-type": "cloud"}, False, "spec.options.portworx/snapshot-type: cloud snapshots"),
        ({"portworx/snapshot-type": "foo"}, False, "spec.options.portworx/snapshot-type: must be local or cloud"),
        ({"portworx/cloud-cred-id": "c1"}, True, "spec.options.portworx/cloud-cred-id: kept, has no effect"),
    ],
)
def test_group_snapshot_options_are_honoured_refused_or_warned_never_silently_ignored(world, options, allowed, said):
    body = {"spec": {"pvcSelector": {"matchLabels": {"app": "db"}}, "options": options}}
    response = validate_kind(world, "GroupVolumeSnapshot", body)
    assert response["allowed"] is allowed
    told = response["warnings"][0] if allowed else response["status"]["message"]
    assert said in told


def test_schedule_template_options_are_checked_like_a_group_snapshots(world):
    body = {
        "spec": {
            "schedulePolicyName": "hourly",
            "template": {"spec": {"persistentVolumeClaimName": "data", "options": {"portworx/snapshot-type": "cloud"}}},
        }
    }
    from storkcore.snapshots import SCHEDULE_POLICIES

    world.cluster.store(SCHEDULE_POLICIES).upsert({"metadata": {"name": "hourly"}, **UPSTREAM_POLICY})
    response = validate_kind(world, "VolumeSnapshotSchedule", body)
    assert response["allowed"] is False
    assert "spec.template.spec.options.portworx/snapshot-type: cloud snapshots" in response["status"]["message"]


@pytest.mark.parametrize(
    ("targets", "allowed"),
    [(["staging", "qa-1"], True), (None, True), ([], True), (["Not_A_Namespace"], False), ("qa", False)],
)
def test_restore_namespaces_must_name_namespaces(world, targets, allowed):
    body = {"spec": {"pvcSelector": {"matchLabels": {"app": "db"}}, "restoreNamespaces": targets}}
    response = validate_kind(world, "GroupVolumeSnapshot", body)
    assert response["allowed"] is allowed
    assert "warnings" not in response or not response["warnings"]
    if not allowed:
        assert "spec.restoreNamespaces: must be a list of namespace names" in response["status"]["message"]
