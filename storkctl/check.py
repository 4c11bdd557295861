"""`storkctl check`: what is wrong with a live stork-py install, and how to fix it.

Each check looks at one thing and says pass, warn, fail or skip, and for a failure the fix. A
check that needs another's part to work (the webhook's TLS needs it to answer) is skipped when
that part failed, so one fault shows as one failed line, the cause, not as a cascade. Exit code
0 only when nothing failed (warnings pass).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import math
import re
import ssl
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import orjson
import yaml
from cryptography import x509

from controller.leader import LEASES
from storkcore import cli, objects
from storkcore.cluster import ClusterState
from storkcore.drivers import make_driver
from storkcore.kube import (
    CONFIG_MAPS,
    CRDS,
    DEPLOYMENTS,
    NAMESPACES,
    NODES,
    SECRETS,
    SERVICES,
    WEBHOOK_CONFIGS,
    ApiError,
    Kube,
    Resource,
)
from storkcore.locality import parse_time
from storkcore.selectors import label_selector_matches
from storkctl import permissions
from storkctl.explain import installed_settings
from storkctl.objects import Refused, print_table
from storkctl.reach import (
    Reader,
    Target,
    Unreachable,
    any_certificate,
    https,
    service_target,
    url_target,
    verifying_context,
)

REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"

STORK_CRDS = ("rules", "groupvolumesnapshots", "volumesnapshotschedules", "schedulepolicies")
SNAPSHOT_CRDS = ("volumesnapshots", "volumesnapshotcontents", "volumesnapshotclasses")
SCHEDULER_CONFIG_GROUP = "kubescheduler.config.k8s.io"
# The KubeSchedulerConfiguration versions each kube-scheduler minor release reads (first, last).
SCHEDULER_CONFIG_VERSIONS = {"v1beta1": (19, 22), "v1beta2": (22, 27), "v1beta3": (23, 28), "v1": (25, 999)}
SHIPPED_FAILURE_POLICY = "Ignore"
SHIPPED_TIMEOUT = 3
EXPIRY_WARNING = dt.timedelta(days=7)
SAMPLING_THRESHOLD = 100  # kube-scheduler scores every feasible node up to this many nodes

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"


@dataclass
class Result:
    check: str
    verdict: str
    detail: str
    fix: str = ""


@dataclass
class Install:
    """The names of one install (manifests/base: prefix `stork`, namespace `stork`)."""

    namespace: str
    prefix: str
    scheduler_config_file: str = ""
    kube: Kube | None = None
    server_minor: int = 0
    settings: argparse.Namespace = field(default_factory=argparse.Namespace)
    scheduler_config: dict[str, Any] | None = None
    scheduler_source: str = ""
    failed: set[str] = field(default_factory=set)  # checks that failed, for the ones that depend on them
    _read: dict[tuple[Resource, str, str], dict | None] = field(default_factory=dict)

    @property
    def api(self) -> Kube:
        assert self.kube is not None
        return self.kube

    def get(self, resource: Resource, namespace: str, name: str) -> dict | None:
        """One object, read once per run: the checks judge one moment of the install, and several
        look at the same objects (the webhook configurations, the TLS Secret, the scheduler)."""
        key = (resource, namespace, name)
        if key not in self._read:
            self._read[key] = self.api.get(resource, namespace, name)
        return self._read[key]

    def named(self, component: str) -> str:
        return f"{self.prefix}-{component}"

    def where(self, component: str) -> str:
        return f"{self.namespace}/{self.named(component)}"

    def pods_fix(self, component: str) -> str:
        """Where to look when a component's pods do not run (the shipped labels and Deployments)."""
        return (
            f"kubectl -n {self.namespace} get pods -l app.kubernetes.io/name={self.named(component)}; "
            f"kubectl -n {self.namespace} logs deployment/{self.named(component)}"
        )


