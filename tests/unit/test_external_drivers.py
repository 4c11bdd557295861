"""`pxd` and `linstor`: what each reads from its storage API, and that requests never wait on it.

The storage systems are the SIMULATED servers of localcluster/ over real HTTP;
the Kubernetes side is in memory (tests/builders.py).
"""

from __future__ import annotations

import time

import linstor
import pytest
import requests

from localcluster.simulated_linstor import SimulatedLinstor, api_error
from localcluster.simulated_portworx import SimulatedPortworx
from storkcore.drivers.linstor import controller_urls, is_replica, resource_name
from storkcore.drivers.pxd import px_node_status, px_volume_facts
from storkcore.kube import Resource
from storkcore.model import DriverError, NodeStatus
from tests.builders import World, k8s_node, meta, pvc, storage_class
from tests.drivers import LinstorBackend, PortworxBackend
from tests.tls import server_context, write_pki
from tests.unit.extender_client import ExtenderClient
from tests.unit.test_scoring import NODES, claims_pod, layout

SECRET = "a-shared-secret-of-at-least-32-bytes!"


@pytest.fixture
def px():
    server = SimulatedPortworx().start()
    yield server
    server.stop()


@pytest.fixture
def ls():
    server = SimulatedLinstor().start()
    yield server
    server.stop()


def px_world(px: SimulatedPortworx, **options) -> World:
    world = World("pxd", px_endpoint=px.url, **options)
    world.add(storage_class("px", "pxd.portworx.com"))
    return world


def px_pv(name: str, volume_id: str | None = None, csi: bool = False) -> dict:
    spec = (
        {"csi": {"driver": "pxd.portworx.com", "volumeHandle": volume_id or name}}
        if csi
        else {"portworxVolume": {"volumeID": volume_id or name}}
    )
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": meta(name), "spec": spec}


# -- pxd: what it reads ---------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (2, NodeStatus.ONLINE),
        ("STATUS_OK", NodeStatus.ONLINE),
        (0, NodeStatus.ONLINE),
        ("STATUS_STORAGE_DOWN", NodeStatus.STORAGE_DOWN),
        (8, NodeStatus.STORAGE_DOWN),
        (14, NodeStatus.STORAGE_DOWN),  # STATUS_POOLMAINTENANCE
        (9, NodeStatus.DEGRADED),
        ("STATUS_STORAGE_REBALANCE", NodeStatus.DEGRADED),
        (12, NodeStatus.DEGRADED),
        (3, NodeStatus.OFFLINE),
        ("STATUS_MAINTENANCE", NodeStatus.OFFLINE),
        ("STATUS_SOMETHING_NEW", NodeStatus.OFFLINE),
        (None, NodeStatus.OFFLINE),
    ],
)
def test_px_node_status_from_number_or_name(raw, status):
    assert px_node_status(raw) == status


@pytest.mark.parametrize("as_name", [False, True])
def test_px_nodes_read_from_enumerate_with_either_status_encoding(as_name):
    server = SimulatedPortworx(status_as_name=as_name).start()
    try:
        server.add_node(
            "id-1", scheduler_name="n1", hostname="n1.lab", ip="10.0.0.1", labels={"topology.kubernetes.io/zone": "a"}
        )
        server.add_node("id-2", hostname="n2", ip="10.0.0.2", status="STATUS_STORAGE_DOWN")
        world = px_world(server)
        world.driver.refresh_now()
        nodes = {n.storage_id: n for n in world.driver.nodes()}
        assert nodes["id-1"].scheduler_id == "n1" and nodes["id-1"].hostname == "n1.lab"
        assert nodes["id-1"].ips == ("10.0.0.1",) and nodes["id-1"].topology.zone == "a"
        assert nodes["id-2"].status == NodeStatus.STORAGE_DOWN
        assert world.driver.node("id-2").status == NodeStatus.STORAGE_DOWN  # /v1/cluster/inspect
        assert world.driver.node("id-unknown") is None
    finally:
        server.stop()


