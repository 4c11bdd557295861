"""The extender's wire protocol: modes, key case, malformed bodies, arbitrary input."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.builders import longhorn_world, pod, topology_labels
from tests.metrics import responses_counted
from tests.unit.extender_client import ExtenderClient

NODES = ["n1", "n2", "n3"]


@pytest.fixture(scope="module")
def client():
    world = longhorn_world({n: topology_labels(rack=n) for n in NODES}, {"vol1": ["n1"]})
    return ExtenderClient(world)


def test_keys_are_read_case_insensitively(client):
    the_pod = pod("app", ["pvc-vol1"])
    status, body = client.post("filter", {"pod": the_pod, "nodenames": NODES})
    assert status == 200 and body["NodeNames"] == NODES and body["Nodes"] is None
    status, scores = client.post("PRIORITIZE".lower(), {"POD": the_pod, "NODENAMES": NODES})
    assert status == 200 and [s["Score"] for s in scores] == [100, 5, 5]


def test_nodes_mode_answers_with_full_nodes(client):
    body = client.filter(pod("app", ["pvc-vol1"]), NODES, mode="nodes")
    assert body["NodeNames"] is None
    assert [n["metadata"]["name"] for n in body["Nodes"]["items"]] == NODES
    assert body["Nodes"]["items"][0]["kind"] == "Node"  # the objects, unchanged


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b"not json", "not JSON"),
        (b"[]", "JSON object"),
        (b"{}", "Pod is missing"),
        (b'{"Pod": {}, "Nodes": null, "NodeNames": null}', "neither Nodes nor NodeNames"),
        (b'{"Pod": {"spec": {"volumes": 3}}, "NodeNames": []}', "Pod.spec.volumes must be a list"),
        (b'{"Pod": {}, "NodeNames": [1, 2]}', "NodeNames must be a list of strings"),
        (b'{"Pod": {}, "Nodes": {"items": [{"metadata": {}}]}}', "Nodes.items[0] has no metadata.name"),
        (b'{"Pod": {"metadata": {"annotations": "x"}}, "NodeNames": []}', "Pod.metadata.annotations"),
    ],
)
@pytest.mark.parametrize("verb", ["filter", "prioritize"])
def test_malformed_bodies_get_400_with_json_error(client, verb, body, complaint):
    status, answer = client.post(verb, body)
    assert status == 400
    assert complaint in answer["error"]


def test_health_and_metrics_endpoints(client):
    assert client.http.get("/livez").status_code == 200
    assert client.http.get("/readyz").status_code == 200  # in-memory state is always synced
    client.filter(pod("app", ["pvc-vol1"]), NODES)
    text = client.http.get("/metrics").data.decode()
    assert 'stork_extender_requests_total{code="200",mode="names",verb="filter"}' in text
    assert "stork_extender_request_duration_seconds_bucket" in text
    for gauge in ("hyperconverged", "semi_hyperconverged", "non_hyperconverged"):
        assert f"stork_{gauge}_pods_total" in text


def call_wsgi(app, method: str, path: str, body: bytes, extra: dict[str, Any]) -> tuple[str, dict, bytes]:
    """One request straight through the WSGI callable, with `extra` environ keys as a server sets them."""
    started: dict = {}
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "https",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        **extra,
    }
    answer = b"".join(app(environ, lambda status, hdrs, exc=None: started.update(status=status, headers=dict(hdrs))))
    return started["status"], started["headers"], answer


def test_verbs_answer_like_any_route_of_the_app():
    client = ExtenderClient(longhorn_world({n: {} for n in NODES}, {"vol1": ["n1"]}))
    answer = client.http.post("/prioritize", data=json.dumps({"Pod": pod("app", ["pvc-vol1"]), "NodeNames": NODES}))
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    assert answer.headers["Content-Length"] == str(len(answer.data))
    assert answer.headers["Server-Timing"].startswith("app;dur=")
    wrong_method = client.http.get("/filter")
    assert wrong_method.status_code == 405 and wrong_method.headers["Allow"] == "POST"
    assert wrong_method.json == {"error": "method not allowed"}
    assert client.http.post("/filter", data=b"{").status_code == 400
    assert client.http.post("/nosuch").json == {"error": "not found"}  # other paths: Flask, as before
    counted = responses_counted(client.http)
    assert counted[("/prioritize", "200")] == 1 and counted[("/filter", "405")] == 1
    assert counted[("/filter", "400")] == 1 and counted[("other", "404")] == 1


def test_a_body_without_length_is_read_when_the_server_has_ended_it(client):
    body = json.dumps({"Pod": pod("app", ["pvc-vol1"]), "NodeNames": NODES}).encode()
    # A chunked request: servers pass no CONTENT_LENGTH and say the stream ends with the body.
    status, _, answer = call_wsgi(client.app, "POST", "/filter", body, {"wsgi.input_terminated": True})
    assert status == "200 OK" and json.loads(answer)["NodeNames"] == NODES
    # A server that cannot say where the body ends: nothing is read, and the answer says what is wrong.
    status, _, answer = call_wsgi(client.app, "POST", "/filter", body, {})
    assert status.startswith("400 ") and "not JSON" in json.loads(answer)["error"]


def test_a_content_length_that_is_not_a_number_gets_400(client):
    status, headers, answer = call_wsgi(client.app, "POST", "/prioritize", b"{}", {"CONTENT_LENGTH": "ten"})
    assert status.startswith("400 ") and headers["Content-Type"] == "application/json"
    assert json.loads(answer) == {"error": "Content-Length is not a number"}


def test_placement_gauges_count_running_pods_by_locality():
    world = longhorn_world({n: {} for n in NODES}, {"vol1": ["n1"], "vol2": ["n2"]})
    world.add(
        pod("local", ["pvc-vol1"], node="n1", phase="Running"),
        pod("half", ["pvc-vol1", "pvc-vol2"], node="n1", phase="Running"),
        pod("far", ["pvc-vol1"], node="n3", phase="Running"),
        pod("waiting", ["pvc-vol1"]),
    )
    text = ExtenderClient(world).http.get("/metrics").data.decode()
    assert "stork_hyperconverged_pods_total 1.0" in text
    assert "stork_semi_hyperconverged_pods_total 1.0" in text
    assert "stork_non_hyperconverged_pods_total 1.0" in text


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
pod_like = st.fixed_dictionaries(
    {},
    optional={
        "metadata": st.dictionaries(
            st.sampled_from(["name", "namespace", "annotations", "uid"]), json_values, max_size=3
        ),
        "spec": st.fixed_dictionaries(
            {},
            optional={
                "volumes": st.lists(
                    st.dictionaries(
                        st.sampled_from(["name", "persistentVolumeClaim", "ephemeral"]),
                        json_values | st.fixed_dictionaries({"claimName": st.sampled_from(["pvc-vol1", "x"])}),
                    ),
                    max_size=3,
                )
                | json_values
            },
        ),
    },
)
args_like = st.dictionaries(
    st.sampled_from(["Pod", "pod", "Nodes", "NodeNames", "nodenames", "other"]),
    pod_like | json_values | st.lists(st.sampled_from([*NODES, "ghost"]), max_size=4),
    max_size=4,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=args_like | json_values)
def test_arbitrary_json_never_gets_a_server_error(client, body):
    for verb in ("filter", "prioritize"):
        status, answer = client.post(verb, json.dumps(body).encode())
        assert status in (200, 400)
        if status == 400:
            assert isinstance(answer["error"], str) and answer["error"]
        elif verb == "filter":
            assert set(answer) == {"Nodes", "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes", "Error"}
        else:
            assert all(set(entry) == {"Host", "Score"} for entry in answer)
    metrics = client.http.get("/metrics").data.decode()
    assert "stork_extender_internal_errors_total" not in metrics or all(
        line.endswith(" 0.0")
        for line in metrics.splitlines()
        if line.startswith("stork_extender_internal_errors_total")
    )


@settings(max_examples=200)
@given(
    names=st.lists(st.text(min_size=1, max_size=20), max_size=30),
    data=st.data(),
)
def test_prioritize_answers_built_from_encoded_pieces_equal_the_plain_encoding(names, data):
    """The fast encoder gives the same bytes for any node name (quotes, escapes, unicode) and any
    score, including scores outside its table (negative, very large)."""
    from extender.protocol import encoded_priority_list, priority_list

    scores = data.draw(st.lists(st.integers(-10, 10_000), min_size=len(names), max_size=len(names)))
    encoded = encoded_priority_list(names, scores)
    assert encoded == priority_list(names, scores)
    assert json.loads(encoded) == [{"Host": n, "Score": s} for n, s in zip(names, scores, strict=True)]
