"""Watch-backed caches: list, watch, resume after a dropped connection, relist on 410 Gone."""

from __future__ import annotations

import threading

from storkcore.cache import Reflector, Store
from storkcore.cluster import ClusterState
from storkcore.kube import NODES, ApiError
from tests.builders import k8s_node


def named(node_name: str, rv: str) -> dict:
    node = k8s_node(node_name)
    node["metadata"]["resourceVersion"] = rv
    return node


class ScriptedKube:
    """Answers LIST and WATCH from a script; records the versions watches resume from."""

    def __init__(self, lists, watches) -> None:
        self.lists = list(lists)
        self.watches = list(watches)
        self.watched_from: list[str] = []
        self.gets: list[str] = []
        self.done = threading.Event()

    def list_pages(self, resource, page_size=500, field_selector=""):
        pages, version = self.lists.pop(0)
        for page in pages if pages and isinstance(pages[0], list) else [pages]:
            yield page, version

    def watch(self, resource, resource_version, timeout_seconds, field_selector=""):
        self.watched_from.append(resource_version)
        if not self.watches:
            self.done.set()
            threading.Event().wait(5)
            return
        step = self.watches.pop(0)
        if isinstance(step, Exception):
            raise step
        yield from step

    def get(self, resource, namespace, name):
        self.gets.append(name)
        return named(name, "99") if name == "late" else None


def test_reflector_lists_watches_resumes_and_relists_on_gone():
    kube = ScriptedKube(
        lists=[([named("a", "5")], "10"), ([named("c", "30")], "30")],
        watches=[
            [{"type": "ADDED", "object": named("b", "11")}, {"type": "MODIFIED", "object": named("a", "12")}],
            ConnectionError("dropped"),
            [{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "20"}}}],
            [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}}],
        ],
    )
    store = Store()
    reflector = Reflector(kube, NODES, store)
    reflector.MIN_BACKOFF = 0.01
    reflector.start()
    assert kube.done.wait(5)
    reflector.stop()
    # Resumed from the last seen version after the drop and after the bookmark;
    # after 410 Gone it listed again and watched from the new list's version.
    assert kube.watched_from == ["10", "12", "12", "20", "30"]
    assert [n["metadata"]["name"] for n in store.list()] == ["c"]
    assert reflector.synced.is_set()