def add_check(commands: argparse._SubParsersAction) -> None:
    check_cmd = commands.add_parser(
        "check",
        help="diagnose a live install: one line per check, with the fix for each failure",
        description="Checks the scheduler configuration against the cluster's version, the CRDs, the webhook "
        "configurations and the certificate the webhook serves, the stork scheduler, its extender, the controller's "
        "Lease, the storage API and each service account's permissions. Exit code 0 only when no check fails.",
    )
    check_cmd.add_argument("-n", "--namespace", default="stork", help="the install's namespace")
    check_cmd.add_argument("--name", default="stork", help="the prefix of the install's object names")
    check_cmd.add_argument("-o", "--output", choices=("table", "json"), default="table")
    check_cmd.add_argument(
        "--scheduler-config-file",
        default="",
        help="the stork scheduler's configuration file, when it runs outside the cluster "
        "(default: ConfigMap NAME-scheduler-config, key config.yaml)",
    )
    check_cmd.add_argument("--sync-timeout", type=float, default=30.0, help="seconds to wait for the storage view")
    cli.add_driver_arguments(check_cmd, driver_required=False)


def run_check(kube: Kube, args: argparse.Namespace) -> int:
    install = Install(args.namespace, args.name, args.scheduler_config_file, kube, settings=args)
    results = list(run_all(install))
    print_results(results, args.output)
    return 1 if any(r.verdict == FAIL for r in results) else 0


def run_all(install: Install) -> Iterator[Result]:
    for check in CHECKS:
        for result in _guarded(check, install):
            if result.verdict == FAIL:
                install.failed.add(result.check)
            yield result


def _guarded(check: Callable[[Install], Iterator[Result]], install: Install) -> Iterator[Result]:
    """A check the cluster will not answer (no permission, no connection) fails with the reason;
    the others still run."""
    name = check.__name__.removeprefix("check_").replace("_", "-")
    try:
        yield from check(install)
    except ApiError as err:
        what = "no permission" if err.status == 403 else f"the API answered {err.status}"
        yield Result(name, FAIL, f"could not check: {what}: {err.body[:200]}", "run storkctl check as a cluster admin")
    except (OSError, Unreachable) as err:
        yield Result(name, FAIL, f"could not check: {err}")


def print_results(results: list[Result], output: str) -> None:
    if output == "json":
        passed = not any(r.verdict == FAIL for r in results)
        print(json.dumps({"passed": passed, "checks": [asdict(r) for r in results]}, indent=2))
        return
    rows = [["CHECK", "VERDICT", "DETAIL"]]
    for result in results:
        rows.append([result.check, result.verdict, result.detail])
        if result.fix:
            rows.append(["", "", f"fix: {result.fix}"])
    print_table(rows)
    counts = {v: sum(r.verdict == v for r in results) for v in (PASS, WARN, FAIL, SKIP)}
    print(f"\n{len(results)} checks: " + ", ".join(f"{n} {v}" for v, n in counts.items() if n))


# -- the cluster and the scheduler configuration ------------------------------------------


def check_server(install: Install) -> Iterator[Result]:
    version = install.api.request("GET", "/version")
    install.server_minor = int(re.sub(r"\D", "", str(version.get("minor", "0"))) or 0)
    yield Result("server", PASS, f"Kubernetes {version.get('gitVersion', '')}")


def _load_scheduler_config(install: Install) -> str:
    """The configuration's text, and where it came from; "" when this install has none."""
    if install.scheduler_config_file:
        install.scheduler_source = install.scheduler_config_file
        with open(install.scheduler_config_file, encoding="utf-8") as source:
            return source.read()
    config_map = install.get(CONFIG_MAPS, install.namespace, install.named("scheduler-config"))
    install.scheduler_source = f"ConfigMap {install.where('scheduler-config')}"
    return str(objects.mapping(config_map, "data").get("config.yaml") or "") if config_map else ""


def check_scheduler_config(install: Install) -> Iterator[Result]:
    name = "scheduler-config"
    text = _load_scheduler_config(install)
    deployment = install.get(DEPLOYMENTS, install.namespace, install.named("scheduler"))
    if not text:
        if deployment is not None:
            yield Result(
                name,
                FAIL,
                f"Deployment {install.where('scheduler')} exists, {install.scheduler_source} "
                "does not (or has no config.yaml)",
                "kubectl apply -k manifests/scheduler",
            )
        else:
            yield Result(
                name,
                SKIP,
                "no stork scheduler in this install (the default-scheduler overlay?); pass "
                "--scheduler-config-file if it runs outside the cluster",
            )
        return
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as err:
        yield Result(name, FAIL, f"{install.scheduler_source}: not YAML: {err}", "fix the file's syntax")
        return
    if not isinstance(config, dict):
        yield Result(name, FAIL, f"{install.scheduler_source}: not a KubeSchedulerConfiguration", "")
        return
    install.scheduler_config = config
    yield _config_version_result(install, config, _scheduler_minor(install, deployment))


