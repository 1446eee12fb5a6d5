"""The Helm chart: `helm lint`, `helm template` for the default values and variations, every
object valid against its official schema (tests/deploy/schemas.py says which), and what the
programs need wired together: their settings load from the rendered environment, the policy
file is where the worker looks, the Trigger and SinkBinding reach the function."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.chart import CHART, KUBE, env_of, one, render, run_helm
from tests.deploy.schemas import ROOT, NoSchema, validate
from vsphere_preemption.domain.events import TANZU_SOURCES_TYPE
from vsphere_preemption.domain.policy import policy_from_mapping
from vsphere_preemption.settings import FunctionSettings, WorkerSettings, load

VALUES = Path(__file__).parent / "values"
EVERYTHING = VALUES / "everything.yaml"
TWO_VCENTERS = VALUES / "two-vcenters.yaml"
DASHBOARD = VALUES / "dashboard.json"
CHART_DASHBOARD = CHART / "dashboards" / "vsphere-preemption.json"

VARIATIONS: dict[str, tuple[str, list[str]]] = {
    "defaults": ("vsphere-preemption", []),
    "plain manifests": ("vsphere-preemption", ["--values", "deploy/manifests.values.yaml"]),
    "everything": (
        "vsphere-preemption",
        ["--values", str(EVERYTHING), "--set-file", f"dashboard.json={DASHBOARD}"],
    ),
    "worker only": (
        "vsphere-preemption",
        [
            "--set",
            "function.enabled=false",
            "--set",
            "vcenter.caBundle.configMapName=vcenter-ca",
            "--set",
            "metrics.enabled=true",
            "--set",
            "metrics.serviceMonitor.enabled=false",
        ],
    ),
    "another release, no SinkBinding": ("prod", ["--set", "sinkBinding.enabled=false"]),
    "temporal over mTLS, api key, token": (
        "vsphere-preemption",
        [
            "--set",
            "temporal.tls.caSecret=temporal-ca,temporal.tls.clientSecret=temporal-client",
            "--set",
            "temporal.apiKeySecret=temporal-api-key,function.tokenSecret=function-token",
            "--set",
            "temporal.tls.serverName=ns.tmprl.cloud",
            "--set",
            "worker.sinkCaBundle.secretName=sink-ca",
        ],
    ),
    "two vCenters": ("vsphere-preemption", ["--values", str(TWO_VCENTERS)]),
}
SAFETY = {"ServiceAccount", "PodDisruptionBudget"}
KINDS = {
    "defaults": {"ConfigMap", "Deployment", "Service", "Trigger", "SinkBinding", *SAFETY},
    # The plain manifests use the namespaces' default ServiceAccount.
    "plain manifests": {
        "ConfigMap",
        "Deployment",
        "Service",
        "Trigger",
        "SinkBinding",
        "PodDisruptionBudget",
    },
    "everything": {
        *SAFETY,
        "ConfigMap",
        "Deployment",
        "Service",
        "Trigger",
        "SinkBinding",
        "Secret",
        "ServiceMonitor",
    },
    "worker only": {"ConfigMap", "Deployment", "Service", *SAFETY},
    "another release, no SinkBinding": {"ConfigMap", "Deployment", "Service", "Trigger", *SAFETY},
    "two vCenters": {
        "ConfigMap",
        "Deployment",
        "Service",
        "Trigger",
        "SinkBinding",
        "ServiceMonitor",
        *SAFETY,
    },
    "temporal over mTLS, api key, token": {
        *SAFETY,
        "ConfigMap",
        "Deployment",
        "Service",
        "Trigger",
        "SinkBinding",
    },
}
# The oldest Kubernetes the chart allows (Chart.yaml's kubeVersion) and the newest with schemas.
KUBE_VERSIONS = ["1.27", "1.37"]


def rendered(name: str) -> list[dict[str, Any]]:
    release, args = VARIATIONS[name]
    return render(*args, release=release)


def knative_service(objects: list[dict[str, Any]]) -> Any:
    return one(objects, "Service", "serving.knative.dev/v1")


def worker(objects: list[dict[str, Any]]) -> Any:
    return one(objects, "Deployment")


@pytest.fixture(scope="module")
def everything() -> list[dict[str, Any]]:
    return rendered("everything")


@pytest.fixture(scope="module")
def defaults() -> list[dict[str, Any]]:
    return rendered("defaults")


@pytest.mark.parametrize("name", VARIATIONS)
def test_helm_lint_passes_strictly(name: str) -> None:
    _, args = VARIATIONS[name]
    proc = run_helm("lint", str(CHART), "--strict", "--kube-version", KUBE, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
@pytest.mark.parametrize("name", VARIATIONS)
def test_every_object_is_valid_against_its_official_schema(name: str, kube: str) -> None:
    objects = rendered(name)
    assert {o["kind"] for o in objects} == KINDS[name]
    for obj in objects:
        validate(obj, kube)


CONTAINER = "spec.template.spec.containers.0"
NO_SECRET = ["--set", "vcenter.existingSecret="]
DASHBOARD_ON = ["--set", "dashboard.enabled=true"]
QUEUE_1 = "vsphere-preemption-vcsa-1"  # the first vCenter's queue in two-vcenters.yaml


def _mutated(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    *parents, last = path.split(".")
    node: Any = out
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    node[int(last) if last.isdigit() else last] = value
    return out


@pytest.mark.parametrize(
    ("api_version", "kind", "path", "value"),
    [
        ("apps/v1", "Deployment", "spec.template.spec.containers.0.imagePullPolicyy", "Always"),
        ("apps/v1", "Deployment", "spec.replicas", "two"),
        ("v1", "ConfigMap", "data.policy\\.yaml", 3),
        ("serving.knative.dev/v1", "Service", f"{CONTAINER}.argz", ["x"]),
        ("serving.knative.dev/v1", "Service", f"{CONTAINER}.ports.0.containerPort", "8080"),
        ("serving.knative.dev/v1", "Service", "metadata.labels.workflow", 1),
        ("eventing.knative.dev/v1", "Trigger", "spec.subscriber.reff", {}),
        ("eventing.knative.dev/v1", "Trigger", "spec.delivery.retry", "5"),
        ("sources.knative.dev/v1", "SinkBinding", "spec.subject.selectr", {}),
        ("sources.knative.dev/v1", "SinkBinding", "metadata.nam", "x"),
        ("monitoring.coreos.com/v1", "ServiceMonitor", "spec.endpoints.0.portt", "metrics"),
    ],
)  # fmt: skip
def test_the_validators_reject_what_the_api_server_would(
    everything: list[dict[str, Any]], api_version: str, kind: str, path: str, value: Any
) -> None:
    (obj,) = [
        o
        for o in everything
        if (o["apiVersion"], o["kind"]) == (api_version, kind)
        and not o["metadata"]["name"].endswith(("-dashboard", "-function-metrics"))
        and not (kind == "ServiceMonitor" and o["metadata"]["name"].endswith("-function"))
    ]
    validate(obj, KUBE_VERSIONS[-1])  # the object as rendered passes...
    if "\\." in path:  # a key with a dot (data's file name)
        bad = copy.deepcopy(obj)
        bad["data"]["policy.yaml"] = value
    else:
        bad = _mutated(obj, path, value)
    with pytest.raises(jsonschema.ValidationError):  # ...and the one change does not
        validate(bad, KUBE_VERSIONS[-1])


def test_a_kind_without_an_official_schema_fails_loudly() -> None:
    obj = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    with pytest.raises(NoSchema):
        validate(obj, KUBE_VERSIONS[-1])


@pytest.mark.parametrize("name", ["defaults", "everything"])
def test_the_function_gets_every_setting_and_they_load(name: str) -> None:
    service = knative_service(rendered(name))
    (container,) = service["spec"]["template"]["spec"]["containers"]
    env = env_of(container)
    aliases = set(FunctionSettings.variables())
    # All settings but those the platform injects (PORT by Knative, K_SINK by the SinkBinding).
    assert set(env) == aliases - {"PORT", "K_SINK"}
    settings = load(FunctionSettings, {**env, "PORT": "8080"})
    assert container["args"] == ["function"]
    if name == "everything":
        assert settings.alarm_names == (
            "cluster-cpu-above-80", "host-memory-above-90", "name, with a comma",
        )  # fmt: skip
        assert settings.workflow_id_mode.value == "alarm" and settings.debug
        assert settings.temporal_taskqueue == "preempt-q" and settings.preemption_tag == "spot"
        assert settings.vcenter_taskqueues == {
            "vc.example.com": "preempt-q", "vc-2.example.com": "preempt-q-2",
        }  # fmt: skip
        assert container["image"] == "registry.example.com/vsphere-preemption:0.1.0-rc1"
    else:
        assert settings.alarm_names == ("cluster-cpu-above-80",)
        assert settings.vcenter_taskqueues == {}  # one vCenter
        assert container["image"] == "vsphere-preemption:0.1.0"  # the chart's appVersion


def _policy_file(objects: list[dict[str, Any]], tmp_path: Path) -> tuple[dict[str, str], Any]:
    """The worker's env with PREEMPTION_POLICY_FILE pointing at a copy of what the pod would
    find at that path (the ConfigMap mounted there), and the parsed policy."""
    deployment = worker(objects)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = env_of(container)
    path = Path(env["PREEMPTION_POLICY_FILE"])
    (mount,) = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == path.parent]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    config_map = [
        o for o in objects if o["kind"] == "ConfigMap" and "policy" in o["metadata"]["name"]
    ]
    assert [c["metadata"]["name"] for c in config_map] == [volume["configMap"]["name"]]
    assert config_map[0]["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    text = config_map[0]["data"][path.name]
    (tmp_path / path.name).write_text(text)
    return {**env, "PREEMPTION_POLICY_FILE": str(tmp_path / path.name)}, yaml.safe_load(text)


@pytest.mark.parametrize("name", ["defaults", "everything", "worker only"])
def test_the_worker_loads_its_settings_and_the_mounted_policy(name: str, tmp_path: Path) -> None:
    objects = rendered(name)
    env, policy = _policy_file(objects, tmp_path)
    aliases = {f.alias for f in WorkerSettings.model_fields.values() if f.alias}
    # METRICS_ADDRESS is read by the worker's metrics endpoint (another piece of work).
    assert set(env) <= aliases | {"METRICS_ADDRESS"}
    assert {"TEMPORAL_URL", "VCENTER_URL", "VCENTER_SECRET_PATH", "PREEMPTION_POLICY_FILE"} <= set(
        env
    )
    # The file alone says how many VMs and where: no variable overrides it.
    assert "PREEMPTION_MAX_VMS" not in env and "PREEMPTION_SCOPE" not in env
    settings = load(WorkerSettings, env)
    assert settings.policy == policy_from_mapping(policy)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    if name == "everything":
        expected = yaml.safe_load(EVERYTHING.read_text())["policy"]
        assert policy == expected
        assert settings.policy.targets.cpu == 70 and settings.policy.resume.enabled
        assert settings.cooldown.total_seconds() == 90 and settings.max_concurrency == 8
        assert settings.temporal_namespace == "preemption" and settings.debug
    else:
        assert policy == values["policy"]
    assert worker(objects)["spec"]["template"]["spec"]["containers"][0]["args"] == ["worker"]


@pytest.mark.parametrize(("name", "kind"), [("everything", "secret"), ("worker only", "configMap")])
def test_the_ca_bundle_is_mounted_where_the_worker_reads_it(name: str, kind: str) -> None:
    pod = worker(rendered(name))["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    bundle = Path(env_of(container)["VCENTER_CA_BUNDLE"])
    (mount,) = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == bundle.parent]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert kind in volume
    assert bundle.name == ("ca.pem" if name == "everything" else "ca.crt")


def test_without_a_ca_bundle_nothing_is_mounted_for_it(defaults: list[dict[str, Any]]) -> None:
    pod = worker(defaults)["spec"]["template"]["spec"]
    assert "VCENTER_CA_BUNDLE" not in env_of(pod["containers"][0])
    assert {v["name"] for v in pod["volumes"]} == {"vsphere-credentials", "policy", "tmp"}


def _credentials(objects: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    pod = worker(objects)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    path = env_of(container)["VCENTER_SECRET_PATH"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == path]
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    return volume["secret"]["secretName"], container


def test_by_default_the_worker_mounts_an_existing_secret(defaults: list[dict[str, Any]]) -> None:
    name, _ = _credentials(defaults)
    assert name == "vsphere-credentials"
    assert not [o for o in defaults if o["kind"] == "Secret"]


def test_given_credentials_the_chart_creates_the_secret(everything: list[dict[str, Any]]) -> None:
    name, container = _credentials(everything)
    secret = one(everything, "Secret")
    assert secret["metadata"]["name"] == name and secret["type"] == "kubernetes.io/basic-auth"
    assert secret["stringData"] == {
        "username": "administrator@vsphere.local",
        "password": "s3cr3t: with 'quotes'",
    }
    assert secret["metadata"]["namespace"] == worker(everything)["metadata"]["namespace"]
    # Nothing secret in the environment.
    assert not [v for v in env_of(container).values() if "s3cr3t" in v]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (NO_SECRET, "set existingSecret, or username and password"),
        ([*NO_SECRET, "--set", "vcenter.username=u"], "username and password"),
        ([*DASHBOARD_ON, "--set-string", "dashboard.json=not json"], "not valid JSON"),
        (["--values", str(TWO_VCENTERS), "--set", "function.vcenterTaskQueues.a=b"],
         "leave function.vcenterTaskQueues empty"),
        (["--values", str(TWO_VCENTERS), "--set", "vcenters[1].name=vcsa-1"],
         'the name "vcsa-1" is given twice'),
        (["--values", str(TWO_VCENTERS), "--set", f"vcenters[1].taskQueue={QUEUE_1}"],
         "is given twice (each vCenter needs its own)"),
    ],
)  # fmt: skip
def test_the_chart_refuses_to_render_what_cannot_work(args: list[str], message: str) -> None:
    proc = run_helm("template", "x", str(CHART), "--kube-version", KUBE, *args)
    assert proc.returncode != 0
    assert message in proc.stderr


def _containers(objects: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(pod spec, container) of every container the chart runs."""
    pods = [o["spec"]["template"]["spec"] for o in objects if o["kind"] in {"Deployment"}]
    pods += [
        o["spec"]["template"]["spec"]
        for o in objects
        if o["apiVersion"] == "serving.knative.dev/v1"
    ]
    return [(pod, c) for pod in pods for c in [*pod["containers"], *pod.get("initContainers", [])]]


