"""stork-py on the local control plane, run as a user runs it.

The console scripts `stork-certs`, `stork-extender` and `stork-webhook` are
started as processes with TLS from `stork-certs create`; the webhook
configurations point at them by URL, get their CA bundle from
`stork-certs inject`, and a kube-scheduler profile calls the extender.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from localcluster import storkpods
from localcluster.binaries import REPO
from localcluster.controlplane import ControlPlane, SchedulerSpec
from localcluster.processes import free_port, wait_until
from localcluster.secretvolume import SecretVolume
from localcluster.simulate import ensure_namespace
from storkcore.kube import CONFIG_MAPS, ENDPOINTS, MUTATING, SERVICES, VALIDATING, ApiError, Kube

STORK_NAMESPACE = "stork"


def console_script(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} is not installed; run scripts/setup.sh")
    return found


@dataclass
class Stork:
    """One extender + webhook pair for one driver, and the scheduler that calls the extender."""

    control_plane: ControlPlane
    driver: str
    driver_args: list[str] = field(default_factory=list)
    scheduler_name: str = "stork"
    namespace_labels: dict[str, str] = field(default_factory=dict)  # only namespaces with these labels
    extender_timeout: str = "5s"
    percentage_of_nodes_to_score: int = 0  # the scheduler's; 0 is kube-scheduler's default
    webhook_args: list[str] = field(default_factory=list)  # extra stork-webhook flags
    ready_timeout: float = 60.0  # seconds for caches to sync at start (large benchmark clusters need more)
    extender_port: int = 0
    webhook_port: int = 0
    # Serve from Secret `<name>-tls` projected like a pod's Secret volume (so a controller can
    # renew it in place), instead of from the files `stork-certs create` wrote.
    tls_from_secret: bool = False
    certificate_days: float = 365
    ca_days: float = 3650
    secret_volume: SecretVolume | None = None
    # Run the extender and the webhook as pods on the real node from this image (see
    # localcluster.storkpods) instead of as processes here; the TLS Secret is then required.
    image: str = ""
    # The address the processes listen on and are called at (in their certificate too). A
    # non-loopback address can be a Service's endpoint, which `webhook_by_service` needs.
    host: str = "127.0.0.1"
    # Register the webhooks as shipped, by Service `<name>-webhook` (port 443, a selector-less
    # Service whose Endpoints name `host`), instead of by URL.
    webhook_by_service: bool = False
    # Run the scheduler as the shipped one does: leading through Lease stork/<name>-scheduler,
    # its configuration also kept in ConfigMap stork/<name>-scheduler-config (key config.yaml).
    scheduler_as_shipped: bool = False

    def __post_init__(self) -> None:
        self.tls_from_secret = self.tls_from_secret or bool(self.image)  # pods mount the Secret

    @property
    def name(self) -> str:
        return self.scheduler_name

    @property
    def issued(self) -> Path:
        """Where `stork-certs create` writes."""
        return self.control_plane.workdir / f"{self.name}-tls"

    @property
    def tls(self) -> Path:
        """Where the servers read their certificate, and clients the CA bundle."""
        return self.control_plane.workdir / f"{self.name}-tls-volume" if self.tls_from_secret else self.issued

    @property
    def tls_secret(self) -> str:
        return f"{self.name}-tls"

    @property
    def extender_url(self) -> str:
        return f"https://{self.host}:{self.extender_port}"

    @property
    def webhook_url(self) -> str:
        return f"https://{self.host}:{self.webhook_port}"

    def start(self) -> None:
        kube = self.control_plane.kube()
        ensure_namespace(kube, STORK_NAMESPACE)
        ensure_namespace(kube, "kube-system")
        self._issue_certificates()
        if self.tls_from_secret:
            self._store_certificates(kube)
        if self.image:
            self._start_pods(kube)
        else:
            self.extender_port, self.webhook_port = free_port(), free_port()
            self.start_extender()
            self.start_webhook()
        if self.webhook_by_service:
            self._webhook_service(kube)
        self._register_webhooks()
        config = self.control_plane.start_scheduler(
            SchedulerSpec(
                name=f"{self.name}-scheduler",
                profiles=[self.scheduler_name],
                extender_url=self.extender_url,
                extender_ca=self.tls / "ca.crt",
                extender_timeout=self.extender_timeout,
                percentage_of_nodes_to_score=self.percentage_of_nodes_to_score,
                leader_lease=f"{STORK_NAMESPACE}/{self.name}-scheduler" if self.scheduler_as_shipped else "",
            )
        )
        if self.scheduler_as_shipped:
            storkpods.apply(
                kube,
                CONFIG_MAPS,
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": f"{self.name}-scheduler-config", "namespace": STORK_NAMESPACE},
                    "data": {"config.yaml": yaml.safe_dump(config)},
                },
            )

    def _webhook_service(self, kube: Kube) -> None:
        """Service `<name>-webhook` port 443 with one endpoint, this webhook process."""
        name = f"{self.name}-webhook"
        meta = {"name": name, "namespace": STORK_NAMESPACE}
        service = {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {"ports": [{"port": 443}]}}
        endpoints = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": meta,
            "subsets": [{"addresses": [{"ip": self.host}], "ports": [{"port": self.webhook_port}]}],
        }
        storkpods.apply(kube, SERVICES, service)
        storkpods.apply(kube, ENDPOINTS, endpoints)

    def _issue_certificates(self) -> None:
        subprocess.run(
            [
                console_script("stork-certs"),
                "create",
                "--service",
                f"{self.name}-webhook",
                "--namespace",
                STORK_NAMESPACE,
                "--out",
                str(self.issued),
                "--host",
                "localhost",
                "--ip",
                "127.0.0.1",
                *(["--ip", self.host] if self.host != "127.0.0.1" else []),
                "--days",
                str(self.certificate_days),
                "--ca-days",
                str(self.ca_days),
            ],
            check=True,
            capture_output=True,
        )

    def _store_certificates(self, kube: Kube) -> None:
        subprocess.run(
            [
                console_script("stork-certs"),
                "secret",
                "--name",
                self.tls_secret,
                "--namespace",
                STORK_NAMESPACE,
                "--dir",
                str(self.issued),
                "--kubeconfig",
                str(self.control_plane.kubeconfig),
            ],
            check=True,
            capture_output=True,
        )
        self.secret_volume = SecretVolume(kube, STORK_NAMESPACE, self.tls_secret, self.tls)
        self.secret_volume.start()

    def _start_pods(self, kube: Kube) -> None:
        self.extender_port, self.webhook_port = storkpods.PORTS["extender"], storkpods.PORTS["webhook"]
        storkpods.run_components(
            kube,
            self.name,
            self.image,
            {
                "extender": list(self.driver_args),
                "webhook": [*self.driver_args, "--scheduler-name", self.scheduler_name, "--workers", "1"],
            },
            {"STORK_DRIVER": self.driver},
            self.tls_secret,
            self.control_plane.kubeconfig.read_bytes(),
        )
        for component, url in (("extender", self.extender_url), ("webhook", self.webhook_url)):
            wait_until(lambda url=url: self._answers(url), self.ready_timeout, f"{self.name} {component} pod")

    def stop_pods(self) -> None:
        if self.image:
            storkpods.stop_components(self.control_plane.kube(), self.name, ["extender", "webhook"])

    def stop(self) -> None:
        if self.secret_volume is not None:
            self.secret_volume.stop()

    def _common_args(self) -> list[str]:
        return [
            "--driver",
            self.driver,
            *self.driver_args,
            "--kubeconfig",
            str(self.control_plane.kubeconfig),
            "--certfile",
            str(self.tls / "tls.crt"),
            "--keyfile",
            str(self.tls / "tls.key"),
        ]

    def start_extender(self, extra_args: Sequence[str] = ()) -> None:
        procs = self.control_plane.procs
        procs.start(
            f"{self.name}-extender",
            [
                console_script("stork-extender"),
                *self._common_args(),
                "--bind",
                f"{self.host}:{self.extender_port}",
                *extra_args,
            ],
        )
        wait_until(
            lambda: self._ready(f"{self.name}-extender", self.extender_url), self.ready_timeout, f"{self.name} extender"
        )

    def start_webhook(self) -> None:
        procs = self.control_plane.procs
        procs.start(
            f"{self.name}-webhook",
            [
                console_script("stork-webhook"),
                *self._common_args(),
                "--bind",
                f"{self.host}:{self.webhook_port}",
                "--scheduler-name",
                self.scheduler_name,
                "--workers",
                "1",
                *self.webhook_args,
            ],
        )
        wait_until(
            lambda: self._ready(f"{self.name}-webhook", self.webhook_url), self.ready_timeout, f"{self.name} webhook"
        )

    def stop_webhook(self) -> None:
        self.control_plane.procs.stop(f"{self.name}-webhook")

    def _ready(self, process: str, base: str) -> bool:
        self.control_plane.procs.check_alive(process)
        return self._answers(base)

    def _answers(self, base: str) -> bool:
        context = ssl.create_default_context(cafile=str(self.tls / "ca.crt"))
        with urllib.request.urlopen(base + "/readyz", timeout=2, context=context) as resp:
            return resp.status == 200

    def metrics(self, which: str = "extender") -> str:
        base = self.extender_url if which == "extender" else self.webhook_url
        context = ssl.create_default_context(cafile=str(self.tls / "ca.crt"))
        with urllib.request.urlopen(base + "/metrics", timeout=5, context=context) as resp:
            return resp.read().decode()

    def _register_webhooks(self) -> None:
        """The webhook configurations shipped in manifests/, pointed at our processes by URL."""
        kube = self.control_plane.kube()
        shipped = yaml.safe_load_all((REPO / "manifests" / "base" / "webhook-configurations.yaml").read_text())
        configs = {doc["kind"]: doc for doc in shipped}
        for config in configs.values():
            config["metadata"]["name"] = f"{self.name}-webhook"
            for hook in config["webhooks"]:
                hook["name"] = hook["name"].replace(".stork.", f".{self.name}.stork.", 1)
                if self.webhook_by_service:
                    hook["clientConfig"]["service"].update(name=f"{self.name}-webhook", namespace=STORK_NAMESPACE)
                else:
                    hook["clientConfig"] = {"url": self.webhook_url + hook["clientConfig"]["service"]["path"]}
                hook["namespaceSelector"]["matchLabels"] = dict(self.namespace_labels)
        mutating = configs["MutatingWebhookConfiguration"]
        validating = configs["ValidatingWebhookConfiguration"]
        for resource, body in ((MUTATING, mutating), (VALIDATING, validating)):
            try:
                kube.create(resource, "", body)
            except ApiError as err:
                if err.status != 409:
                    raise
        subprocess.run(
            [
                console_script("stork-certs"),
                "inject",
                "--webhook-config",
                f"{self.name}-webhook",
                "--kind",
                "all",
                "--ca-file",
                str(self.tls / "ca.crt"),
                "--kubeconfig",
                str(self.control_plane.kubeconfig),
            ],
            check=True,
            capture_output=True,
        )