def _scheduler_minor(install: Install, deployment: Mapping[str, Any] | None) -> tuple[int, str]:
    """The stork scheduler's kube-scheduler minor version: its image tag, else the server's."""
    for container in objects.items(deployment, "spec", "template", "spec", "containers"):
        tag = re.search(r":v?1\.(\d+)(\.\d+)?", str(container.get("image", "")))
        if tag:
            return int(tag.group(1)), f"kube-scheduler image {container['image']}"
    return install.server_minor, f"kube-scheduler 1.{install.server_minor} (the server's version)"


def _config_version_result(install: Install, config: Mapping[str, Any], scheduler: tuple[int, str]) -> Result:
    name = "scheduler-config"
    minor, what = scheduler
    api_version = str(config.get("apiVersion", ""))
    group, _, version = api_version.partition("/")
    readable = [v for v, (first, last) in SCHEDULER_CONFIG_VERSIONS.items() if first <= minor <= last]
    where = install.scheduler_source
    if group != SCHEDULER_CONFIG_GROUP or config.get("kind") != "KubeSchedulerConfiguration":
        return Result(
            name,
            FAIL,
            f"{where}: apiVersion {api_version!r}, kind {config.get('kind')!r}: not a KubeSchedulerConfiguration",
            "start from manifests/scheduler/scheduler.yaml",
        )
    if minor > install.server_minor > 0:
        return Result(
            name,
            FAIL,
            f"{what} is newer than the apiserver (1.{install.server_minor})",
            f"use the kube-scheduler image of your cluster's version (1.{install.server_minor})",
        )
    if version not in readable:
        fix = (
            f"write apiVersion: {SCHEDULER_CONFIG_GROUP}/{readable[-1]} in {where} (fields differ between "
            f"versions: see kube-scheduler's configuration reference), then restart the scheduler "
            f"(kubectl -n {install.namespace} rollout restart deployment/{install.named('scheduler')})"
            if readable
            else "run a kube-scheduler release that reads a KubeSchedulerConfiguration"
        )
        return Result(
            name,
            FAIL,
            f"{where}: {api_version} is not read by {what}; it reads "
            f"{', '.join(readable) or 'none'}: the scheduler will not start",
            fix,
        )
    return Result(name, PASS, f"{where}: {api_version}, read by {what}")


def check_nodes_to_score(install: Install) -> Iterator[Result]:
    name = "nodes-to-score"
    if install.scheduler_config is None:
        yield Result(name, SKIP, "no scheduler configuration")
        return
    nodes, _ = install.api.list(NODES)
    count = len(nodes)
    percentage = int(install.scheduler_config.get("percentageOfNodesToScore") or 0)
    if count <= SAMPLING_THRESHOLD or percentage >= 100:
        yield Result(name, PASS, f"{count} nodes: kube-scheduler offers every feasible node to the extender")
        return
    # kube-scheduler's adaptive default: 50 % less 1 % per 125 nodes, at least 5 %; never under 100 nodes.
    effective = percentage or max(5, 50 - count // 125)
    sampled = max(SAMPLING_THRESHOLD, math.ceil(count * effective / 100))
    yield Result(
        name,
        WARN,
        f"{count} nodes, percentageOfNodesToScore {percentage or 'unset'}: kube-scheduler stops after about "
        f"{sampled} feasible nodes ({effective} %); pods a controller owns are held to their replica nodes by the "
        "webhook, bare pods may miss their data",
        f"set percentageOfNodesToScore: 100 in {install.scheduler_source} if bare pods must find their data "
        "(it costs scheduling throughput)",
    )


# -- CRDs -------------------------------------------------------------------------------------


def check_crds(install: Install) -> Iterator[Result]:
    for plural in STORK_CRDS:
        yield _crd_result(
            install,
            f"{plural}.stork.libopenstorage.org",
            "v1alpha1",
            FAIL,
            "kubectl apply -k manifests/base (stork-py's CRDs)",
        )
    for plural in SNAPSHOT_CRDS:
        yield _crd_result(
            install,
            f"{plural}.snapshot.storage.k8s.io",
            "v1",
            WARN,
            "install the CSI snapshot CRDs and snapshot controller of your distribution; "
            "until then group snapshots and schedules wait for them",
        )


def _crd_result(install: Install, crd_name: str, version: str, missing: str, fix: str) -> Result:
    name = f"crd/{crd_name}"
    crd = install.get(CRDS, "", crd_name)
    if crd is None:
        return Result(name, missing, "not installed", fix)
    conditions = {c.get("type"): c for c in objects.items(crd, "status", "conditions")}
    established = conditions.get("Established", {})
    if established.get("status") != "True":
        return Result(name, FAIL, f"not established: {established.get('message') or 'no condition yet'}", fix)
    served = [v.get("name") for v in objects.items(crd, "spec", "versions") if v.get("served")]
    if version not in served:
        return Result(name, missing, f"{version} is not served (served: {', '.join(served) or 'none'})", fix)
    return Result(name, PASS, f"{version} served")


# -- the webhook --------------------------------------------------------------------------------


@dataclass
class Hook:
    kind: str  # mutating or validating
    config: dict[str, Any]
    hook: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.kind} {self.hook.get('name')}"