def test_a_paged_list_is_trimmed_page_by_page_and_watched_from_its_version():
    def noisy(name: str) -> dict:
        obj = named(name, "5")
        obj["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]
        return obj

    first, second = [noisy("a"), noisy("b")], [noisy("c")]
    trimmed_before_page_two: list[bool] = []

    class PagedKube(ScriptedKube):
        def list_pages(self, resource, page_size=500, field_selector=""):
            yield first, "40"
            # The first page is already in its cached (trimmed) form when the second is fetched.
            trimmed_before_page_two.append(all("managedFields" not in o["metadata"] for o in first))
            yield second, "40"

    kube = PagedKube(lists=[], watches=[])
    store = Store()
    reflector = Reflector(kube, NODES, store)
    reflector.start()
    assert kube.done.wait(5)
    reflector.stop()
    assert sorted(n["metadata"]["name"] for n in store.list()) == ["a", "b", "c"]
    assert trimmed_before_page_two == [True]
    assert kube.watched_from == ["40"]


def test_store_listeners_hear_each_change_and_version_grows():
    store = Store()
    heard = []
    store.add_listener(
        lambda old, new: heard.append((old and old["metadata"]["name"], new and new["metadata"]["name"]))
    )
    a, b = named("a", "1"), named("b", "1")
    store.upsert(a)
    store.replace([a, b])
    store.delete(a)
    assert heard == [(None, "a"), (None, "b"), ("a", None)]
    assert store.version == 3


def test_cache_miss_falls_back_to_one_direct_get():
    kube = ScriptedKube(lists=[], watches=[])
    cluster = ClusterState(kube)  # not started: every store is empty
    assert cluster.node("late")["metadata"]["name"] == "late"
    assert cluster.node("late") is not None  # now cached: no second GET
    assert cluster.node("missing") is None
    assert kube.gets == ["late", "missing"]


def test_api_error_knows_gone():
    assert ApiError(410, b"gone").gone and not ApiError(500).gone


def test_change_log_names_changed_keys_until_it_overflows():
    store = Store()
    store.LOG_SIZE = 4
    store.upsert(named("a", "1"))
    start = store.version
    store.upsert(named("b", "1"))
    store.delete(named("a", "1"))
    assert store.changed_since(start) == {("", "b"), ("", "a")}
    assert store.changed_since(store.version) == set()
    store.replace([named(n, "2") for n in "cdefg"])  # more changes than the log holds
    assert store.changed_since(start) is None  # too old: the reader must rebuild
    latest = store.version
    store.upsert(named("h", "1"))
    assert store.changed_since(latest) == {("", "h")}


def test_cached_objects_drop_field_ownership_and_last_applied_copies():
    def noisy(name: str, rv: str) -> dict:
        obj = named(name, rv)
        obj["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]
        obj["metadata"]["annotations"] = {
            "kubectl.kubernetes.io/last-applied-configuration": '{"spec": "a copy of everything"}',
            "stork.libopenstorage.org/skipSchedulerScoring": "true",
        }
        return obj

    kube = ScriptedKube(lists=[([noisy("a", "5")], "10")], watches=[[{"type": "ADDED", "object": noisy("b", "11")}]])
    store = Store()
    reflector = Reflector(kube, NODES, store)
    reflector.start()
    assert kube.done.wait(5)
    reflector.stop()
    for obj in store.list():
        assert "managedFields" not in obj["metadata"]
        assert obj["metadata"]["annotations"] == {"stork.libopenstorage.org/skipSchedulerScoring": "true"}


def test_cached_nodes_keep_what_placement_reads_and_drop_the_bulk():
    state = ClusterState()
    node = k8s_node("n1", labels={"topology.kubernetes.io/zone": "z1"}, internal_ips=["10.0.0.1"])
    node["metadata"]["managedFields"] = [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}]
    node["status"]["images"] = [{"names": [f"registry.example/app{i}:1"], "sizeBytes": 1} for i in range(50)]
    node["status"]["volumesAttached"] = [{"name": f"kubernetes.io/csi/v{i}", "devicePath": ""} for i in range(50)]
    node["status"]["nodeInfo"] = {"kubeletVersion": "v1.30.4"}
    state.store(NODES).upsert(node)
    cached = state.store(NODES).get("", "n1")
    assert "images" not in cached["status"] and "volumesAttached" not in cached["status"]
    assert "nodeInfo" not in cached["status"] and "managedFields" not in cached["metadata"]
    assert cached["metadata"]["labels"]["topology.kubernetes.io/zone"] == "z1"
    assert cached["status"]["conditions"] == [{"type": "Ready", "status": "True"}]
    assert cached["status"]["addresses"] == [{"type": "InternalIP", "address": "10.0.0.1"}]


def test_repeated_strings_are_stored_once():
    store = Store()
    first, second = named("a", "1"), named("b", "2")
    for obj in (first, second):
        obj["metadata"]["labels"] = {"zone": "".join(["zone", "-a"])}  # equal values, distinct objects
    store.upsert(first)
    store.upsert(second)
    a, b = store.get("", "a"), store.get("", "b")
    assert a["metadata"]["labels"]["zone"] is b["metadata"]["labels"]["zone"]


def test_a_kind_read_after_start_is_one_get_not_a_new_watch():
    from storkcore.snapshots import RULES

    class CountingKube(ScriptedKube):
        def __init__(self, lists, watches) -> None:
            super().__init__(lists, watches)
            self.listed: list[str] = []

        def list_pages(self, resource, page_size=500, field_selector=""):
            self.listed.append(resource.plural)
            yield [], "1"

    kube = CountingKube(lists=[], watches=[])
    cluster = ClusterState(kube)
    cluster.start()  # every kind with a store is watched; a kind read later has none
    assert cluster.wait_synced(5)
    assert cluster.get(RULES, "default", "nightly") is None  # ScriptedKube has no such rule
    assert "rules" not in kube.listed and kube.gets == ["nightly"]
    assert "nodes" in kube.listed  # the kinds known at start are watched
    cluster.stop()


def test_a_kind_not_served_settles_empty_logs_once_and_lists_when_it_appears(caplog, monkeypatch):
    import logging

    monkeypatch.setattr(Reflector, "MIN_BACKOFF", 0.01)
    caplog.set_level(logging.INFO)

    class LateCrdKube(ScriptedKube):
        def list_pages(self, resource, page_size=500, field_selector=""):
            if self.lists and isinstance(self.lists[0], Exception):
                raise self.lists.pop(0)
            yield from super().list_pages(resource, page_size, field_selector)

    missing = ApiError(404, b'{"reason": "NotFound"}')
    kube = LateCrdKube(lists=[missing, missing, missing, ([named("a", "5")], "5")], watches=[])
    store = Store()
    reflector = Reflector(kube, NODES, store)
    reflector.start()
    assert kube.done.wait(5)  # listed at last, and watching
    assert reflector.state == "synced" and reflector.synced.is_set() and store.get("", "a") is not None
    said = [r.getMessage() for r in caplog.records if r.name == "storkcore.cache"]
    assert said == ["cache not served, waiting for it", "cache synced"]  # not one line per retry
    reflector.stop()


def test_not_served_counts_as_settled_for_readiness_but_not_as_listed():
    reflector = Reflector(ScriptedKube([], []), NODES, Store())
    assert not reflector.settled
    reflector.state = "not served"
    assert reflector.settled and not reflector.synced.is_set()


def test_a_component_is_ready_when_an_optional_kind_is_not_served(monkeypatch):
    """The extender and the webhook answer ready when, say, CSINodes or a driver's CRD are not
    served (none exists), and say so in their /readyz detail."""
    from storkcore.kube import CSI_NODES

    monkeypatch.setattr(Reflector, "MIN_BACKOFF", 0.01)

    class NoCsiNodes(ScriptedKube):
        def list_pages(self, resource, page_size=500, field_selector=""):
            if resource == CSI_NODES:
                raise ApiError(404, b"not found")
            yield [], "1"

    cluster = ClusterState(NoCsiNodes(lists=[], watches=[]))
    cluster.start()
    deadline = threading.Event()
    for _ in range(200):
        if cluster.synced():
            break
        deadline.wait(0.02)
    assert cluster.synced()
    assert cluster.kind_states()[CSI_NODES] == "not served"
    assert cluster.kind_states()[NODES] == "synced"
    cluster.stop()