@pytest.mark.parametrize("name", VARIATIONS)
def test_every_container_runs_with_the_secure_defaults(name: str) -> None:
    objects = rendered(name)
    containers = _containers(objects)
    assert len(containers) == {"worker only": 1, "two vCenters": 3}.get(name, 2)
    for pod, container in containers:
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc.get("privileged", False) is False
        seccomp = sc.get("seccompProfile") or pod.get("securityContext", {}).get("seccompProfile")
        assert seccomp == {"type": "RuntimeDefault"}
        for bound in ("requests", "limits"):
            assert set(container["resources"][bound]) >= {"cpu", "memory"}
    for deployment in [o for o in objects if o["kind"] == "Deployment"]:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))


@pytest.mark.parametrize("name", ["defaults", "everything", "another release, no SinkBinding"])
def test_the_trigger_and_the_sinkbinding_reach_the_function(name: str) -> None:
    objects = rendered(name)
    service = knative_service(objects)
    namespace = service["metadata"]["namespace"]
    trigger = one(objects, "Trigger")
    # The fields the function needs, exactly (the Trigger's spec is open in its CRD's schema).
    assert set(trigger["spec"]) == {"broker", "filter", "delivery", "subscriber"}
    assert trigger["spec"]["subscriber"] == {
        "ref": {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "name": service["metadata"]["name"],
        }
    }
    assert trigger["metadata"]["namespace"] == namespace
    assert trigger["spec"]["broker"] == "default"
    attributes = trigger["spec"]["filter"]["attributes"]
    if name == "everything":
        assert attributes == {
            "type": "com.vmware.event.router/event",
            "subject": "AlarmStatusChangedEvent",
        }
    else:
        assert attributes == {"type": TANZU_SOURCES_TYPE}
    assert trigger["spec"]["delivery"] == {
        "retry": 5,
        "backoffPolicy": "exponential",
        "backoffDelay": "PT1S",
    }
    bindings = [o for o in objects if o["kind"] == "SinkBinding"]
    if name == "another release, no SinkBinding":
        assert not bindings
        assert service["metadata"]["name"] == "prod-vsphere-preemption-function"
        return
    (binding,) = bindings
    assert set(binding["spec"]) == {"subject", "sink"}
    subject = binding["spec"]["subject"]
    assert set(subject) == {"apiVersion", "kind", "selector"}
    assert (subject["apiVersion"], subject["kind"]) == (service["apiVersion"], service["kind"])
    assert set(subject["selector"]) == {"matchLabels"}
    assert subject["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert binding["metadata"]["namespace"] == namespace
    broker = "replies" if name == "everything" else "default"
    assert binding["spec"]["sink"] == {
        "ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": broker}
    }