def _hooks(install: Install) -> list[Hook]:
    found = []
    for kind, resource in WEBHOOK_CONFIGS.items():
        config = install.get(resource, "", install.named("webhook"))
        for hook in objects.items(config, "webhooks"):
            found.append(Hook(kind, config, hook))  # type: ignore[arg-type]
    return found


def check_webhook_configuration(install: Install) -> Iterator[Result]:
    for kind, resource in WEBHOOK_CONFIGS.items():
        name = f"webhook-config/{kind}"
        config = install.get(resource, "", install.named("webhook"))
        if config is None:
            without_scheduler = kind == "mutating" and install.scheduler_config is None
            verdict = SKIP if without_scheduler else FAIL
            detail = f"no {resource.plural[:-1]} {install.named('webhook')}"
            yield Result(
                name,
                verdict,
                detail + (" (no stork scheduler either)" if without_scheduler else ""),
                "" if without_scheduler else "kubectl apply -k manifests/base",
            )
            continue
        hooks = objects.items(config, "webhooks")
        problems = [problem for hook in hooks for problem in _hook_problems(install, hook)]
        if problems:
            yield Result(name, FAIL, "; ".join(problems), "set them as in manifests/base/webhook-configurations.yaml")
        else:
            yield Result(
                name,
                PASS,
                f"{len(hooks)} webhook(s), failurePolicy {SHIPPED_FAILURE_POLICY}, "
                f"timeout {SHIPPED_TIMEOUT}s, {_client_text(hooks[0])}",
            )


def _hook_problems(source: Reader, hook: Mapping[str, Any]) -> list[str]:
    label = hook.get("name")
    problems = []
    if hook.get("failurePolicy", "Fail") != SHIPPED_FAILURE_POLICY:
        problems.append(
            f"{label}: failurePolicy {hook.get('failurePolicy', 'Fail')}: a webhook outage would block "
            "every matching request (shipped: Ignore, pods go on unchanged)"
        )
    if hook.get("timeoutSeconds", 10) != SHIPPED_TIMEOUT:
        problems.append(
            f"{label}: timeoutSeconds {hook.get('timeoutSeconds', 10)} (shipped: {SHIPPED_TIMEOUT}): "
            "a slow webhook delays every pod creation by that much"
        )
    service = objects.mapping(hook, "clientConfig", "service")
    if service and source.get(SERVICES, service.get("namespace", ""), service.get("name", "")) is None:
        problems.append(f"{label}: Service {service.get('namespace')}/{service.get('name')} does not exist")
    if not objects.mapping(hook, "clientConfig"):
        problems.append(f"{label}: no clientConfig")
    return problems


def _client_text(hook: Mapping[str, Any]) -> str:
    service = objects.mapping(hook, "clientConfig", "service")
    if service:
        return f"Service {service.get('namespace')}/{service.get('name')}:{service.get('port', 443)}"
    return f"URL {objects.mapping(hook, 'clientConfig').get('url')}"


def _hook_target(source: Reader, hook: Mapping[str, Any]) -> Target:
    """Where a webhook is called, without its path (which names the verb: the probes ask /readyz)."""
    client = objects.mapping(hook, "clientConfig")
    service = objects.mapping(client, "service")
    if service:
        namespace, name = service.get("namespace", ""), service.get("name", "")
        return service_target(source, namespace, name, int(service.get("port", 443)))
    return replace(url_target(source, str(client.get("url", ""))), path="")