def test_px_volume_facts_labels_windows_and_sharedv4_services():
    server = SimulatedPortworx()
    server.add_volume("v1", ["a", "b"], labels={"app": "db", "tier": "x"}, spec_labels={"tier": "y"})
    server.add_volume("win", ["a"], labels={"winshare": "true"})
    server.add_volume("svc", ["a"], sharedv4=True, service_type="CLUSTERIP")
    server.add_volume("unspecified", ["a"], sharedv4=True, service_type="UNSPECIFIED")
    server.add_volume("plain-v4", ["a"], sharedv4=True)
    server.add_volume("v4-none", ["a"], sharedv4=True, service_type="NONE")
    server.server.stop()
    facts = {v: px_volume_facts(body) for v, body in server.volumes.items()}
    assert facts["v1"].data_nodes == ("a", "b")
    assert facts["v1"].labels == {"app": "db", "tier": "y"}  # spec labels win over locator labels
    assert facts["win"].windows and not facts["v1"].windows
    assert facts["svc"].needs_anti_hyperconvergence and facts["unspecified"].needs_anti_hyperconvergence
    assert not facts["plain-v4"].needs_anti_hyperconvergence and not facts["v4-none"].needs_anti_hyperconvergence


def test_px_volume_by_id_from_in_tree_or_csi_pv_then_by_pv_name(px):
    px.add_node("id-1", scheduler_name="n1")
    px.add_volume("1111", ["id-1"])
    px.add_volume("2222", ["id-1"], name="pv-by-name")
    world = px_world(px)
    world.add(px_pv("pv-a", "1111"), px_pv("pv-b", "1111", csi=True), px_pv("pv-by-name", "not-an-id"))
    for claim, volume in (("a", "pv-a"), ("b", "pv-b"), ("c", "pv-by-name")):
        world.add(pvc(claim, storage_class_name="px", volume=volume))
    assert world.driver.volume(world.cluster.pvc("default", "a")).data_nodes == ("id-1",)
    assert world.driver.volume(world.cluster.pvc("default", "b")).id == "1111"
    by_name = world.driver.volume(world.cluster.pvc("default", "c"))
    assert by_name.id == "2222" and by_name.data_nodes == ("id-1",)
    assert px.server.count("GET /v1/osd-volumes") == 3  # a, c by id (b was cached), c by name


def test_px_owns_its_three_provisioners():
    world = World("pxd", px_endpoint="http://127.0.0.1:1")
    for name in ("kubernetes.io/portworx-volume", "pxd.portworx.com", "com.openstorage.pxd"):
        assert world.driver.owns_class(storage_class("c", name))
    assert not world.driver.owns_class(storage_class("c", "driver.longhorn.io"))


def test_px_sends_a_jwt_the_api_accepts_and_a_wrong_secret_is_refused(px):
    px.add_node("id-1", scheduler_name="n1")
    px.require_auth("stork.openstorage.io", SECRET)
    world = px_world(px, px_shared_secret=SECRET)
    world.driver.refresh_now()
    assert [n.storage_id for n in world.driver.nodes()] == ["id-1"]

    unauthenticated = requests.get(px.url + "/v1/cluster/enumerate", timeout=5)
    assert (unauthenticated.status_code, unauthenticated.text) == (401, "Access denied token is empty")
    wrong = px_world(px, px_shared_secret="another-secret-that-is-long-enough-too")
    with pytest.raises(DriverError, match="HTTP 403: Access denied, Signature verification failed"):
        wrong.driver.node("id-1")
    other_issuer = px_world(px, px_shared_secret=SECRET, px_jwt_issuer="someone.else")
    with pytest.raises(DriverError, match=r"HTTP 401: Access denied, no authenticator for issuer someone\.else"):
        other_issuer.driver.node("id-1")


