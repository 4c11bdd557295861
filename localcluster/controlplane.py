"""etcd, kube-apiserver, kube-controller-manager and kube-scheduler on loopback."""

from __future__ import annotations

import base64
import json
import logging
import secrets
import ssl
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from certs import authority
from localcluster.binaries import etcd_binary, kubernetes_bin_dir
from localcluster.processes import Processes, free_port, wait_until
from storkcore.kube import Kube, load_api_client

log = logging.getLogger(__name__)


@dataclass
class SchedulerSpec:
    """One kube-scheduler process: its profile names, and an extender if any."""

    name: str
    profiles: list[str]
    extender_url: str | None = None
    extender_ca: Path | None = None
    extender_timeout: str = "5s"
    extender_weight: int = 5
    # kube-scheduler's percentageOfNodesToScore; 0 is its own default (50 % less 1 % per 125
    # nodes, at least 100 nodes): it stops looking once it has found that many feasible nodes.
    percentage_of_nodes_to_score: int = 0
    # NAMESPACE/NAME of a Lease to lead through (kube-scheduler's leader election), as the
    # shipped stork scheduler does; "" runs without leader election.
    leader_lease: str = ""


@dataclass
class ControlPlane:
    workdir: Path
    bin_dir: Path
    procs: Processes = field(init=False)
    api_port: int = 0
    etcd_url: str = ""
    token: str = field(default_factory=lambda: secrets.token_hex(16))

    def __post_init__(self) -> None:
        self.procs = Processes(self.workdir)
        self.pki = self.workdir / "pki"

    @classmethod
    def create(cls, workdir: Path | None = None, bin_dir: Path | None = None) -> ControlPlane:
        folder = workdir or Path(tempfile.mkdtemp(prefix="stork-cluster-"))
        return cls(folder, bin_dir or kubernetes_bin_dir())

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    def kube(self) -> Kube:
        return Kube(load_api_client(str(self.kubeconfig)))

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        try:
            self._write_pki()
            self.etcd_url = self._start_etcd()
            self._start_apiserver(self.etcd_url)
            self._start_controller_manager()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self.procs.stop_all()

    def restart_apiserver(self) -> None:
        """Stop kube-apiserver and start it again on the same port: every watch breaks."""
        self.procs.stop("kube-apiserver")
        self._start_apiserver(self.etcd_url, port=self.api_port)

    def compact_etcd(self) -> int:
        """Compact etcd's history up to now (what the apiserver does every 5 minutes): a watch
        resumed from an older resourceVersion gets 410 Gone and must list again. Returns the
        revision compacted to."""
        with urllib.request.urlopen(
            urllib.request.Request(
                self.etcd_url + "/v3/kv/range",
                data=json.dumps({"key": base64.b64encode(b"/").decode()}).encode(),
                method="POST",
            ),
            timeout=10,
        ) as resp:
            revision = int(json.load(resp)["header"]["revision"])
        body = json.dumps({"revision": revision, "physical": True}).encode()
        with urllib.request.urlopen(
            urllib.request.Request(self.etcd_url + "/v3/kv/compaction", data=body, method="POST"), timeout=60
        ):
            pass
        return revision

    # -- pieces ----------------------------------------------------------------

    def _write_pki(self) -> None:
        self.pki.mkdir(parents=True, exist_ok=True)
        ca = authority.create_ca("stork-py local cluster CA")
        serving = authority.create_serving(
            ca, ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"], ["127.0.0.1", "10.0.0.1"]
        )
        authority.save(self.pki, ca, serving)
        # Service-account tokens are signed with RSA (what kube-controller-manager expects).
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (self.pki / "sa.key").write_bytes(
            sa_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
            )
        )
        (self.pki / "sa.key").chmod(0o600)
        public = sa_key.public_key()
        (self.pki / "sa.pub").write_bytes(
            public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        (self.pki / "tokens.csv").write_text(f'{self.token},admin,admin,"system:masters"\n')

    def _start_etcd(self) -> str:
        client, peer = free_port(), free_port()
        url = f"http://127.0.0.1:{client}"
        self.procs.start(
            "etcd",
            [
                etcd_binary(),
                "--name",
                "default",
                "--data-dir",
                str(self.workdir / "etcd"),
                "--listen-client-urls",
                url,
                "--advertise-client-urls",
                url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-cluster",
                f"default=http://127.0.0.1:{peer}",
                "--log-level",
                "warn",
            ],
        )
        wait_until(lambda: self._healthy(url + "/health", "etcd"), 30, "etcd")
        return url

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    def _start_apiserver(self, etcd_url: str, port: int = 0) -> None:
        self.api_port = port or free_port()
        # Every request is audited (metadata only): the RBAC test checks stork's calls against
        # the manifests' roles.
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(
            json.dumps(
                {
                    "apiVersion": "audit.k8s.io/v1",
                    "kind": "Policy",
                    "omitStages": ["RequestReceived"],
                    "rules": [{"level": "Metadata"}],
                }
            )
        )
        self.procs.start(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                "--etcd-servers",
                etcd_url,
                "--bind-address",
                "127.0.0.1",
                "--advertise-address",
                "127.0.0.1",
                "--secure-port",
                str(self.api_port),
                "--insecure-port",
                "0",
                "--tls-cert-file",
                str(self.pki / "tls.crt"),
                "--tls-private-key-file",
                str(self.pki / "tls.key"),
                "--client-ca-file",
                str(self.pki / "ca.crt"),
                "--token-auth-file",
                str(self.pki / "tokens.csv"),
                "--authorization-mode",
                "Node,RBAC",
                "--service-account-key-file",
                str(self.pki / "sa.pub"),
                "--service-account-signing-key-file",
                str(self.pki / "sa.key"),
                "--service-account-issuer",
                "https://kubernetes.default.svc",
                "--service-cluster-ip-range",
                "10.0.0.0/24",
                # No kube-proxy here: webhooks given by Service are called at an endpoint's
                # address (as in clusters whose apiserver cannot reach Service IPs).
                "--enable-aggregator-routing=true",
                "--allow-privileged",
                "--kubelet-preferred-address-types",
                "Hostname",
                "--cert-dir",
                str(self.pki / "generated"),
                "--audit-policy-file",
                str(policy),
                "--audit-log-path",
                str(self.audit_log),
                "--audit-log-format",
                "json",
                "--v",
                "1",
            ],
        )
        self._write_kubeconfig()
        wait_until(lambda: self._api_ready(), 90, "kube-apiserver", interval=0.5)

    def _start_controller_manager(self) -> None:
        self.procs.start(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                "--kubeconfig",
                str(self.kubeconfig),
                # No kubelets post heartbeats: node lifecycle would taint every node unreachable.
                "--controllers",
                "*,-nodelifecycle",
                "--service-account-private-key-file",
                str(self.pki / "sa.key"),
                "--root-ca-file",
                str(self.pki / "ca.crt"),
                "--use-service-account-credentials=false",
                "--leader-elect=false",
                "--port",
                "0",
                "--secure-port",
                "0",
                "--v",
                "1",
            ],
        )
        # Pods need their namespace's default service account (and its token).
        kube = self.kube()
        wait_until(
            lambda: kube.request("GET", "/api/v1/namespaces/default/serviceaccounts/default") is not None,
            60,
            "default service account",
            interval=0.5,
        )

    def start_scheduler(self, spec: SchedulerSpec) -> dict:
        """Starts kube-scheduler; returns the configuration it reads."""
        profiles = [{"schedulerName": name} for name in spec.profiles]
        config: dict = {
            "apiVersion": "kubescheduler.config.k8s.io/v1beta1",
            "kind": "KubeSchedulerConfiguration",
            # One client budget for every scheduler, high enough that none is capped at the same
            # binding rate by its API client (1.20's default qps 50 would hide an extender's cost).
            "clientConnection": {"qps": 1000, "burst": 2000},
            "leaderElection": _leader_election(spec.leader_lease),
            "profiles": profiles,
        }
        if spec.percentage_of_nodes_to_score:
            config["percentageOfNodesToScore"] = spec.percentage_of_nodes_to_score
        if spec.extender_url:
            extender: dict = {
                "urlPrefix": spec.extender_url,
                "filterVerb": "filter",
                "prioritizeVerb": "prioritize",
                "weight": spec.extender_weight,
                "nodeCacheCapable": True,
                "enableHTTPS": spec.extender_url.startswith("https"),
                "httpTimeout": spec.extender_timeout,
            }
            if spec.extender_ca:
                extender["tlsConfig"] = {"caData": base64.b64encode(spec.extender_ca.read_bytes()).decode()}
            config["extenders"] = [extender]
        return self.run_scheduler(spec.name, config)

    def run_scheduler(self, name: str, config: dict) -> dict:
        """A kube-scheduler process reading `config` (a KubeSchedulerConfiguration), connected
        to this control plane and with health and metrics on a free loopback port; returns the
        configuration it reads."""
        health = f"127.0.0.1:{free_port()}"
        config = {
            **config,
            "clientConnection": {**config.get("clientConnection", {}), "kubeconfig": str(self.kubeconfig)},
            # With --config these replace --port: the default 0.0.0.0:10251 would clash.
            "healthzBindAddress": health,
            "metricsBindAddress": health,
        }
        path = self.workdir / f"{name}.yaml"
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        self.procs.start(
            name,
            [
                str(self.bin_dir / "kube-scheduler"),
                "--config",
                str(path),
                "--port",
                "0",
                "--secure-port",
                "0",
                "--v",
                "2",
            ],
        )
        return config

    # -- helpers ----------------------------------------------------------------

    def _write_kubeconfig(self) -> None:
        ca_data = base64.b64encode((self.pki / "ca.crt").read_bytes()).decode()
        cluster = {"server": self.server, "certificate-authority-data": ca_data}
        self.kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "local", "cluster": cluster}],
                    "users": [{"name": "admin", "user": {"token": self.token}}],
                    "contexts": [{"name": "local", "context": {"cluster": "local", "user": "admin"}}],
                    "current-context": "local",
                },
                indent=2,
            )
        )
        self.kubeconfig.chmod(0o600)

    def _healthy(self, url: str, name: str) -> bool:
        self.procs.check_alive(name)
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200

    def _api_ready(self) -> bool:
        self.procs.check_alive("kube-apiserver")
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        request = urllib.request.Request(self.server + "/readyz", headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=2, context=context) as resp:
            return resp.status == 200


def _leader_election(lease: str) -> dict:
    if not lease:
        return {"leaderElect": False}
    namespace, _, name = lease.partition("/")
    return {"leaderElect": True, "resourceLock": "leases", "resourceNamespace": namespace, "resourceName": name}