def _distinct_targets(install: Install) -> dict[tuple[str, int], tuple[Target | None, str, list[Hook]]]:
    """Each place the webhooks point at: the target (or None and why not), and its hooks."""
    found: dict[tuple[str, int], tuple[Target | None, str, list[Hook]]] = {}
    for hook in _hooks(install):
        try:
            target: Target | None = _hook_target(install, hook.hook)
            why = ""
            key = (target.address, target.port)
        except Unreachable as err:
            target, why, key = None, str(err), (str(err), 0)
        found.setdefault(key, (target, why, []))[2].append(hook)
    return found


def check_webhook_serving(install: Install) -> Iterator[Result]:
    name = "webhook-serving"
    targets = _distinct_targets(install)
    if not targets:
        yield Result(name, SKIP, "no webhook configured")
        return
    for target, why, _hooks_here in targets.values():
        if target is None:
            yield Result(name, FAIL, why, install.pods_fix("webhook"))
            continue
        try:
            answer = https(target, any_certificate(), path="/readyz")
        except Unreachable as err:
            yield Result(name, FAIL, str(err), install.pods_fix("webhook"))
            continue
        if answer.status != 200:
            detail = answer.body.decode(errors="replace")[:300]
            yield Result(
                name,
                FAIL,
                f"{target.describe()} answers /readyz {answer.status}: {detail}",
                install.pods_fix("webhook"),
            )
        else:
            yield Result(name, PASS, f"answers at {target.describe()}")


def check_webhook_tls(install: Install) -> Iterator[Result]:
    name = "webhook-tls"
    if "webhook-serving" in install.failed:
        yield Result(name, SKIP, "the webhook does not answer (webhook-serving)")
        return
    secret_ca = _secret_ca(install)
    for target, _, hooks in _distinct_targets(install).values():
        assert target is not None  # webhook-serving passed, so every target resolved
        by_bundle: dict[str, list[Hook]] = {}
        for hook in hooks:
            by_bundle.setdefault(str(objects.mapping(hook.hook, "clientConfig").get("caBundle") or ""), []).append(hook)
        for bundle, same in by_bundle.items():
            yield _bundle_result(install, target, bundle, same, secret_ca)


def _bundle_result(install: Install, target: Target, bundle: str, hooks: list[Hook], secret_ca: str) -> Result:
    name = "webhook-tls"
    kinds = " and ".join(sorted({h.kind for h in hooks}))
    inject = (
        f"stork-certs inject --webhook-config {install.named('webhook')} --kind all --ca-file ca.crt, with ca.crt "
        f"from Secret {install.where('tls')} (or let stork-controller's certificate renewal publish it)"
    )
    if not bundle:
        return Result(name, FAIL, f"the {kinds} configuration has no caBundle", inject)
    try:
        ca_pem = base64.b64decode(bundle).decode()
        answer = https(target, verifying_context(ca_pem), path="/readyz")
    except (ValueError, UnicodeDecodeError) as err:
        return Result(name, FAIL, f"the {kinds} configuration's caBundle is not PEM: {err}", inject)
    except Unreachable as err:
        if secret_ca and _verifies(target, secret_ca):
            return Result(
                name,
                FAIL,
                f"the {kinds} caBundle does not verify the certificate the webhook serves "
                f"({err}); Secret {install.where('tls')}'s ca.crt does",
                inject,
            )
        return Result(
            name,
            FAIL,
            f"the {kinds} caBundle does not verify the certificate the webhook serves ({err})",
            f"restart the webhook so it serves Secret {install.where('tls')}'s certificate, then {inject}",
        )
    served = x509.load_der_x509_certificate(answer.certificate)
    left = served.not_valid_after_utc - dt.datetime.now(dt.UTC)
    expiry = f"served certificate valid until {served.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    if left < EXPIRY_WARNING:
        return Result(
            name,
            WARN,
            f"the {kinds} caBundle verifies it; {expiry}, in {_duration(left)}",
            "is stork-controller running? it renews the certificate at 2/3 of its life",
        )
    return Result(
        name, PASS, f"the {kinds} caBundle verifies the certificate served for {target.server_name}; {expiry}"
    )


def _verifies(target: Target, ca_pem: str) -> bool:
    try:
        https(target, verifying_context(ca_pem), path="/readyz")
        return True
    except (Unreachable, ValueError):
        return False


