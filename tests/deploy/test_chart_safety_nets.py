"""The chart's safety nets (issue 18): values.schema.json refusing bad values before anything
renders, NOTES.txt, the ServiceAccount, the PodDisruptionBudgets, the worker's probes on its
health endpoint, both programs' metrics scraped with the labels the dashboard filters by, the
dashboard shipped inside the chart, several vCenters in one release, and plain `helm template`.
Every object rendered here is also validated against its official schema in test_chart.py
(the two-vCenter rendering among them)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.chart import CHART, KUBE, env_of, render, run_helm
from tests.deploy.schemas import ROOT, validate
from vsphere_preemption.settings import FunctionSettings, WorkerSettings, load

VALUES = Path(__file__).parent / "values"
TWO_VCENTERS = VALUES / "two-vcenters.yaml"
CHART_DASHBOARD = CHART / "dashboards" / "vsphere-preemption.json"


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[dict[str, Any]], kind: str, suffix: str) -> dict[str, Any]:
    (found,) = [o for o in of_kind(objects, kind) if o["metadata"]["name"].endswith(suffix)]
    return found


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


@pytest.fixture(scope="module")
def two() -> list[dict[str, Any]]:
    return render("--values", str(TWO_VCENTERS))


@pytest.fixture(scope="module")
def defaults() -> list[dict[str, Any]]:
    return render("--set", "metrics.enabled=true", "--set", "dashboard.enabled=true")


# -- values.schema.json -------------------------------------------------------------------

BAD_VALUES = [
    (["--set", "worker.replicas=two"], "/worker/replicas"),
    (["--set", "policy.maxVMs=-5"], "/policy/maxVMs"),
    (["--set", "function.workflowIdMode=bogus"], "/function/workflowIdMode"),
    (["--set", "workflowIdMode=bogus"], "workflowIdMode"),  # a misplaced key is refused too
    (["--set", "worker.cooldown=soon"], "/worker/cooldown"),
    (["--set", "logFormat=xml"], "/logFormat"),
    (["--set", "temporal.url=no-port"], "/temporal/url"),
    (["--set", "worker.maxConcurrency=0"], "/worker/maxConcurrency"),
    (["--set", "policy.scope=cluster"], "/policy/scope"),
    (["--set", "worker.health.port=70000"], "/worker/health/port"),
    (["--set", "vcenters[0].name=vcsa-1"], "/vcenters/0"),  # no url nor secretName
    (["--set", "vcenters[0].name=VCSA_1,vcenters[0].url=https://a/sdk,vcenters[0].secretName=s"],
     "/vcenters/0/name"),
    (["--set", "image.pullPolicy=Sometimes"], "/image/pullPolicy"),
    (["--set", "metrics.enabled=yes"], "/metrics/enabled"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "where"), BAD_VALUES)
@pytest.mark.parametrize("command", ["lint", "template"])
def test_the_schema_refuses_bad_values(command: str, args: list[str], where: str) -> None:
    extra = ["--strict"] if command == "lint" else []
    target = [str(CHART)] if command == "lint" else ["x", str(CHART)]
    proc = run_helm(command, *target, *extra, "--kube-version", KUBE, *args)
    assert proc.returncode != 0, proc.stdout
    out = proc.stdout + proc.stderr
    assert "don't meet the specifications of the schema" in out, out
    assert where in out, out


def test_every_values_file_of_ours_meets_the_schema() -> None:
    for values in [*VALUES.glob("*.yaml"), ROOT / "deploy" / "manifests.values.yaml"]:
        proc = run_helm("lint", str(CHART), "--strict", "--kube-version", KUBE, "-f", str(values))
        assert proc.returncode == 0, f"{values}: {proc.stdout}{proc.stderr}"


def test_every_value_of_values_yaml_is_in_the_schema() -> None:
    """The schema refuses unknown keys, so a value added to values.yaml without it would make
    the chart's own defaults fail: the two are kept in step."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: Any, schema_node: dict[str, Any], path: str) -> None:
        if not isinstance(node, dict) or schema_node.get("additionalProperties") is not False:
            return
        for key, value in node.items():
            assert key in schema_node["properties"], f"{path}.{key} is not in the schema"
            walk(value, schema_node["properties"][key], f"{path}.{key}")

    walk(values, schema, "")


# -- plain helm template, Chart.yaml ------------------------------------------------------