def test_the_function_scales_as_told(
    defaults: list[dict[str, Any]], everything: list[dict[str, Any]]
) -> None:
    for objects, bounds in ((defaults, ("1", "1")), (everything, ("0", "3"))):
        notes = knative_service(objects)["spec"]["template"]["metadata"]["annotations"]
        assert (
            notes["autoscaling.knative.dev/minScale"],
            notes["autoscaling.knative.dev/maxScale"],
        ) == bounds
    (container,) = knative_service(defaults)["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/readiness"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/liveness"


def test_metrics_are_off_by_default(defaults: list[dict[str, Any]]) -> None:
    container = worker(defaults)["spec"]["template"]["spec"]["containers"][0]
    assert "METRICS_ADDRESS" not in env_of(container)
    assert container["ports"] == [{"name": "health", "containerPort": 8081}]
    assert [o["apiVersion"] for o in defaults if o["kind"] == "Service"] == [
        "serving.knative.dev/v1"
    ]


@pytest.mark.parametrize("name", ["everything", "worker only"])
def test_metrics_when_enabled_are_served_and_scraped(name: str) -> None:
    objects = rendered(name)
    deployment = worker(objects)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert env_of(container)["METRICS_ADDRESS"] == ":9090"
    assert {"name": "metrics", "containerPort": 9090} in container["ports"]
    (service,) = [
        o
        for o in objects
        if o["apiVersion"] == "v1" and o["kind"] == "Service"
        and o["metadata"]["name"].endswith("-worker-metrics")
    ]  # fmt: skip
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]
    monitors = [o for o in objects if o["kind"] == "ServiceMonitor"]
    if name == "worker only":  # metrics.serviceMonitor.enabled=false
        assert not monitors
        return
    (monitor,) = [m for m in monitors if m["metadata"]["name"].endswith("-worker")]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert {k: endpoint[k] for k in ("port", "path", "interval")} == {
        "port": "metrics", "path": "/metrics", "interval": "15s",
    }  # fmt: skip