def _secret_ca(install: Install) -> str:
    try:
        secret = install.get(SECRETS, install.namespace, install.named("tls"))
    except ApiError:
        return ""
    data = str(objects.mapping(secret, "data").get("ca.crt") or "")
    return base64.b64decode(data).decode(errors="replace") if data else ""


def check_webhook_route(install: Install) -> Iterator[Result]:
    """A dry-run Rule the webhook must refuse: only its answer can refuse it, so a refusal shows
    the apiserver reaches the webhook (failurePolicy Ignore would hide a broken route)."""
    name = "webhook-route"
    if install.failed & {"webhook-serving", "webhook-tls", "crd/rules.stork.libopenstorage.org"}:
        yield Result(name, SKIP, "depends on webhook-serving, webhook-tls and the Rule CRD")
        return
    rule_hooks = [h for h in _hooks(install) if h.kind == "validating" and _covers_rules(h.hook)]
    if not rule_hooks:
        yield Result(name, SKIP, "no validating webhook for Rules")
        return
    namespace = _namespace_selected(install.api, rule_hooks[0].hook)
    if not namespace:
        yield Result(name, SKIP, "no namespace is selected by the validating webhook's namespaceSelector")
        return
    probe = {
        "apiVersion": "stork.libopenstorage.org/v1alpha1",
        "kind": "Rule",
        "metadata": {"name": "storkctl-check-probe", "namespace": namespace},
        # Valid for the CRD's schema, refused by the webhook: a background action needs ${WAIT_CMD}.
        "rules": [
            {
                "podSelector": {"app": "storkctl-check"},
                "actions": [{"type": "command", "value": "true", "background": True}],
            }
        ],
    }
    path = f"/apis/stork.libopenstorage.org/v1alpha1/namespaces/{namespace}/rules"
    try:
        install.api.request("POST", path, {"dryRun": "All"}, probe)
    except ApiError as err:
        if "denied the request" in err.body:
            yield Result(
                name, PASS, f"the apiserver calls the webhook (a dry-run Rule in {namespace} was refused by it)"
            )
        else:
            yield Result(
                name, FAIL, f"a dry-run Rule in {namespace}: the API answered {err.status}: {err.body[:200]}", ""
            )
        return
    yield Result(
        name,
        FAIL,
        f"the apiserver accepted a dry-run Rule in {namespace} that the webhook refuses: it did not reach the "
        "webhook (failurePolicy Ignore let the request through; kube-apiserver's log names the error)",
        "open the network path from the control plane to the webhook's Service and pods (firewall, NetworkPolicy, "
        "the apiserver's egress or proxy settings)",
    )


def _covers_rules(hook: Mapping[str, Any]) -> bool:
    return any("rules" in objects.items(rule, "resources") for rule in objects.items(hook, "rules"))


def _namespace_selected(kube: Kube, hook: Mapping[str, Any]) -> str:
    selector = objects.mapping(hook, "namespaceSelector")
    candidates, _ = kube.list(NAMESPACES)
    selected = sorted(
        objects.name(ns)
        for ns in candidates
        if objects.text(ns, "status", "phase") != "Terminating" and label_selector_matches(objects.labels(ns), selector)
    )
    return "default" if "default" in selected else (selected[0] if selected else "")


# -- the scheduler, its extender, the controller ---------------------------------------------


def check_scheduler_running(install: Install) -> Iterator[Result]:
    name = "scheduler"
    config = install.scheduler_config
    if config is None:
        yield Result(name, SKIP, "no scheduler configuration")
        return
    election = objects.mapping(config, "leaderElection")
    if election.get("leaderElect", True) is False:
        deployment = install.get(DEPLOYMENTS, install.namespace, install.named("scheduler"))
        ready = int(objects.mapping(deployment, "status").get("readyReplicas") or 0) if deployment else 0
        if deployment is None:
            yield Result(
                name,
                WARN,
                "leader election is off and there is no Deployment "
                f"{install.where('scheduler')}: cannot tell whether it runs",
            )
        elif ready:
            yield Result(name, PASS, f"Deployment {install.where('scheduler')}: {ready} ready")
        else:
            yield Result(
                name,
                FAIL,
                f"Deployment {install.where('scheduler')}: no ready replica",
                f"kubectl -n {install.namespace} describe deployment/{install.named('scheduler')}",
            )
        return
    namespace = str(election.get("resourceNamespace") or "kube-system")
    lease_name = str(election.get("resourceName") or "kube-scheduler")
    yield _lease_result(
        install,
        name,
        namespace,
        lease_name,
        "the stork scheduler",
        install.pods_fix("scheduler"),
    )


