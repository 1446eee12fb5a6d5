"""What `preemptctl workflow run` sends, checked before anything leaves the machine.

Pure: the flags in, a `WorkflowRequest` (or a message naming every problem) out; also the
flags `status`, `cancel` and `plan` share: `--entity`, the policy overrides, and which
workflow `--alarm`/`--entity`/`--workflow-id` address.
The Go CLI upper-cases the criticality, accepts `--event` only as a valid
structured-JSON CloudEvent and sends it as its CloudEvents SDK re-writes it, and
builds a `PreempctlRunEvent` when none is given; ours does the same, so a worker (and
the annotation it writes) cannot tell which CLI sent the signal (docs/wire.md).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from vsphere_preemption.domain.cloudevent_rules import DATA_MEMBERS, structured_problems
from vsphere_preemption.domain.model import Criticality, MoRef
from vsphere_preemption.domain.policy import Policy, PolicyError
from vsphere_preemption.domain.workflow_ids import IdMode, is_moref_value, workflow_id
from vsphere_preemption.rawjson import RawJSON, members
from vsphere_preemption.wire import (
    CE_ATTRIBUTE_ORDER,
    CLI_EVENT_TYPE,
    CLI_WORKFLOW_ID,
    CloudEventJSON,
    WireError,
    WorkflowRequest,
    canonical_time,
    format_time,
    is_go_json_media,
    reply_to_problem,
    tag_problem,
)

SPECVERSION = "1.0"  # what the Go CLI sends
_PAYLOAD_MEMBERS = frozenset(DATA_MEMBERS)
_CONTEXT = frozenset(CE_ATTRIBUTE_ORDER)


class InvalidInput(ValueError):
    """A flag value the CLI refuses; the message says what is wrong and how to fix it."""


def parse_criticality(value: str) -> Criticality:
    # Go's CLI accepts any case and sends upper case; so do we.
    try:
        return Criticality(value.strip().upper())
    except ValueError:
        valid = ", ".join(c.value for c in Criticality)
        raise InvalidInput(f"--criticality {value!r} is invalid (valid: {valid})") from None


def cloud_event_problems(event: Any) -> list[str]:
    """Everything that keeps `event` from being a CloudEvents 1.0 structured-JSON event that
    Go's SDK reads: the CloudEvents rules (domain/cloudevent_rules.py), then its data."""
    problems = [str(p) for p in structured_problems(event, versions=(SPECVERSION,))]
    if isinstance(event, dict):
        problems += _data_problems(event)
    return problems


def _data_problems(event: dict[str, Any]) -> list[str]:
    # What Go's SDK refuses to read: a non-JSON type's data must be a string.
    json_media = is_go_json_media(event.get("datacontenttype"))
    if "data" in event and not json_media and not isinstance(event["data"], str):
        return ["'data' must be a string when 'datacontenttype' is not JSON"]
    return []


def canonical_event(event: dict[str, Any], text: str) -> CloudEventJSON:
    """`event` (valid, decoded from `text`) as the Go CLI sends it.

    The Go CLI decodes `--event` into its SDK's event and marshals that: attributes in the
    SDK's order, `time` in UTC with its nanoseconds, JSON data as given (compacted, so
    `1.50` stays `1.50`), base64 data re-encoded, numbers in extensions as 32-bit
    integers, null extensions dropped.
    """
    # In Go's order; the extensions, sorted (Go's map order is random), come last.
    out: CloudEventJSON = {
        name: canonical_time(event[name]) if name == "time" else event[name]
        for name in CE_ATTRIBUTE_ORDER
        if name in event
    }
    if "data" in event:
        if is_go_json_media(event.get("datacontenttype")):
            out["data"] = RawJSON.parse(dict(members(text))["data"])
        else:
            out["data"] = event["data"]
    if "data_base64" in event:
        decoded = base64.b64decode(event["data_base64"], validate=True)
        out["data_base64"] = base64.b64encode(decoded).decode("ascii")
    for name in sorted(set(event) - _CONTEXT - _PAYLOAD_MEMBERS):
        value = event[name]
        if isinstance(value, float):
            value = int(value)  # Go converts to int32, truncating
        if value is not None:
            out[name] = value
    return out


