"""`stork-extender` as a user runs it: the console script under granian (its default) and
gunicorn, over HTTP.

No cluster here: the kubeconfig points at a closed port, so the caches never
sync. What this proves is the serving layer: flags and STORK_* variables,
both servers, health endpoints, JSON logs, and answers that need no cluster state.
Behaviour against a real apiserver and scheduler is in tests/e2e.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import requests

from tests.processes import Service, console_script, free_port

pytestmark = pytest.mark.integration


def write_kubeconfig(path, server: str) -> str:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    return str(path)


@pytest.fixture(params=[[], ["--server", "gunicorn"]], ids=["default-granian", "gunicorn"])
def extender(tmp_path, request):
    port = free_port()
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{free_port()}")
    service = Service(
        [console_script("stork-extender"), "--driver", "longhorn", "--kubeconfig", kubeconfig, *request.param],
        tmp_path / "extender.log",
        env={"STORK_BIND": f"127.0.0.1:{port}", "STORK_SCORE_MODE": "normalized"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        service.wait_http(base + "/livez")
        yield service, base
    finally:
        service.stop()


def test_serves_health_and_verbs(extender):
    _, base = extender
    assert requests.get(base + "/livez", timeout=5).status_code == 200
    assert requests.get(base + "/readyz", timeout=5).status_code == 503  # no apiserver: caches not synced
    pod = {"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": []}}
    kept = requests.post(base + "/filter", json={"Pod": pod, "NodeNames": ["a", "b"]}, timeout=5).json()
    assert kept["NodeNames"] == ["a", "b"] and kept["Error"] == ""
    scores = requests.post(base + "/prioritize", json={"Pod": pod, "NodeNames": ["a"]}, timeout=5).json()
    assert scores == [{"Host": "a", "Score": 5}]  # no driver volumes: 5 everywhere, as upstream
    bad = requests.post(base + "/filter", data=b"{", timeout=5)
    assert bad.status_code == 400 and "not JSON" in bad.json()["error"]
    assert "stork_extender_requests_total" in requests.get(base + "/metrics", timeout=5).text
    # Keep-alive connections are reused across requests.
    with requests.Session() as session:
        for _ in range(3):
            assert session.post(base + "/filter", json={"Pod": pod, "NodeNames": []}, timeout=5).ok


def test_logs_are_one_json_object_a_line(extender):
    service, base = extender
    requests.get(base + "/livez", timeout=5)
    lines = [line for line in service.log().splitlines() if line.strip()]
    assert lines
    records = [json.loads(line) for line in lines]
    assert any(r.get("message") == "extender started" and r.get("score_mode") == "normalized" for r in records)
    assert all({"time", "level", "message"} <= set(r) for r in records)


def test_bad_flags_fail_fast_with_a_clear_message(tmp_path):
    run = subprocess.run(
        [console_script("stork-extender"), "--driver", "nosuch"], capture_output=True, text=True, timeout=30
    )
    assert run.returncode != 0 and "unknown driver 'nosuch'" in run.stderr
    run = subprocess.run(
        [console_script("stork-extender"), "--driver", "longhorn", "--certfile", "x.pem"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode != 0 and "--certfile and --keyfile go together" in run.stderr