def check_controller(install: Install) -> Iterator[Result]:
    yield _lease_result(
        install,
        "controller",
        install.namespace,
        install.named("controller"),
        "stork-controller",
        install.pods_fix("controller"),
    )


def _lease_result(install: Install, name: str, namespace: str, lease_name: str, who: str, fix: str) -> Result:
    lease = install.get(LEASES, namespace, lease_name)
    if lease is None:
        return Result(
            name, FAIL, f"no Lease {namespace}/{lease_name}: {who} never ran (or runs without leader election)", fix
        )
    spec = objects.mapping(lease, "spec")
    holder = str(spec.get("holderIdentity") or "")
    renewed = parse_time(spec.get("renewTime") or spec.get("acquireTime"))
    duration = dt.timedelta(seconds=int(spec.get("leaseDurationSeconds") or 15))
    if not holder or renewed is None:
        return Result(name, FAIL, f"Lease {namespace}/{lease_name} is held by no one", fix)
    age = dt.datetime.now(dt.UTC) - renewed
    if age > duration:
        return Result(
            name,
            FAIL,
            f"Lease {namespace}/{lease_name}: {holder} last renewed it {_duration(age)} ago "
            f"(it expires after {_duration(duration)}): {who} is not running",
            fix,
        )
    return Result(
        name, PASS, f"{who} leads: Lease {namespace}/{lease_name} held by {holder}, renewed {_duration(age)} ago"
    )


def check_extender(install: Install) -> Iterator[Result]:
    name = "extender"
    config = install.scheduler_config
    extenders = [e for e in objects.items(config, "extenders") if e.get("filterVerb")] if config else []
    if not extenders:
        yield Result(
            name,
            SKIP if config is None else FAIL,
            "no extender with a filterVerb in the scheduler configuration",
            "" if config is None else "add the extender as in manifests/scheduler/scheduler.yaml",
        )
        return
    extender = extenders[0]
    url = str(extender.get("urlPrefix", ""))
    fix = install.pods_fix("extender")
    try:
        target = url_target(install, url)
        context, trust = _extender_context(install, extender)
        body = orjson.dumps(
            {"Pod": {"metadata": {"name": "storkctl-check", "namespace": "default"}, "spec": {}}, "NodeNames": []}
        )
        answer = https(target, context, "POST", "/" + str(extender["filterVerb"]), body)
    except Unreachable as err:
        yield Result(name, FAIL, f"{url}: {err}", fix)
        return
    if answer.status != 200:
        yield Result(name, FAIL, f"{url}: {extender['filterVerb']} answered {answer.status}", fix)
        return
    yield Result(name, PASS, f"{url} answers {extender['filterVerb']} (TLS verified with {trust})")


def _extender_context(install: Install, extender: Mapping[str, Any]) -> tuple[Any, str]:
    """The TLS the scheduler uses: its caData, else the CA file it mounts (Secret NAME-tls's
    ca.crt in the shipped Deployment), or none when it does not verify."""
    tls = objects.mapping(extender, "tlsConfig")
    if tls.get("insecure"):
        return any_certificate(), "nothing: tlsConfig.insecure"
    if tls.get("caData"):
        return verifying_context(base64.b64decode(str(tls["caData"])).decode()), "the configured caData"
    secret_ca = _secret_ca(install)
    if tls.get("caFile") and secret_ca:
        return verifying_context(secret_ca), f"Secret {install.where('tls')}'s ca.crt, the caFile's source"
    if tls.get("caFile"):
        try:
            with open(str(tls["caFile"]), encoding="utf-8") as source:
                return verifying_context(source.read()), str(tls["caFile"])
        except OSError as err:
            raise Unreachable(
                f"cannot read caFile {tls['caFile']} here, nor Secret {install.where('tls')}: {err}"
            ) from err
    return ssl.create_default_context(), "the system's CAs"


# -- the storage API --------------------------------------------------------------------------