def parse_event(text: str) -> CloudEventJSON:
    """The `--event` flag: a CloudEvent in structured JSON form, in the Go CLI's form."""
    try:
        event = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"--event is not valid JSON: {exc}") from None
    problems = cloud_event_problems(event)
    if problems:
        raise InvalidInput("--event is not a CloudEvent: " + "; ".join(problems))
    try:
        return canonical_event(event, text)
    except ValueError as exc:  # NaN or Infinity in data: Python reads them, Go does not
        raise InvalidInput(f"--event is not valid JSON: {exc}") from None


def default_event(
    now: datetime, new_id: Callable[[], str] = lambda: str(uuid.uuid4())
) -> CloudEventJSON:
    """The event the Go CLI sends when no --event is given (no data, no subject)."""
    return {
        "specversion": SPECVERSION,
        "id": new_id(),
        "source": CLI_WORKFLOW_ID,
        "type": CLI_EVENT_TYPE,
        "time": format_time(now),
    }


def require_not_empty(**flags: str) -> None:
    # The Go CLI refuses empty --server/--namespace/--queue/--tag the same way.
    for name, value in flags.items():
        if not value.strip():
            raise InvalidInput(f"--{name.replace('_', '-')} must not be empty")


def check_reply_to(value: str) -> str:
    # The worker POSTs the VmPreemptedEvent there, and the workflow drops a signal whose
    # replyTo is not an http(s) URL: the signal's own rule (wire.reply_to_problem).
    problem = reply_to_problem(value)
    if problem is not None:
        raise InvalidInput("--reply-to" + problem.removeprefix("replyTo"))
    return value


def check_tag(value: str) -> str:
    # The Go CLI refuses an empty --tag; the workflow also drops a tag no vSphere tag can
    # have (wire.tag_problem).
    require_not_empty(tag=value)
    problem = tag_problem(value)
    if problem is not None:
        raise InvalidInput("--tag" + problem.removeprefix("tag"))
    return value


# The managed object types whose VMs the worker can find (vsphere/scope.py), and the moref
# prefixes vCenter gives each: a bare moref names its type by its prefix. Longest first, so
# `resgroup-v12` is a vApp and `resgroup-8` a pool.
ENTITY_TYPES = (
    "ClusterComputeResource",
    "ComputeResource",
    "HostSystem",
    "ResourcePool",
    "VirtualApp",
    "Datastore",
    "Datacenter",
    "Folder",
    "VirtualMachine",
)
_PREFIX_TYPES = (
    ("resgroup-v", "VirtualApp"),
    ("resgroup-", "ResourcePool"),
    ("domain-c", "ClusterComputeResource"),
    ("domain-s", "ComputeResource"),
    ("datacenter-", "Datacenter"),
    ("datastore-", "Datastore"),
    ("group-", "Folder"),
    ("host-", "HostSystem"),
    ("vm-", "VirtualMachine"),
)


def parse_entity(value: str) -> MoRef:
    """`--entity`: `TYPE:MOREF` (`ClusterComputeResource:domain-c7`), or a bare moref whose
    prefix says its type (`domain-c7`, `host-21`, `resgroup-v12`...)."""
    text = value.strip()
    kind, colon, moref = text.rpartition(":")
    if not colon:
        moref = text
        kind = next((t for prefix, t in _PREFIX_TYPES if moref.startswith(prefix)), "")
        if not kind and is_moref_value(moref):
            prefixes = ", ".join(p for p, _ in _PREFIX_TYPES)
            raise InvalidInput(
                f"--entity {value!r}: the type of a {moref.split('-')[0]}- moref is unknown; "
                f"write TYPE:MOREF (known prefixes: {prefixes})"
            )
    if not is_moref_value(moref):
        raise InvalidInput(
            f"--entity {value!r} is not a managed object: write TYPE:MOREF "
            "(ClusterComputeResource:domain-c7) or a moref (domain-c7)"
        )
    if kind not in ENTITY_TYPES:
        raise InvalidInput(
            f"--entity {value!r}: type {kind!r} holds no VMs the worker can find "
            f"(supported: {', '.join(ENTITY_TYPES)})"
        )
    return MoRef(value=moref, type=kind)


def _set_path(target: dict[str, Any], path: str, value: Any, flag: str) -> None:
    keys = path.split(".")
    if not all(k.strip() for k in keys):
        raise InvalidInput(f"{flag}: {path!r} is not a policy field path (like targets.cpu)")
    for key in keys[:-1]:
        child = target.get(key)
        if not isinstance(child, dict):
            child = target[key] = {}
        target = child
    target[keys[-1]] = value