def test_px_over_tls_with_a_ca_file(tmp_path):
    files = write_pki(tmp_path)
    server = SimulatedPortworx(tls=server_context(files, require_client_cert=False)).start()
    try:
        server.add_node("id-1", scheduler_name="n1")
        world = World("pxd", px_endpoint=server.url, px_ca_file=str(files.ca))
        world.driver.refresh_now()
        assert [n.storage_id for n in world.driver.nodes()] == ["id-1"]
        untrusted = World("pxd", px_endpoint=server.url)
        with pytest.raises(DriverError, match="unreachable"):
            untrusted.driver.node("id-1")
    finally:
        server.stop()


def test_px_endpoint_from_flag_then_environment_then_service(monkeypatch):
    assert World("pxd", px_endpoint="https://px.example:9021").driver.api.base_url == "https://px.example:9021"
    monkeypatch.setenv("PX_ENDPOINT", "px-api.example")
    monkeypatch.setenv("PX_API_PORT", "9021")
    assert World("pxd").driver.api.base_url == "http://px-api.example:9021"
    monkeypatch.delenv("PX_ENDPOINT")
    world = World("pxd")
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta("portworx-service", "kube-system"),
        "spec": {
            "clusterIP": "10.96.0.50",
            "ports": [{"name": "px-api", "port": 9001}, {"name": "px-sdk", "port": 9020}],
        },
    }
    world.cluster.store(Resource("", "v1", "services", "kube-system")).upsert(service)
    assert world.driver.api.base_url == "http://10.96.0.50:9001"
    with pytest.raises(DriverError, match="no Portworx endpoint"):
        World("pxd").driver.node("x")


# -- linstor: what it reads -------------------------------------------------------


def test_linstor_replica_rule(ls):
    ls.add_node("up")
    ls.add_node("down", online=False)
    ls.add_resource("r", "up")  # diskful, UpToDate: a replica
    ls.add_resource("r", "down")  # diskful on a satellite that is not connected: a replica on an Offline node
    ls.add_resource("r", "client", kind="diskless")
    ls.add_resource("r", "witness", kind="tiebreaker")
    ls.add_resource("r", "syncing", disk_state="Inconsistent")
    ls.add_resource("r", "leaving", flags=["DELETE"])
    ls.add_resource("r", "evicted", flags=["EVICTED"])
    ls.add_resource("r", "inactive", flags=["INACTIVE"])
    for name in ("client", "witness", "syncing", "leaving", "evicted", "inactive"):
        ls.add_node(name)
    entries = requests.get(ls.url + "/v1/view/resources", params={"resources": "r"}, timeout=5).json()
    replicas = sorted(e["node_name"] for e in entries if is_replica(e))
    assert replicas == ["down", "up"]
    assert not is_replica({"name": "r", "node_name": "x", "flags": [], "volumes": [], "state": {}})  # no volumes
    no_drbd = {"name": "r", "node_name": "x", "flags": [], "layer_object": {"type": "STORAGE"}, "state": {},
               "volumes": [{"volume_number": 0, "state": {"disk_state": "Diskless"}}]}  # fmt: skip
    assert is_replica(no_drbd)  # DRBD states apply only where there is a DRBD layer


def test_linstor_filter_says_no_replica_is_online_when_its_satellites_are_down():
    backend = LinstorBackend()
    try:
        world = backend.world(layout(["1", "2", "1", "2", "3"]), {"vol1": ["n1", "n2"]}, offline=["n1", "n2"])
        body = ExtenderClient(world).filter(claims_pod("vol1"), NODES)
        assert body["NodeNames"] == []
        assert (
            body["FailedAndUnresolvableNodes"]["n3"]
            == "no replica of volume vol1 (PVC default/pvc-vol1) is on an Online node"
        )
    finally:
        backend.close()


def test_linstor_volume_handle_and_controllers():
    assert resource_name("pvc-1234/0") == "pvc-1234" and resource_name("pvc-1234") == "pvc-1234"
    assert controller_urls("linstor://a, linstor+ssl://b,c:4000,https://d") == [
        "http://a:3370",
        "https://b:3371",
        "http://c:4000",
        "https://d:3371",
    ]