def check_storage(install: Install) -> Iterator[Result]:
    name = "storage"
    args = install.settings
    try:
        installed_settings(install.api, args, install.namespace, install.named("config"))
    except Refused as err:
        yield Result(name, FAIL, str(err), "kubectl apply -k manifests/overlays/<driver>, or pass --driver")
        return
    cluster = ClusterState(install.api)
    try:
        driver = make_driver(args.driver, cluster, cli.driver_options(args))
    except ValueError as err:
        yield Result(name, FAIL, str(err), "set STORK_DRIVER in the install's ConfigMap to a known driver")
        return
    cluster.start()
    driver.start()
    try:
        yield _storage_result(install, driver, cluster, args)
    finally:
        driver.stop()
        cluster.stop()


def _storage_result(install: Install, driver: Any, cluster: ClusterState, args: argparse.Namespace) -> Result:
    name = "storage"
    if not cluster.wait_synced(args.sync_timeout):
        waiting = {str(k): s for k, s in cluster.kind_states().items() if s != "synced"}
        return Result(
            name,
            FAIL,
            f"{args.driver}: the cluster's objects did not load in {args.sync_timeout:.0f}s: {waiting}",
            "check the permissions this command runs with",
        )
    if not driver.wait_ready(args.sync_timeout):
        error = getattr(driver, "_last_error", "") or "no answer"
        return Result(
            name,
            FAIL,
            f"{args.driver}: the storage API did not answer in {args.sync_timeout:.0f}s: {error}",
            "check the storage API's endpoint and credentials in the install's ConfigMap and Secret; "
            "from outside the cluster pass --px-endpoint or --linstor-controllers (a port-forward)",
        )
    storage = driver.nodes()
    index = driver.index()
    k8s_nodes = cluster.store(NODES).list()
    matched = {m.storage_id for m in (index.match(n) for n in k8s_nodes) if m is not None}
    unmatched = sorted(n.storage_id for n in storage if n.storage_id not in matched)
    if not storage:
        return Result(
            name,
            FAIL,
            f"{args.driver}: the driver sees no storage nodes",
            "check that the storage system runs and that the driver's flags name it",
        )
    without = len(k8s_nodes) - len(matched)
    if unmatched:
        shown = ", ".join(unmatched[:5]) + (", ..." if len(unmatched) > 5 else "")
        return Result(
            name,
            WARN,
            f"{args.driver}: {len(unmatched)} of {len(storage)} storage nodes match no "
            f"Kubernetes node ({shown}): pods cannot be placed next to their replicas there",
            "storage nodes are matched by node name, hostname or IP: make one of them agree",
        )
    return Result(
        name,
        PASS,
        f"{args.driver}: {len(storage)} storage nodes, each matched to a Kubernetes node"
        + (f"; {without} Kubernetes nodes hold no storage" if without else ""),
    )


# -- permissions ------------------------------------------------------------------------------


def check_rbac(install: Install) -> Iterator[Result]:
    args = install.settings
    driver = getattr(args, "driver", None) or ""
    needed = permissions.needed(
        install.namespace,
        install.prefix,
        driver,
        getattr(args, "longhorn_namespace", "longhorn-system"),
        install.scheduler_config is not None,
    )
    asks = [(account, p) for account, perms in needed.items() for p in perms]
    with ThreadPoolExecutor(max_workers=8) as pool:
        allowed = list(pool.map(lambda ask: _allowed(install, *ask), asks))
    for account in needed:
        missing = [p.describe() for (who, p), ok in zip(asks, allowed, strict=True) if who == account and not ok]
        name = f"rbac/{account}"
        if missing:
            yield Result(
                name,
                FAIL,
                f"service account {install.namespace}/{account} may not: " + "; ".join(missing),
                f"kubectl apply -k manifests/overlays/{driver or '<driver>'} (its Roles and ClusterRoles "
                "grant exactly these)",
            )
        else:
            yield Result(name, PASS, f"{len(needed[account])} permissions, each allowed")


def _allowed(install: Install, account: str, permission: permissions.Permission) -> bool:
    answer = install.api.request("POST", REVIEWS, body=permissions.review(install.namespace, account, permission))
    return bool(objects.mapping(answer, "status").get("allowed"))


# -- helpers ----------------------------------------------------------------------------------


def _duration(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if abs(seconds) >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


CHECKS: list[Callable[[Install], Iterator[Result]]] = [
    check_server,
    check_scheduler_config,
    check_nodes_to_score,
    check_crds,
    check_webhook_configuration,
    check_webhook_serving,
    check_webhook_tls,
    check_webhook_route,
    check_scheduler_running,
    check_extender,
    check_controller,
    check_storage,
    check_rbac,
]