def parse_policy_overrides(
    override_json: str | None, sets: Sequence[str], base: Policy | None = None
) -> dict[str, Any] | None:
    """`--policy-override JSON` and `--set key=value` (the later win) as one override object,
    checked over `base` (the defaults unless given); None when neither flag was given.

    A `--set` value is JSON where it reads as JSON (`maxVMs=3`, `targets.cpu=null`, `dryRun=
    true`), else text (`scope=vcenter`, `targets.cpu=70%`). `null` resets a field.
    """
    if not override_json and not sets:
        return None
    overrides: dict[str, Any] = {}
    if override_json:
        try:
            parsed = json.loads(override_json)
        except ValueError as exc:
            raise InvalidInput(f"--policy-override is not valid JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise InvalidInput("--policy-override must be a JSON object of policy fields")
        overrides = parsed
    for item in sets:
        path, equals, text = item.partition("=")
        if not equals:
            raise InvalidInput(f"--set {item!r} must be key=value (like targets.cpu=70)")
        try:
            value: Any = json.loads(text)
        except ValueError:
            value = text
        _set_path(overrides, path.strip(), value, f"--set {item!r}")
    check_policy_overrides(overrides, base)
    return overrides


def check_policy_overrides(overrides: Mapping[str, Any], base: Policy | None = None) -> Policy:
    """The policy `overrides` make of `base`, or InvalidInput naming every bad field."""
    try:
        return (base or Policy()).with_overrides(overrides)
    except PolicyError as exc:
        raise InvalidInput(str(exc)) from None


def build_request(
    *,
    tag: str,
    criticality: str,
    event: str | None,
    reply_to: str,
    now: datetime,
    entity: str = "",
    dry_run: bool = False,
    policy_override: str = "",
    policy_sets: Sequence[str] = (),
) -> WorkflowRequest:
    """The PreemptVMsChan signal for `run`, or InvalidInput naming the bad flag.

    Checked at the end by the rule the workflow reads a signal with (WorkflowRequest.check),
    so nothing leaves the machine that the workflow would drop.
    """
    request = WorkflowRequest(
        tag=check_tag(tag),
        criticality=parse_criticality(criticality),
        event=parse_event(event) if event else default_event(now),
        reply_to=check_reply_to(reply_to),
        entity=parse_entity(entity) if entity else None,
        dry_run=dry_run,
        policy=parse_policy_overrides(policy_override, policy_sets),
    )
    try:
        request.check()
    except WireError as exc:
        raise InvalidInput(f"the request would be dropped by the workflow: {exc}") from None
    return request


def address_workflow(
    *,
    workflow_id_flag: str | None,
    alarm: str | None,
    entity: str | None,
    id_mode: IdMode | None,
    default: str,
) -> str:
    """The workflow `status`/`cancel` address: `--workflow-id` as given, or the ID made of
    `--alarm` and `--entity` (`<alarm>/<moref>`; the alarm alone in the Go form), or `default`.
    """
    if workflow_id_flag is not None and (alarm is not None or entity is not None):
        raise InvalidInput(
            "give either --workflow-id or --alarm (with --entity), not both: "
            "--alarm and --entity make the workflow ID"
        )
    if workflow_id_flag is not None:
        require_not_empty(workflow_id=workflow_id_flag)
        if id_mode is not None:
            raise InvalidInput("--go-id/--id-mode shape the ID made of --alarm: not --workflow-id")
        return workflow_id_flag
    if alarm is None:
        if entity is not None:
            raise InvalidInput("--entity needs --alarm: the workflow ID is <alarm>/<moref>")
        if id_mode is not None:
            raise InvalidInput("--go-id/--id-mode need --alarm: they shape the ID made of it")
        return default
    require_not_empty(alarm=alarm)
    ref = parse_entity(entity) if entity is not None else None
    if id_mode is IdMode.ALARM and ref is not None:
        raise InvalidInput(
            "--go-id (--id-mode alarm) addresses the alarm's one workflow, named by the alarm "
            "alone: drop --entity, or drop --go-id to address <alarm>/<moref>"
        )
    return workflow_id(alarm.strip(), ref, id_mode or IdMode.ENTITY)
