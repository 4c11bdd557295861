"""Drive the extender app through Flask's test client, in either request mode."""

from __future__ import annotations

from typing import Any

import orjson

from extender.app import create_app
from storkcore.events import EventRecorder
from storkcore.kube import NODES
from tests.builders import World


class ExtenderClient:
    def __init__(self, world: World, score_mode: str = "stork") -> None:
        self.world = world
        self.events = EventRecorder(None, "stork-extender")
        self.app = create_app(world.driver, self.events, score_mode)
        self.http = self.app.test_client()

    def args(self, pod: dict, nodes: list[str], mode: str) -> dict[str, Any]:
        if mode == "names":
            return {"Pod": pod, "Nodes": None, "NodeNames": nodes}
        store = self.world.cluster.store(NODES)
        return {"Pod": pod, "Nodes": {"items": [store.get("", n) for n in nodes]}, "NodeNames": None}

    def post(self, verb: str, body: Any) -> tuple[int, Any]:
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        resp = self.http.post(f"/{verb}", data=raw, content_type="application/json")
        return resp.status_code, orjson.loads(resp.data)

    def filter(self, pod: dict, nodes: list[str], mode: str = "names") -> dict[str, Any]:
        status, body = self.post("filter", self.args(pod, nodes, mode))
        assert status == 200, body
        return body

    def kept(self, pod: dict, nodes: list[str], mode: str = "names") -> list[str]:
        body = self.filter(pod, nodes, mode)
        if mode == "names":
            return body["NodeNames"]
        return [n["metadata"]["name"] for n in body["Nodes"]["items"]]

    def scores(self, pod: dict, nodes: list[str], mode: str = "names") -> list[int]:
        status, body = self.post("prioritize", self.args(pod, nodes, mode))
        assert status == 200, body
        assert [entry["Host"] for entry in body] == nodes
        return [entry["Score"] for entry in body]

    def reasons(self) -> list[tuple[str, str]]:
        return [(e["reason"], e["message"]) for e in self.events.posted]