def test_linstor_fails_over_to_the_next_controller(ls):
    ls.add_node("n1")
    world = World("linstor", linstor_controllers=f"http://127.0.0.1:1,{ls.url}")
    world.driver.refresh_now()
    assert [n.storage_id for n in world.driver.nodes()] == ["n1"]
    world.driver.refresh_now()
    calls = world.driver.api_calls()
    assert calls[("nodes", "unreachable")] == 1 and calls[("nodes", "ok")] == 2  # the answering one is asked first


def test_linstor_over_https_with_client_certificates(tmp_path):
    files = write_pki(tmp_path)
    server = SimulatedLinstor(tls=server_context(files, require_client_cert=True)).start()
    try:
        server.add_node("n1")
        world = World(
            "linstor",
            linstor_controllers=server.url,
            linstor_ca_file=str(files.ca),
            linstor_client_cert=str(files.client_cert),
            linstor_client_key=str(files.client_key),
        )
        world.driver.refresh_now()
        assert [n.storage_id for n in world.driver.nodes()] == ["n1"]
        without_cert = World("linstor", linstor_controllers=server.url, linstor_ca_file=str(files.ca))
        with pytest.raises(DriverError):
            without_cert.driver.node("n1")
    finally:
        server.stop()


def test_linstor_client_certificates_from_linstor_csi_environment(tmp_path, monkeypatch):
    files = write_pki(tmp_path)
    server = SimulatedLinstor(tls=server_context(files, require_client_cert=True)).start()
    try:
        server.add_node("n1")
        monkeypatch.setenv("LS_CONTROLLERS", server.url)
        monkeypatch.setenv("LS_ROOT_CA", files.ca.read_text())  # PEM text, as linstor-csi passes them
        monkeypatch.setenv("LS_USER_CERTIFICATE", files.client_cert.read_text())
        monkeypatch.setenv("LS_USER_KEY", files.client_key.read_text())
        world = World("linstor")
        assert world.driver.node("n1").status == NodeStatus.ONLINE
    finally:
        server.stop()


def test_simulated_linstor_speaks_what_linbits_client_reads(ls):
    """python-linstor, LINBIT's own client, reads the simulated controller's answers."""
    ls.add_node("n1", ip="10.0.0.1", k8s_hostname="node-1", labels={"topology.kubernetes.io/zone": "a"})
    ls.add_node("n2", ip="10.0.0.2", online=False)
    ls.add_resource("pvc-1", "n1")
    ls.add_resource("pvc-1", "n2")
    ls.add_resource("pvc-1", "n3", kind="tiebreaker")
    with linstor.Linstor(ls.url.replace("http://", "linstor://")) as client:
        nodes = {n.name: n for n in client.node_list()[0].nodes}
        assert nodes["n1"].connection_status == "ONLINE" and nodes["n2"].connection_status == "OFFLINE"
        assert [i.address for i in nodes["n1"].net_interfaces] == ["10.0.0.1"]
        assert nodes["n1"].props["Aux/topology/kubernetes.io/hostname"] == "node-1"
        answer = client.resource_list(filter_by_resources=["pvc-1"])[0]
        resources = {r.node_name: r for r in answer.resources}
        assert set(resources) == {"n1", "n2", "n3"}
        assert "TIE_BREAKER" in resources["n3"].flags and "DISKLESS" in resources["n3"].flags
        assert resources["n1"].layer_data.type == "DRBD"
        states = {s.node_name: s for s in answer.resource_states}
        assert states["n1"].in_use is False and [v.disk_state for v in states["n1"].volume_states] == ["UpToDate"]
        assert states["n2"].in_use is None  # no state from a satellite that is not connected
        assert client.resource_list(filter_by_resources=["absent"])[0].resources == []
    missing = requests.get(ls.url + "/v1/resource-definitions/absent/resources", timeout=5)
    assert missing.status_code == 404
    reply = linstor.ApiCallResponse(missing.json()[0])
    assert reply.is_error() and "absent" in reply.message


# -- off the hot path ----------------------------------------------------------------


