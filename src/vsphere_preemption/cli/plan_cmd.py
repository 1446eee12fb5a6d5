"""`preemptctl plan`: the victims a preemption would choose now, read-only.

The same gathering and the same pure choice as the worker's (`VSphereClient.gather`, then
`domain.plan.plan`), against a live vCenter, with the worker's settings from the environment
(VCENTER_*, PREEMPTION_POLICY_FILE, PREEMPTION_MAX_VMS, PREEMPTION_SCOPE; no Temporal). It
reads only: nothing is powered off, annotated or created.

Exit codes: 0 planned, 1 vCenter said no (one line on stderr), 2 invalid flags or settings.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vsphere_preemption.cli.workflow_input import (
    InvalidInput,
    parse_criticality,
    parse_entity,
    parse_policy_overrides,
    require_not_empty,
)
from vsphere_preemption.wire import DEFAULT_TAG

DESCRIPTION = """\
Show which VMs a preemption would power off now, in order, and why the others stay: the
worker's own selection, run against vCenter without changing anything.

Environment, as the worker reads it: VCENTER_URL (required), VCENTER_SECRET_PATH,
VCENTER_INSECURE, VCENTER_CA_BUNDLE, PREEMPTION_POLICY_FILE, PREEMPTION_MAX_VMS,
PREEMPTION_SCOPE. TEMPORAL_URL is not needed.
"""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="show the victims a preemption would choose now (read-only)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--entity", default="", metavar="TYPE:MOREF",
        help="the alarmed entity, e.g. ClusterComputeResource:domain-c7 or domain-c7 "
        "(default: none, the whole vCenter)",
    )  # fmt: skip
    parser.add_argument(
        "--alarm", default=None, metavar="NAME", help="the alarm's name, for the heading only"
    )
    parser.add_argument(
        "-t", "--tag", default=DEFAULT_TAG,
        help=f"vSphere tag of the preemptible VMs (default {DEFAULT_TAG})",
    )  # fmt: skip
    parser.add_argument(
        "-c", "--criticality", default="LOW", help="LOW, MEDIUM or HIGH (default LOW)"
    )
    parser.add_argument(
        "--policy-override", default="", metavar="JSON",
        help="policy fields over the worker's policy, e.g. '{\"maxVMs\": 3}'",
    )  # fmt: skip
    parser.add_argument(
        "--set", dest="policy_sets", action="append", default=[], metavar="KEY=VALUE",
        help="one policy field over the worker's policy (targets.cpu=70); repeatable",
    )  # fmt: skip
    parser.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS,
        help="print the plan as JSON (the workflow's plan, plus entity, scope and notes)",
    )  # fmt: skip
    parser.add_argument(
        "--verbose", action="store_true", default=argparse.SUPPRESS,
        help="log what is read from vCenter on stderr",
    )  # fmt: skip


def _fail(code: int, message: str) -> int:
    print(f"preemptctl plan: error: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    from vsphere_preemption.settings import SettingsError, VCenterSettings, load

    try:
        settings = load(VCenterSettings)
    except SettingsError as exc:
        return _fail(2, str(exc))
    try:
        require_not_empty(tag=args.tag)
        entity = parse_entity(args.entity) if args.entity else None
        criticality = parse_criticality(args.criticality)
        overrides = parse_policy_overrides(args.policy_override, args.policy_sets, settings.policy)
    except InvalidInput as exc:
        return _fail(2, str(exc))
    policy = settings.policy if overrides is None else settings.policy.with_overrides(overrides)

    import logging

    from vsphere_preemption import logs
    from vsphere_preemption.cli.plan_render import PlanReport, plan_json, render_plan
    from vsphere_preemption.domain.plan import plan
    from vsphere_preemption.vsphere.client import VSphereClient
    from vsphere_preemption.vsphere.config import VCenterConfig
    from vsphere_preemption.vsphere.errors import ConfigError, VSphereError
    from vsphere_preemption.wire import go_json

    verbose = getattr(args, "verbose", False)
    # stdout is the answer: logs go to stderr, and only when asked for.
    logs.configure(
        debug=verbose, program="preemptctl-plan", stream=sys.stderr,
        level=None if verbose else logging.WARNING,
    )  # fmt: skip
    try:
        config = VCenterConfig.from_secret_dir(
            settings.vcenter_url,
            settings.vcenter_secret_path,
            insecure=settings.vcenter_insecure,
            ca_bundle=settings.vcenter_ca_bundle,
        )
    except ConfigError as exc:
        return _fail(2, str(exc))
    try:
        with VSphereClient(config) as client:
            gathered = client.gather(args.tag, entity, policy.tag_categories())
    except VSphereError as exc:
        return _fail(1, str(exc))
    report = PlanReport(
        plan=plan(gathered.facts, gathered.usage, policy, criticality, non_vms=gathered.non_vms),
        policy=policy,
        tag=args.tag,
        entity=entity,
        alarm=args.alarm,
        scope_vms=gathered.scope_vms,
        vanished=tuple(gathered.vanished),
        notes=tuple(gathered.notes),
    )
    if getattr(args, "json", False):
        print(go_json(plan_json(report)).decode())
    else:
        print(render_plan(report))
    return 0