def test_plain_helm_template_renders_with_no_flags() -> None:
    """As the released helm binaries do (they assume the Kubernetes of their client-go);
    scripts/setup builds ours the same way."""
    proc = run_helm("template", str(CHART))
    assert proc.returncode == 0, proc.stderr
    kinds = {o["kind"] for o in yaml.safe_load_all(proc.stdout) if o}
    assert {"Deployment", "Service", "Trigger"} <= kinds


def test_the_chart_points_at_this_project_not_the_go_original() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["home"] and chart["sources"]
    for url in [chart["home"], *chart["sources"]]:
        assert url.startswith("https://") and "embano1" not in url
    assert (CHART / "values.schema.json").is_file() and (
        CHART / "templates" / "NOTES.txt"
    ).is_file()


# -- NOTES.txt ----------------------------------------------------------------------------


def notes(tmp_path: Path, *args: str) -> str:
    """NOTES.txt as `helm install` prints it: `helm template` leaves it out, so a copy of the
    chart renders it through `tpl` in a template of its own (the same engine, values and
    helpers)."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "notes.txt")
    probe = 'notes: {{ tpl (.Files.Get "notes.txt") . | toJson }}\n'
    (chart / "templates" / "zz-notes.yaml").write_text(probe)
    proc = run_helm("template", "vsphere-preemption", str(chart), "--kube-version", KUBE,
                    "--show-only", "templates/zz-notes.yaml", *args)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    text: str = yaml.safe_load(proc.stdout)["notes"]
    return text


def test_notes_name_the_workers_and_the_function(tmp_path: Path) -> None:
    text = notes(tmp_path)
    assert "Deployment vsphere-preemption-worker: vCenter https://vcenter.example.com/sdk" in text
    assert "task queue vsphere-preemption" in text
    assert "Knative Service vsphere-preemption-function" in text
    assert "<no value>" not in text and "%!" not in text


def test_notes_with_two_vcenters_name_each_and_the_routing(tmp_path: Path) -> None:
    text = notes(tmp_path, "--values", str(TWO_VCENTERS))
    assert "vsphere-preemption-worker-vcsa-1: vCenter https://vcsa-1.example.com/sdk" in text
    assert "task queue preempt-vcsa-2" in text
    assert "VCENTER_TASKQUEUES=" in text
    assert "-q vsphere-preemption-vcsa-1 ...   # vCenter vcsa-1" in text
    assert "ServiceMonitors vsphere-preemption-worker and vsphere-preemption-function" in text
    assert "<no value>" not in text


# -- several vCenters ---------------------------------------------------------------------


def test_two_vcenters_render_a_worker_each_and_the_functions_routing(
    two: list[dict[str, Any]], tmp_path: Path
) -> None:
    deployments = {d["metadata"]["name"]: d for d in of_kind(two, "Deployment")}
    assert set(deployments) == {
        "vsphere-preemption-worker-vcsa-1", "vsphere-preemption-worker-vcsa-2",
    }  # fmt: skip
    envs = {}
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        env = env_of(container)
        envs[name] = env
        # Each Deployment selects its own pods only.
        for other_name, other in deployments.items():
            assert matches(
                deployment["spec"]["selector"]["matchLabels"],
                other["spec"]["template"]["metadata"]["labels"],
            ) == (other_name == name)
        secret = [v for v in pod["spec"]["volumes"] if v["name"] == "vsphere-credentials"]
        vcenter = name.removeprefix("vsphere-preemption-worker-")
        assert secret[0]["secret"]["secretName"] == f"vsphere-credentials-{vcenter}"
        (tmp_path / "policy.yaml").write_text("maxVMs: 10\n")
        settings = load(
            WorkerSettings, {**env, "PREEMPTION_POLICY_FILE": str(tmp_path / "policy.yaml")}
        )
        assert settings.health_address == ":8081"
    one, two_ = envs["vsphere-preemption-worker-vcsa-1"], envs["vsphere-preemption-worker-vcsa-2"]
    assert (one["VCENTER_URL"], one["TEMPORAL_TASKQUEUE"], one["VCENTER_INSECURE"]) == (
        "https://vcsa-1.example.com/sdk", "vsphere-preemption-vcsa-1", "false",
    )  # fmt: skip
    assert (two_["VCENTER_URL"], two_["TEMPORAL_TASKQUEUE"], two_["VCENTER_INSECURE"]) == (
        "https://VCSA-2.example.com:8443/sdk", "preempt-vcsa-2", "true",
    )  # fmt: skip
    assert two_["VCENTER_CA_BUNDLE"] == "/var/bindings/vcenter-ca/ca.pem"
    assert "VCENTER_CA_BUNDLE" not in one
    replicas = {n: d["spec"]["replicas"] for n, d in deployments.items()}
    assert replicas == {
        "vsphere-preemption-worker-vcsa-1": 2,
        "vsphere-preemption-worker-vcsa-2": 1,
    }
    # The function routes each vCenter's events to the queue its worker polls.
    (service,) = [o for o in two if o["apiVersion"] == "serving.knative.dev/v1"]
    env = env_of(service["spec"]["template"]["spec"]["containers"][0])
    function = load(FunctionSettings, {**env, "PORT": "8080"})
    assert function.vcenter_taskqueues == {
        "vcsa-1.example.com": one["TEMPORAL_TASKQUEUE"],
        "vcsa-2.example.com:8443": two_["TEMPORAL_TASKQUEUE"],
    }
    # No Secret is made for them (each names its own), and the single vCenter's is not used.
    assert not of_kind(two, "Secret")


def test_one_vcenter_keeps_its_names_and_selector(defaults: list[dict[str, Any]]) -> None:
    """A Deployment's selector cannot change: the single-vCenter release upgrades in place."""
    (deployment,) = of_kind(defaults, "Deployment")
    assert deployment["metadata"]["name"] == "vsphere-preemption-worker"
    assert deployment["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "vsphere-preemption",
        "app.kubernetes.io/instance": "vsphere-preemption",
        "app.kubernetes.io/component": "worker",
    }