def test_the_dashboard_is_a_configmap_for_grafana(everything: list[dict[str, Any]]) -> None:
    (dashboard,) = [o for o in everything if o["metadata"]["name"].endswith("-dashboard")]
    assert dashboard["kind"] == "ConfigMap"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    (text,) = dashboard["data"].values()
    assert json.loads(text) == json.loads(DASHBOARD.read_text())


def test_a_changed_policy_rolls_the_worker() -> None:
    def checksum(*args: str) -> str:
        notes = worker(render(*args))["spec"]["template"]["metadata"]["annotations"]
        value: str = notes["checksum/policy"]
        return value

    assert checksum() == checksum()
    assert checksum() != checksum("--set", "policy.maxVMs=3")


def test_the_plain_manifests_are_the_charts_rendering(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(ROOT / "scripts" / "render-manifests"), str(tmp_path)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["dashboard.json", "function.yaml", "sinkbinding.yaml", "worker.yaml"]
    # The dashboard for a manual import: the chart's own, byte for byte.
    assert (tmp_path / "dashboard.json").read_bytes() == CHART_DASHBOARD.read_bytes()
    names.remove("dashboard.json")
    for file in names:
        committed = (ROOT / "deploy" / file).read_text()
        assert committed == (tmp_path / file).read_text(), (
            f"deploy/{file}: run scripts/render-manifests"
        )
    # Together they are the chart's rendering with the same values, nothing left out.
    plain = [o for f in names for o in yaml.safe_load_all((ROOT / "deploy" / f).read_text()) if o]
    assert sorted(map(json.dumps, plain)) == sorted(map(json.dumps, rendered("plain manifests")))


def test_temporal_tls_files_and_the_token_are_mounted_where_the_programs_read_them(
    tmp_path: Path,
) -> None:
    """Each file variable points into a read-only mount of the Secret meant for it, and the
    programs' settings load from the rendered environment (the mounts' files faked here)."""
    objects = rendered("temporal over mTLS, api key, token")
    expected = {
        "TEMPORAL_TLS_CA": ("temporal-ca", "ca.crt"),
        "TEMPORAL_TLS_CERT": ("temporal-client", "tls.crt"),
        "TEMPORAL_TLS_KEY": ("temporal-client", "tls.key"),
        "TEMPORAL_API_KEY_FILE": ("temporal-api-key", "api-key"),
    }
    pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    for program, pod, more in (
        ("function", knative_service(objects)["spec"]["template"]["spec"],
         {"FUNCTION_TOKEN_FILE": ("function-token", "token")}),
        ("worker", worker(objects)["spec"]["template"]["spec"],
         {"SINK_CA_BUNDLE": ("sink-ca", "ca.crt")}),
    ):  # fmt: skip
        (container,) = pod["containers"]
        env = env_of(container)
        local = dict(env)
        for variable, (secret, key) in (expected | more).items():
            path = Path(env[variable])
            assert path.name == key, variable
            (mount,) = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == path.parent]
            assert mount["readOnly"] is True
            (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
            assert volume["secret"]["secretName"] == secret, variable
            fake = tmp_path / program / variable
            fake.parent.mkdir(exist_ok=True)
            fake.write_bytes(b"k3y\n" if variable.endswith("_FILE") else pem)
            local[variable] = str(fake)
        assert env["TEMPORAL_TLS_SERVER_NAME"] == "ns.tmprl.cloud"
        model = FunctionSettings if program == "function" else WorkerSettings
        local.pop("PREEMPTION_POLICY_FILE", None)  # the ConfigMap's: tested above
        settings: Any = load(model, {**local, "PORT": "8080"})
        security = settings.temporal_security
        assert (security.tls, security.ca, security.api_key) == (True, pem, "k3y")
        if program == "function":
            assert settings.bearer_token == b"k3y"
        else:
            assert settings.sink_ca_bundle == Path(local["SINK_CA_BUNDLE"])
