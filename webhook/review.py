"""AdmissionReview (`admission.k8s.io/v1`) in and out."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson

MAX_WARNING = 119  # the apiserver shows warnings to users; keep them short


class NotAReview(ValueError):
    """The body is not an AdmissionReview (HTTP 400)."""


@dataclass
class Review:
    api_version: str
    kind: str
    request: dict[str, Any]

    @property
    def uid(self) -> str:
        return self.request["uid"]

    @property
    def operation(self) -> str:
        return str(self.request.get("operation") or "")

    @property
    def namespace(self) -> str:
        value = self.request.get("namespace")
        return value if isinstance(value, str) else ""

    @property
    def object(self) -> Any:
        return self.request.get("object")

    @property
    def dry_run(self) -> bool:
        return self.request.get("dryRun") is True

    def kind_of_object(self) -> tuple[str, str]:
        """(group, kind) of the object under review."""
        kind = self.request.get("kind")
        if not isinstance(kind, dict):
            return "", ""
        return str(kind.get("group") or ""), str(kind.get("kind") or "")


def parse_review(body: bytes) -> Review:
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise NotAReview(f"body is not JSON: {err}") from None
    if not isinstance(raw, dict) or raw.get("kind") != "AdmissionReview":
        raise NotAReview("body is not an AdmissionReview")
    api_version = raw.get("apiVersion")
    if not isinstance(api_version, str) or not api_version.startswith("admission.k8s.io/"):
        raise NotAReview("apiVersion must be admission.k8s.io/v1")
    request = raw.get("request")
    if not isinstance(request, dict) or not isinstance(request.get("uid"), str) or not request["uid"]:
        raise NotAReview("AdmissionReview has no request.uid")
    return Review(api_version, "AdmissionReview", request)


def short(text: str) -> str:
    return text if len(text) <= MAX_WARNING else text[: MAX_WARNING - 1] + "…"


def allow(review: Review, patch: list[dict] | None = None, warnings: list[str] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": review.uid, "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(orjson.dumps(patch)).decode()
    if warnings:
        response["warnings"] = [short(w) for w in warnings]
    return {"apiVersion": review.api_version, "kind": review.kind, "response": response}


def deny(review: Review, message: str, code: int = 422) -> dict[str, Any]:
    return {
        "apiVersion": review.api_version,
        "kind": review.kind,
        "response": {
            "uid": review.uid,
            "allowed": False,
            "status": {"code": code, "reason": "Invalid", "message": message},
        },
    }