# -- the ServiceAccount, the PodDisruptionBudgets, the probes -----------------------------


def test_every_pod_runs_as_the_releases_service_account(two: list[dict[str, Any]]) -> None:
    accounts = {
        (a["metadata"]["namespace"], a["metadata"]["name"]) for a in of_kind(two, "ServiceAccount")
    }
    assert accounts == {
        ("vsphere-preemption", "vsphere-preemption"), ("vmware-functions", "vsphere-preemption"),
    }  # fmt: skip
    for account in of_kind(two, "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False
        assert account["metadata"]["annotations"] == {"example.com/role": "preemption"}
    pods = [
        (d["metadata"]["namespace"], d["spec"]["template"]["spec"])
        for d in of_kind(two, "Deployment")
    ]
    pods += [
        (s["metadata"]["namespace"], s["spec"]["template"]["spec"])
        for s in two
        if s["apiVersion"] == "serving.knative.dev/v1"
    ]
    assert len(pods) == 3
    for namespace, pod in pods:
        assert (namespace, pod["serviceAccountName"]) in accounts


def test_an_existing_service_account_is_used_not_made() -> None:
    objects = render("--set", "serviceAccount.create=false,serviceAccount.name=preemptor")
    assert not of_kind(objects, "ServiceAccount")
    (deployment,) = of_kind(objects, "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "preemptor"


def test_each_vcenters_workers_have_a_disruption_budget(two: list[dict[str, Any]]) -> None:
    budgets = of_kind(two, "PodDisruptionBudget")
    deployments = of_kind(two, "Deployment")
    assert len(budgets) == len(deployments) == 2
    for budget in budgets:
        assert budget["spec"]["minAvailable"] == 1
        selector = budget["spec"]["selector"]["matchLabels"]
        selected = [
            d for d in deployments if matches(selector, d["spec"]["template"]["metadata"]["labels"])
        ]
        assert [d["metadata"]["name"] for d in selected] == [budget["metadata"]["name"]]
        assert budget["metadata"]["namespace"] == selected[0]["metadata"]["namespace"]
    assert not of_kind(
        render("--set", "worker.podDisruptionBudget.enabled=false"), "PodDisruptionBudget"
    )


def test_the_workers_probes_ask_its_health_endpoint(two: list[dict[str, Any]]) -> None:
    for deployment in of_kind(two, "Deployment"):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        port = int(env_of(container)["HEALTH_ADDRESS"].rsplit(":", 1)[1])
        assert {"name": "health", "containerPort": port} in container["ports"]
        live, ready = container["livenessProbe"], container["readinessProbe"]
        assert live["httpGet"] == {"path": "/health/liveness", "port": "health"}
        assert ready["httpGet"] == {"path": "/health/readiness", "port": "health"}
        # Liveness gives a busy worker time: it restarts only a loop dead for a minute.
        assert live["periodSeconds"] * live["failureThreshold"] >= 60


def test_extra_env_volumes_labels_and_annotations_reach_both_programs(
    two: list[dict[str, Any]],
) -> None:
    templates = [d["spec"]["template"] for d in of_kind(two, "Deployment")]
    templates += [s["spec"]["template"] for s in two if s["apiVersion"] == "serving.knative.dev/v1"]
    for template in templates:
        assert template["metadata"]["labels"]["example.com/cost-center"] == "ops"
        assert template["metadata"]["annotations"]["example.com/team"] == "platform"
        (container,) = template["spec"]["containers"]
        assert env_of(container)["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http://otel")
        assert {
            "name": "extra-ca",
            "mountPath": "/etc/corporate-ca",
            "readOnly": True,
        } in container["volumeMounts"]
        assert {"name": "extra-ca", "configMap": {"name": "corporate-ca"}} in template["spec"][
            "volumes"
        ]


# -- metrics and the dashboard ------------------------------------------------------------


@pytest.mark.parametrize("program", ["worker", "function"])
def test_each_programs_metrics_are_scraped_with_the_dashboards_labels(
    two: list[dict[str, Any]], program: str
) -> None:
    monitor = named(two, "ServiceMonitor", f"-{program}")
    service = named(two, "Service", f"-{program}-metrics")
    validate(monitor, KUBE.rsplit(".", 1)[0])
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    assert matches(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
    (port,) = service["spec"]["ports"]
    assert port["name"] == "metrics"
    if program == "worker":
        pods = [d["spec"]["template"] for d in of_kind(two, "Deployment")]
        assert len(pods) == 2  # both vCenters' workers behind the one Service
        assert port["targetPort"] == "metrics"
        for pod in pods:
            assert "metrics" in {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
    else:
        (ksvc,) = [o for o in two if o["apiVersion"] == "serving.knative.dev/v1"]
        pods = [ksvc["spec"]["template"]]
        # The function's port (PORT) serves /metrics; scraped on the pod, not through Knative.
        assert (
            port["targetPort"]
            == ksvc["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
        )
        # Knative's own Services carry the Knative Service's labels: ours alone are selected.
        assert not matches(monitor["spec"]["selector"]["matchLabels"], ksvc["metadata"]["labels"])
    for pod in pods:
        assert matches(service["spec"]["selector"], pod["metadata"]["labels"])
    targets = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
    assert targets["release"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_instance"]
    assert pods[0]["metadata"]["labels"]["app.kubernetes.io/instance"] == "vsphere-preemption"
    if program == "worker":
        annotation = "vsphere-preemption.io/task-queue"
        meta = "__meta_kubernetes_pod_annotation_" + re.sub(r"[^a-zA-Z0-9_]", "_", annotation)
        assert targets["task_queue"] == [meta]
        queues = {p["metadata"]["annotations"][annotation] for p in pods}
        assert queues == {env_of(p["spec"]["containers"][0])["TEMPORAL_TASKQUEUE"] for p in pods}
    else:
        assert "task_queue" not in targets  # the function serves every queue


def test_the_dashboard_ships_inside_the_chart(defaults: list[dict[str, Any]]) -> None:
    dashboard = named(defaults, "ConfigMap", "-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    (text,) = dashboard["data"].values()
    assert json.loads(text) == json.loads(CHART_DASHBOARD.read_text())
    # deploy/dashboard.json, for an import by hand, is the same file (scripts/render-manifests).
    assert (ROOT / "deploy" / "dashboard.json").read_bytes() == CHART_DASHBOARD.read_bytes()
    # Not left out of the packaged chart.
    assert "dashboards" not in (CHART / ".helmignore").read_text()


def test_the_dashboard_filters_by_release_namespace_and_task_queue() -> None:
    board = json.loads(CHART_DASHBOARD.read_text())
    variables = {v["name"]: v for v in board["templating"]["list"]}
    for name in ("release", "namespace", "task_queue"):
        assert variables[name]["type"] == "query" and variables[name]["includeAll"]
        # "All" matches series without the label too: a Prometheus not set up by the chart.
        assert variables[name]["allValue"] == ".*"
    selector = re.compile(r"\b((?:vsphere_preemption_\w+|temporal_\w+|process_\w+))(\{[^}]*\})?")
    checked = 0
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            for name, matchers in selector.findall(target["expr"]):
                assert 'release=~"$release"' in matchers, target["expr"]
                assert 'namespace=~"$namespace"' in matchers, target["expr"]
                function = name.startswith("vsphere_preemption_function") or "function" in matchers
                assert ('task_queue=~"$task_queue"' in matchers) != function, target["expr"]
                checked += 1
    assert checked >= 30
