"""`preemptctl check`: a preflight of the worker's and the function's settings against vCenter,
Temporal and the event sink, before the first alarm needs them.

One line per check, with what to do when it fails. Read-only: vCenter and Temporal are only
read; the one thing sent anywhere is the test CloudEvent, and only with --send-test-event.
The judging is pure (domain/preflight.py), the reads are the adapters' (vsphere/preflight.py,
temporal/preflight.py); this module runs them in order, skipping what a failure makes moot.

Exit codes: 0 nothing failed (warnings allowed, unless --strict), 1 a check failed, 2 invalid
flags.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vsphere_preemption.domain.preflight import Check, Status, ok, skipped

if TYPE_CHECKING:
    from vsphere_preemption.domain.model import VmRef
    from vsphere_preemption.domain.policy import Policy
    from vsphere_preemption.settings import FunctionSettings, WorkerSettings

DESCRIPTION = """\
Check, before any alarm, that the worker and the function can do their job: vCenter reachable,
its certificate trusted, the login and every privilege the worker needs; the tag, the policy's
tag categories and tags, the alarms; Temporal with its TLS and key, the namespace, a worker
polling the task queue; the policy file; and, with --send-test-event, that the sink (K_SINK)
accepts a CloudEvent. One line per check; exit 0 when nothing failed.