def external_world(name: str, **options):
    backend = {"pxd": PortworxBackend, "linstor": LinstorBackend}[name](**options)
    world = backend.world(layout(["1", "2", "1", "2", "3"]), {"vol1": ["n1"], "vol2": ["n2"]})
    world.server = world.storage.server  # type: ignore[attr-defined]
    return backend, world


@pytest.fixture(params=["pxd", "linstor"])
def external(request):
    backend, world = external_world(request.param)
    yield backend, world
    backend.close()


@pytest.fixture(params=["pxd", "linstor"])
def refreshing(request):
    """A driver whose background thread runs, with short intervals."""
    backend, world = external_world(request.param, volume_refresh_interval=0.2, node_refresh_interval=1000)
    world.driver.start()
    yield backend, world
    world.driver.stop()
    backend.close()


def wait_for(condition, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_steady_state_requests_make_no_storage_api_call(external):
    _, world = external
    client = ExtenderClient(world)
    client.scores(claims_pod("vol1", "vol2"), NODES)  # first use loads both volumes
    world.server.reset_counts()
    for _ in range(20):
        client.filter(claims_pod("vol1", "vol2"), NODES)
        client.scores(claims_pod("vol1", "vol2"), NODES)
    assert world.server.count() == 0


def test_unreachable_api_fails_open_within_the_budget_and_later_loads(external):
    backend, world = external
    client = ExtenderClient(world)
    assert client.scores(claims_pod("vol1"), NODES) == [100, 5, 50, 5, 5]  # loaded while the API answers
    world.server.latency = 5.0  # slower than the 2 s budget
    world.add(backend.pv("vol3"), pvc("pvc-vol3", storage_class_name="fast", volume="vol3"))
    started = time.monotonic()
    assert client.kept(claims_pod("vol3"), NODES) == NODES  # kept open ...
    assert time.monotonic() - started < 4.5  # ... not held for the slow API's 5 s
    started = time.monotonic()
    assert client.kept(claims_pod("vol3"), NODES) == NODES  # still failing: no second wait
    assert time.monotonic() - started < 1.0
    assert client.scores(claims_pod("vol1"), NODES) == [100, 5, 50, 5, 5]  # cached volumes still answer

    world.server.latency = 0.0
    world.driver.refresh_now()  # the background round
    assert client.scores(claims_pod("vol3"), NODES) == [5, 5, 5, 5, 5]  # unknown to storage: no replicas


def test_failing_api_answers_are_errors_that_fail_open(external):
    backend, world = external
    world.server.failure = lambda: api_error(500, "controller overloaded")
    world.add(backend.pv("vol3"), pvc("pvc-vol3", storage_class_name="fast", volume="vol3"))
    client = ExtenderClient(world)
    status, body = client.post("filter", client.args(claims_pod("vol3"), NODES, "names"))
    assert status == 200 and body["NodeNames"] == NODES
    assert any("HTTP 500" in message for _, message in client.reasons())


def test_readiness_waits_for_the_first_answer_then_stays(external):
    _, world = external
    app = ExtenderClient(world).app.test_client()
    assert app.get("/readyz").status_code == 200  # the backend's first round answered
    world.server.failure = lambda: api_error(503, "down")
    world.driver.refresh_now()
    assert app.get("/readyz").status_code == 200  # it answered since start: stay ready, fail open
    never = World(world.driver.name, px_endpoint="http://127.0.0.1:1", linstor_controllers="http://127.0.0.1:1")
    never.driver.refresh_now()
    waiting = ExtenderClient(never).app.test_client().get("/readyz")
    assert waiting.status_code == 503 and waiting.json["storage"] == "not answered yet"  # /readyz says why


def test_refresh_metrics_are_exported(external):
    _, world = external
    client = ExtenderClient(world)
    client.scores(claims_pod("vol1", "vol2"), NODES)
    world.server.failure = lambda: api_error(500, "boom")
    world.driver.refresh_now()
    text = client.app.test_client().get("/metrics").get_data(as_text=True)
    name = world.driver.name
    listing = {"pxd": "cluster_enumerate", "linstor": "nodes"}[name]
    assert f'stork_storage_refreshes_total{{driver="{name}",kind="nodes",result="ok"}} 1.0' in text
    assert f'stork_storage_refreshes_total{{driver="{name}",kind="nodes",result="error"}} 1.0' in text
    assert f'stork_storage_api_calls_total{{call="{listing}",driver="{name}",result="500"}} 1.0' in text
    assert f'stork_storage_cached_volumes{{driver="{name}"}} 2.0' in text


def test_background_thread_follows_a_moved_replica(refreshing):
    backend, world = refreshing
    client = ExtenderClient(world)
    assert client.scores(claims_pod("vol1"), NODES) == [100, 5, 50, 5, 5]
    world.storage.set_replicas("vol1", [backend.ids["n5"]])
    wait_for(lambda: client.scores(claims_pod("vol1"), NODES) == [5, 5, 5, 5, 100], "the moved replica was not seen")


def test_a_replica_on_a_new_node_brings_a_node_listing_before_its_interval(refreshing):
    _, world = refreshing
    client = ExtenderClient(world)
    world.add(k8s_node("n9", internal_ips=["10.0.0.9"]))
    assert client.scores(claims_pod("vol2"), [*NODES, "n9"]) == [5, 100, 5, 50, 5, 0]  # n9: not a storage node
    if world.driver.name == "pxd":
        world.storage.add_node("late", scheduler_name="n9")
    else:
        world.storage.add_node("late", k8s_hostname="n9")
    world.storage.set_replicas("vol2", ["late"])
    # The node listing is due only in 1000 s; the volume naming an unknown node asks for it now.
    wait_for(lambda: client.scores(claims_pod("vol2"), [*NODES, "n9"])[-1] == 100, "n9 never became a replica node")


def test_a_failing_api_is_retried_about_once_a_second_not_hammered(external):
    backend, world = external
    world.add(backend.pv("vol3"), pvc("pvc-vol3", storage_class_name="fast", volume="vol3"))
    world.server.failure = lambda: api_error(503, "down")
    client = ExtenderClient(world)
    assert client.kept(claims_pod("vol3"), NODES) == NODES  # fails open; vol3 is now waiting to load
    world.server.reset_counts()
    world.driver.start()
    try:
        time.sleep(3)
        assert 1 <= world.server.count() <= 8  # a retry each round, not a loop
    finally:
        world.driver.stop()


@pytest.mark.parametrize("driver", ["pxd", "linstor"])
def test_volumes_no_request_asks_for_are_forgotten(driver):
    backend, world = external_world(driver, volume_refresh_interval=0.05)  # idle after 10 rounds: 0.5 s
    try:
        client = ExtenderClient(world)
        client.scores(claims_pod("vol1", "vol2"), NODES)
        time.sleep(0.3)
        client.scores(claims_pod("vol1"), NODES)  # vol1 stays in use
        time.sleep(0.4)
        world.driver.refresh_now()
        metrics = client.app.test_client().get("/metrics").get_data(as_text=True)
        assert f'stork_storage_cached_volumes{{driver="{driver}"}} 1.0' in metrics
    finally:
        backend.close()


def test_a_replica_on_a_node_the_storage_never_lists_brings_one_listing_only(refreshing):
    _, world = refreshing
    client = ExtenderClient(world)
    world.storage.set_replicas("vol1", ["ghost"])
    wait_for(lambda: client.scores(claims_pod("vol1"), NODES) == [5] * 5, "the volume's new replica was not seen")
    listing = "GET /v1/cluster/enumerate" if world.driver.name == "pxd" else "GET /v1/nodes"
    world.server.reset_counts()
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        client.scores(claims_pod("vol1"), NODES)
        time.sleep(0.05)
    assert world.server.count(listing) <= 1  # not a listing every round for the same unknown node


def test_px_shared_secret_and_issuer_from_the_environment(px, monkeypatch):
    px.add_node("id-1", scheduler_name="n1")
    px.require_auth("issuer.example", SECRET)
    monkeypatch.setenv("PX_SHARED_SECRET", SECRET)
    monkeypatch.setenv("PX_JWT_ISSUER", "issuer.example")
    world = px_world(px)  # no secret in the options: the environment's, as the install sets it
    assert world.driver.node("id-1").scheduler_id == "n1"


def test_admission_never_waits_for_the_storage_api_and_holds_pods_once_loaded(refreshing):
    """The webhook's locality decision reads replica locations only from memory: a volume not
    loaded yet leaves the pod unconstrained (no API call while it waits) and is loaded by the
    background thread, after which the next pod is held to its replica node."""
    import datetime

    from storkcore.locality import decide_locality
    from storkcore.nodetable import NodeTable

    _, world = refreshing
    world.server.latency = 1.0  # any call on the admission path would show as a 1 s wait
    the_pod = claims_pod("vol2")
    the_pod["metadata"]["ownerReferences"] = [{"kind": "ReplicaSet", "name": "rs", "uid": "u", "controller": True}]
    now = datetime.datetime.now(datetime.UTC)
    table = NodeTable(world.driver)
    started = time.monotonic()
    first = decide_locality(world.driver, table, the_pod, "default", now)
    assert time.monotonic() - started < 0.5
    assert not first.constrained and "not loaded yet" in first.reason
    world.server.latency = 0.0
    wait_for(
        lambda: decide_locality(world.driver, table, the_pod, "default", now).nodes == ("n2",),
        "the background thread never loaded the volume",
    )


def test_simulated_linstor_serves_the_routes_other_clients_read(ls):
    """Upstream Stork's LINSTOR driver (golinstor) reads a resource definition, its resources and
    its volume definition 0 per volume, and nodes one by one: python-linstor's calls for the same
    routes get the objects; what does not exist is a 404 with LINSTOR's not-found return code."""
    ls.add_node("n1", ip="10.0.0.1")
    ls.add_resource("pvc-1", "n1")
    ls.add_resource("pvc-2", "n1")
    with linstor.Linstor(ls.url.replace("http://", "linstor://")) as client:
        answer = client.resource_dfn_list(filter_by_resource_definitions=["pvc-1"])[0]
        [definition] = answer.resource_definitions
        assert definition.name == "pvc-1" and definition.resource_group_name
        assert [v.number for v in definition.volume_definitions] == [0]
        assert definition.volume_definitions[0].size == 1048576
        assert {d.name for d in client.resource_dfn_list()[0].resource_definitions} == {"pvc-1", "pvc-2"}
        assert client.controller_props()  # a JSON object of properties
    for path in ("/v1/resource-definitions/pvc-1", "/v1/resource-definitions/pvc-1/volume-definitions/0"):
        found = requests.get(ls.url + path, timeout=5)
        assert found.status_code == 200, path
    assert requests.get(ls.url + "/v1/resource-definitions/pvc-1", timeout=5).json()["name"] == "pvc-1"
    assert requests.get(ls.url + "/v1/nodes/n1", timeout=5).json()["name"] == "n1"
    entry = requests.get(ls.url + "/v1/view/resources?resources=pvc-1", timeout=5).json()[0]
    assert "resource_name_suffix" in entry["layer_object"] and "rsc_name_suffix" not in entry["layer_object"]
    for path, code in (
        ("/v1/resource-definitions/absent", linstor.consts.FAIL_NOT_FOUND_RSC_DFN),
        ("/v1/resource-definitions/absent/volume-definitions/0", linstor.consts.FAIL_NOT_FOUND_RSC_DFN),
        ("/v1/resource-definitions/pvc-1/volume-definitions/3", linstor.consts.FAIL_NOT_FOUND_VLM_DFN),
        ("/v1/nodes/absent", linstor.consts.FAIL_NOT_FOUND_NODE),
    ):
        missing = requests.get(ls.url + path, timeout=5)
        assert missing.status_code == 404, path
        reply = linstor.ApiCallResponse(missing.json()[0])
        assert reply.is_error() and reply.ret_code % (1 << 64) == code, path  # a Java long on the wire