Environment: the worker's (VCENTER_*, TEMPORAL_*, PREEMPTION_*, SINK_CA_BUNDLE) and the
function's (VSPHERE_PREEMPTION_TAG, VSPHERE_ALARM_NAME, VSPHERE_ALARM_NAMES, K_SINK,
VCENTER_TASKQUEUES), as each reads them. Without the function's, the tag is checked under
its default name and no alarm is checked (a warning says so).
"""

# The variables that say the function's settings were given at all.
FUNCTION_VARIABLES = ("VSPHERE_PREEMPTION_TAG", "VSPHERE_ALARM_NAME", "VSPHERE_ALARM_NAMES")
POLICY_VARIABLE = "PREEMPTION_POLICY_FILE"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check",
        help="check the settings against vCenter, Temporal and the sink (preflight)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--send-test-event",
        action="store_true",
        help="POST a test CloudEvent to K_SINK (or --sink) and check it is accepted",
    )
    parser.add_argument(
        "--sink",
        default="",
        metavar="URL",
        help="the replyTo to send the test event to, instead of K_SINK",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="count warnings (an alarm not defined yet, no VM tagged yet) as failures",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the checks as JSON",
    )


@dataclass
class _Settings:
    """What the settings checks left for the others; None where they failed."""

    worker: WorkerSettings | None = None
    function: FunctionSettings | None = None
    policy: Policy | None = None
    checks: list[Check] = field(default_factory=list)


def _load_settings(env: Mapping[str, str]) -> _Settings:
    from vsphere_preemption.settings import FunctionSettings, SettingsError, WorkerSettings, load

    out = _Settings()
    policy_problems: list[str] = []
    try:
        out.worker = load(WorkerSettings, env)
        out.policy = out.worker.policy
    except SettingsError as exc:
        policy_problems = [p for p in exc.problems if p.startswith(POLICY_VARIABLE)]
        others = [p for p in exc.problems if not p.startswith(POLICY_VARIABLE)]
        if others or not policy_problems:
            out.checks.append(
                Check(
                    "worker.settings",
                    Status.FAIL,
                    "; ".join(others) or str(exc),
                    fix="set the worker's variables as README.md's Configuration says",
                )
            )
        else:
            # Only the policy is bad: the rest is checked with the default policy.
            without = {k: v for k, v in env.items() if k != POLICY_VARIABLE}
            out.worker = load(WorkerSettings, without)
    if out.worker is not None:
        s = out.worker
        out.checks.append(
            ok(
                "worker.settings",
                f"vCenter {s.vcenter_url}, Temporal {s.temporal_url} namespace "
                f"{s.temporal_namespace!r} task queue {s.temporal_taskqueue!r}",
            )
        )
    out.checks.append(_policy_check(env, out.policy, policy_problems))
    if not any(env.get(name, "").strip() for name in FUNCTION_VARIABLES):
        out.checks.append(
            Check(
                "function.settings",
                Status.WARN,
                "the function's settings are not set: the tag is checked under its default "
                "name and no alarm is checked",
                fix="run the check with the function's variables too (VSPHERE_PREEMPTION_TAG, "
                "VSPHERE_ALARM_NAME, K_SINK)",
            )
        )
        return out
    try:
        out.function = load(FunctionSettings, env)
    except SettingsError as exc:
        out.checks.append(
            Check(
                "function.settings",
                Status.FAIL,
                "; ".join(exc.problems) or str(exc),
                fix="set the function's variables as README.md's Configuration says",
            )
        )
        return out
    f = out.function
    out.checks.append(
        ok(
            "function.settings",
            f"tag {f.preemption_tag!r}, alarm(s) {', '.join(repr(a) for a in f.alarm_names)}, "
            f"sink {'K_SINK' if f.k_sink else 'none (K_SINK unset: no events are sent)'}",
        )
    )
    return out


def _policy_check(env: Mapping[str, str], policy: Policy | None, problems: list[str]) -> Check:
    path = env.get(POLICY_VARIABLE, "").strip()
    if problems:
        return Check(
            "policy",
            Status.FAIL,
            "; ".join(p.removeprefix(f"{POLICY_VARIABLE}: ") for p in problems),
            fix=f"correct the policy file {path} (README.md, The policy)",
        )
    if policy is None:
        return skipped("policy", "not checked: the worker's settings are invalid")
    if not path:
        return ok("policy", "no policy file: the defaults (PREEMPTION_* variables over them)")
    return ok(
        "policy",
        f"{path} is valid (scope {policy.scope.value}, maxVMs {policy.max_vms})",
        policy=policy.to_wire(),
    )


def _policy_named_tags(policy: Policy) -> list[tuple[str, str]]:
    """The (category, tag) pairs the policy names: priority levels, protections, budgets."""
    named: list[tuple[str, str]] = []
    if policy.priority.category is not None:
        named += [(policy.priority.category, t) for t in policy.priority.levels]
    named += [(p.category, p.tag) for p in policy.protection]
    if policy.groups is not None:
        named += [(policy.groups.category, t) for t in policy.groups.budgets]
    return named


# -- vCenter ---------------------------------------------------------------------------------


def _vcenter_checks(
    settings: WorkerSettings,
    tag: str,
    tag_source: str,
    alarms: tuple[str, ...] | None,
    policy: Policy,
) -> list[Check]:
    from vsphere_preemption.domain.preflight import (
        judge_alarms,
        judge_policy_tags,
        judge_privileges,
        judge_tag,
    )
    from vsphere_preemption.vsphere.client import VSphereClient
    from vsphere_preemption.vsphere.config import VCenterConfig
    from vsphere_preemption.vsphere.errors import ConfigError, TLSVerificationError, VSphereError
    from vsphere_preemption.vsphere.preflight import Preflight, reach, verify_certificate

    after = "not checked: the vCenter login failed"
    rest = ("vcenter.privileges", "vcenter.tag", "vcenter.policyTags", "vcenter.alarms")
    checks: list[Check] = []
    try:
        # Reaching and the handshake need no credentials: the URL and the trust settings.
        where = VCenterConfig(
            url=settings.vcenter_url,
            username="-",
            password="",
            insecure=settings.vcenter_insecure,
            ca_bundle=settings.vcenter_ca_bundle,
        )
        reach(where)
    except VSphereError as exc:
        fix = "check VCENTER_URL, DNS and the firewall between here and vCenter"
        checks.append(Check("vcenter.reachable", Status.FAIL, str(exc), fix=fix))
        return checks + [
            skipped(n, "not checked: vCenter is unreachable")
            for n in ("vcenter.certificate", "vcenter.login", *rest)
        ]
    checks.append(ok("vcenter.reachable", f"vCenter {where.address} answers"))
    try:
        verify_certificate(where)
    except (TLSVerificationError, ConfigError) as exc:
        fix = "set VCENTER_CA_BUNDLE to a CA bundle that signs vCenter's certificate"
        checks.append(Check("vcenter.certificate", Status.FAIL, str(exc), fix=fix))
        return checks + [
            skipped(n, "not checked: vCenter's certificate is not trusted")
            for n in ("vcenter.login", *rest)
        ]
    except VSphereError as exc:
        checks.append(
            Check(
                "vcenter.certificate",
                Status.FAIL,
                str(exc),
                fix="check that VCENTER_URL names vCenter's HTTPS port",
            )
        )
        return checks + [skipped(n, after) for n in ("vcenter.login", *rest)]
    if settings.vcenter_insecure:
        checks.append(
            Check(
                "vcenter.certificate",
                Status.WARN,
                "not verified: VCENTER_INSECURE=true",
                fix="set VCENTER_CA_BUNDLE and VCENTER_INSECURE=false",
            )
        )
    else:
        checks.append(ok("vcenter.certificate", "trusted"))
    try:
        from vsphere_preemption.worker import vcenter_config

        config = vcenter_config(settings)
    except ConfigError as exc:
        checks.append(
            Check(
                "vcenter.login",
                Status.FAIL,
                str(exc),
                fix="mount the username and password files at VCENTER_SECRET_PATH",
            )
        )
        return checks + [skipped(n, after) for n in rest]
    with VSphereClient(config) as client:
        try:
            client.connect()
        except VSphereError as exc:
            fix = "correct the username and password in VCENTER_SECRET_PATH"
            checks.append(Check("vcenter.login", Status.FAIL, str(exc), fix=fix))
            return checks + [skipped(n, after) for n in rest]
        checks.append(ok("vcenter.login", f"logged in as {config.username!r} (SOAP and tagging)"))
        probe = Preflight(client)
        vms: list[VmRef] = []
        labels: dict[VmRef, str] = {}
        tag_check: Check
        try:
            facts, vms, labels = probe.tag(tag)
            tag_check = judge_tag(facts, tag_source)
        except VSphereError as exc:
            tag_check = Check("vcenter.tag", Status.FAIL, str(exc), fix="see the error")
        checks.append(
            _guarded("vcenter.privileges", lambda: judge_privileges(probe.privileges(vms, labels)))
        )
        checks.append(tag_check)
        categories = policy.tag_categories()
        named = _policy_named_tags(policy)
        checks.append(
            _guarded(
                "vcenter.policyTags",
                lambda: judge_policy_tags(probe.policy_tags(categories, named)),
            )
        )
        if alarms is None:
            checks.append(skipped("vcenter.alarms", "not checked: VSPHERE_ALARM_NAME is not set"))
        else:
            checks.append(_guarded("vcenter.alarms", lambda: judge_alarms(probe.alarms(), alarms)))
    return checks


def _guarded(name: str, judge: Any) -> Check:
    from vsphere_preemption.vsphere.errors import VSphereError

    try:
        result: Check = judge()
    except VSphereError as exc:
        return Check(name, Status.FAIL, str(exc), fix="see the error")
    return result


# -- Temporal and the sink --------------------------------------------------------------------


def _temporal_checks(settings: WorkerSettings) -> list[Check]:
    from vsphere_preemption.domain.preflight import judge_pollers
    from vsphere_preemption.temporal.collected_runtime import run_collected
    from vsphere_preemption.temporal.preflight import TemporalFacts, probe_temporal

    def failed(exc: Exception) -> TemporalFacts:
        return TemporalFacts(connect_error=f"{type(exc).__name__}: {exc}")

    facts = run_collected(
        lambda runtime: probe_temporal(
            settings.temporal_url,
            namespace=settings.temporal_namespace,
            task_queue=settings.temporal_taskqueue,
            security=settings.temporal_security,
            runtime=runtime,
        ),
        failed,
    )
    ns = settings.temporal_namespace
    tls = "TLS" if settings.temporal_security.tls else "no TLS"
    key = ", API key" if settings.temporal_security.api_key else ""
    if facts.connect_error is not None:
        return [
            Check(
                "temporal.connection",
                Status.FAIL,
                facts.connect_error,
                fix="check TEMPORAL_URL and the TEMPORAL_TLS* / TEMPORAL_API_KEY_FILE settings",
            ),
            skipped("temporal.namespace", "not checked: Temporal is unreachable"),
            skipped("temporal.pollers", "not checked: Temporal is unreachable"),
        ]
    checks = [ok("temporal.connection", f"connected to {settings.temporal_url} ({tls}{key})")]
    if facts.namespace_error is not None:
        return [
            *checks,
            Check(
                "temporal.namespace",
                Status.FAIL,
                f"namespace {ns!r}: {facts.namespace_error}",
                fix=f"create namespace {ns!r} (`temporal operator namespace create`), or "
                "correct TEMPORAL_NAMESPACE",
            ),
            skipped("temporal.pollers", "not checked: the namespace is not there"),
        ]
    checks.append(ok("temporal.namespace", f"namespace {ns!r} exists"))
    if facts.pollers is None:
        checks.append(
            Check(
                "temporal.pollers",
                Status.FAIL,
                str(facts.pollers_error),
                fix="the key or certificate may not allow DescribeTaskQueue",
            )
        )
    else:
        checks.append(judge_pollers(settings.temporal_taskqueue, facts.pollers))
    return checks


def _sink_check(
    args: argparse.Namespace, worker: WorkerSettings, function: FunctionSettings | None
) -> Check:
    from vsphere_preemption.settings import SettingsError
    from vsphere_preemption.temporal.preflight import safe_url, send_test_event
    from vsphere_preemption.wire import preempted_event_source, reply_to_problem
    from vsphere_preemption.worker import StartError, sink_http_client

    if not args.send_test_event:
        return skipped("sink", "not checked: --send-test-event sends a test CloudEvent")
    url = args.sink or (function.k_sink if function is not None else "")
    if not url:
        return Check(
            "sink",
            Status.FAIL,
            "no sink to send to: K_SINK is not set",
            fix="set K_SINK, or give --sink URL",
        )
    problem = reply_to_problem(url)
    if problem is not None:
        return Check("sink", Status.FAIL, f"--sink: {problem}", fix="give an http(s) URL")
    try:
        with sink_http_client(worker) as http:
            source = preempted_event_source(worker.temporal_url, worker.temporal_namespace)
            answer = send_test_event(url, http, source)
    except (ValueError, StartError, SettingsError) as exc:
        return Check(
            "sink",
            Status.FAIL,
            str(exc),
            fix="check K_SINK, the sink's logs, and SINK_CA_BUNDLE for an https sink",
        )
    return ok("sink", f"test CloudEvent accepted: {answer}", sink=safe_url(url))


# -- the command ------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    import logging
    import os

    from vsphere_preemption import logs
    from vsphere_preemption.cli.check_render import render_text, report_json
    from vsphere_preemption.domain.preflight import Report, judge_routing
    from vsphere_preemption.domain.vcenters import vcenter_host
    from vsphere_preemption.wire import DEFAULT_TAG, go_json

    # stdout is the answer: the adapters' own logs only for warnings, on stderr.
    logs.configure(
        debug=False, program="preemptctl-check", stream=sys.stderr, level=logging.WARNING
    )
    loaded = _load_settings(os.environ)
    checks = list(loaded.checks)
    worker, function = loaded.worker, loaded.function
    if worker is None:
        checks.append(skipped("vcenter", "not checked: the worker's settings are invalid"))
        checks.append(skipped("temporal", "not checked: the worker's settings are invalid"))
    else:
        if function is not None:
            tag, source, alarms = (
                function.preemption_tag,
                "VSPHERE_PREEMPTION_TAG",
                (function.alarm_names),
            )
            checks.append(
                judge_routing(
                    vcenter_host(worker.vcenter_url),
                    worker.temporal_taskqueue,
                    function.vcenter_taskqueues,
                )
            )
        else:
            tag, source, alarms = DEFAULT_TAG, "VSPHERE_PREEMPTION_TAG (unset: the default)", None
        policy = loaded.policy if loaded.policy is not None else worker.policy
        checks += _vcenter_checks(worker, tag, source, alarms, policy)
        checks += _temporal_checks(worker)
        checks.append(_sink_check(args, worker, function))
    report = Report(tuple(checks), strict=args.strict)
    if getattr(args, "json", False):
        print(go_json(report_json(report)).decode())
    else:
        print(render_text(report))
    return report.exit_code
