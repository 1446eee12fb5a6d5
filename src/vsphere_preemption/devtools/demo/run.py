"""`preemptctl demo`: one preemption end to end, against a vCenter simulator it starts.

1. vcsim with two clusters of 3 hosts and 14 VMs each; the `preemptible` tag on VMs of
   both (some stopped beforehand) and on a host, priority tags (`low`, `normal`,
   `high`) and a protection tag; a policy file mapping them, for the worker;
2. the whole system as `preemptctl dev` runs it (Temporal dev server with its UI, the
   worker and the function as their own processes), with a CloudEvents sink of its
   own as K_SINK;
3. a raising AlarmStatusChangedEvent on the first cluster only (binary CloudEvent over
   HTTP, as a Knative broker delivers it) to the function; the workflow's steps as they
   happen;
4. the notice the policy gives a red alarm, read back while it runs: the
   VmPreemptionScheduledEvent at the sink (victims, action, notBefore), the victims still
   on in vCenter with the notice in their guestinfo; then the stop once the timer fires;
5. what happened, read back from where it lives: power states and annotations from
   vCenter, the query answer (with its plan: victims in order, the others left out and
   why) from Temporal, the VmPreemptedEvent from the sink;
6. the lowering event, and the workflow completing; with --resume, the policy resumes on
   clear: the resume batches (history, VmResumedEvent at the sink), the VMs on again in
   priority order, their annotations `resumed: true`;
7. checks on all of it: exit 0 only if every one holds.

With --loop the policy preempts until relieved (a memory target on the allocation basis, out
of one round's reach, and `loop`): the run settles, plans again and stops one more VM in a
second round; the demo shows each round from the run's record and the events, and why the
loop stopped (target met).

Nothing here is a stand-in: the same programs, SDKs and wire formats as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import httpx
import structlog
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHandle
from temporalio.runtime import Runtime

from vsphere_preemption.devtools.demo.checks import (
    Expectations,
    NoticeSeen,
    Observations,
    verify,
)
from vsphere_preemption.devtools.demo.events import (
    AlarmScene,
    Named,
    OutgoingEvent,
    alarm_status_changed,
)
from vsphere_preemption.devtools.demo.inventory import (
    ALARMED,
    LOOP,
    OTHER,
    VCSIM_ARGS,
    InventoryTooSmall,
    PreparedInventory,
    demo_policy,
    policy_yaml,
    prepare,
    resume_order,
)
from vsphere_preemption.devtools.demo.progress import (
    HistoryNarrator,
    is_closed,
    notice_started,
    run_finished,
)
from vsphere_preemption.devtools.demo.report import (
    annotation_lines,
    check_lines,
    event_lines,
    heading,
    inventory_table,
    notice_lines,
    resume_lines,
    round_lines,
    state_lines,
)
from vsphere_preemption.devtools.devservers import ServerFailed, ToolMissing, Vcsim
from vsphere_preemption.devtools.devstack import DevStack, VCenterTarget, wait_until_stopped
from vsphere_preemption.devtools.inventory import Inventory
from vsphere_preemption.devtools.sink import EventSink
from vsphere_preemption.domain.alarm_rules import Action
from vsphere_preemption.domain.model import Criticality, MoRef
from vsphere_preemption.domain.workflow_ids import workflow_id
from vsphere_preemption.temporal.client import PreemptionClient, TemporalError
from vsphere_preemption.temporal.collected_runtime import run_collected
from vsphere_preemption.temporal.contracts import GUEST_NOTICE_KEY
from vsphere_preemption.temporal.workflow import TARGET_MET
from vsphere_preemption.vsphere.client import VSphereClient
from vsphere_preemption.vsphere.config import VCenterConfig
from vsphere_preemption.vsphere.errors import VSphereError
from vsphere_preemption.wire import (
    ANNOTATION_KEY,
    PREEMPTED_EVENT_TYPE,
    RESUMED_EVENT_TYPE,
    SCHEDULED_EVENT_TYPE,
    preempted_event_source,
)

# Short, so the demo is quick; the workflow is cancelled before either matters again.
WORKER_ENV = {
    "PREEMPTION_COOLDOWN": "5s",
    "PREEMPTION_SOFT_SHUTDOWN_GRACE": "5s",
}
POLICY_FILE = "policy.yaml"  # in the demo's temporary directory
HTTP_TIMEOUT = 30.0
POLL = 0.25  # seconds between two reads of the workflow's history
LOG_TAIL_LINES = 15


@dataclass(frozen=True)
class DemoOptions:
    temporal_address: str | None
    temporal_port: int
    ui_port: int
    function_port: int
    db_file: Path | None  # None: a temporary file, removed at the end
    namespace: str
    task_queue: str
    tag: str
    alarm_name: str
    log_dir: Path | None  # None: a temporary directory, removed at the end
    keep: bool
    timeout: float  # seconds to wait for the run, and again for the cancellation
    resume: bool = False  # the policy resumes the stopped VMs when the alarm lowers
    loop: bool = False  # the policy preempts until relieved: two rounds, the target met


class DemoFailed(Exception):
    """The demo could not go on; the message says why, in one line."""


def write_secret(directory: Path, username: str, password: str) -> Path:
    """The credentials as a Kubernetes basic-auth secret mounts them: private files."""
    directory.mkdir(mode=0o700)
    for name, value in (("username", username), ("password", password)):
        fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(value)
    return directory


def _quiet_logs() -> None:
    # The demo's own vSphere and Temporal clients speak only to warn, on stderr: the
    # workers' logs go to their files.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, force=True)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


@dataclass(frozen=True)
class _Stage:
    """What a demo run drives: the servers, the alarm's scene, the prepared inventory."""

    stack: DevStack
    scene: AlarmScene
    prepared: PreparedInventory
    sink: EventSink
    vsphere: VSphereClient
    inventory: Inventory


class Demo:
    def __init__(self, options: DemoOptions, out: TextIO) -> None:
        self.options = options
        self.out = out
        self._workflow_id = options.alarm_name  # until the scene names the alarmed cluster

    def say(self, *lines: str) -> None:
        for line in lines:
            print(line, file=self.out)
        self.out.flush()

    def run(self) -> int:
        _quiet_logs()
        with contextlib.ExitStack() as resources:
            workdir = Path(tempfile.mkdtemp(prefix="preemptctl-demo-"))
            resources.callback(shutil.rmtree, workdir, ignore_errors=True)
            log_dir = self.options.log_dir or workdir / "logs"
            self.say(
                "vsphere-preemption demo: one alarm, victims by place and priority, end to end"
            )

            self.say(
                *heading(1, "A simulated vCenter (vcsim) with a demo inventory"),
                "  Preemption powers off running VMs that carry a vSphere tag when an alarm says",
                "  a cluster is short of capacity: only VMs on that cluster, lowest priority first",
                "  (then the most recently booted), never a protected one, at most maxVMs per run.",
            )
            sim = resources.enter_context(Vcsim(args=VCSIM_ARGS))
            config = VCenterConfig(
                url=sim.url, username=sim.username, password=sim.password, insecure=True
            )
            vsphere = resources.enter_context(VSphereClient(config, poll_interval=0.1))
            inventory = Inventory(vsphere)
            prepared = prepare(inventory, self.options.tag, loop=self.options.loop)
            self.say(
                f"  vcsim at {sim.url}: clusters {ALARMED} and {OTHER}, 3 hosts each, "
                f"{len(prepared.before)} VMs",
                f"  tag {prepared.tag!r} (category {prepared.category!r}) is attached to:",
                *inventory_table(prepared),
            )
            secret = write_secret(workdir / "vcenter-secret", sim.username, sim.password)
            policy = workdir / POLICY_FILE
            written = policy_yaml(self.options.resume, prepared.loop_target)
            policy.write_text(written)
            self.say(
                f"  the worker's policy ({policy}, its PREEMPTION_POLICY_FILE):",
                *(f"    {line}" for line in written.splitlines()),
            )
            if prepared.loop_target is not None:
                self.say(*_loop_intro(prepared))

            self.say(*heading(2, "The system: Temporal, the worker, the function, a sink"))
            sink = resources.enter_context(EventSink())
            stack = self._stack(sim.url, secret, sink.url, log_dir, workdir, policy)
            self.say("  starting (the Temporal dev server takes a few seconds) ...")
            resources.enter_context(stack)
            self._print_stack(stack, sink, log_dir)

            scene = self._scene(inventory, prepared, sim.url)
            expect, observations = self._drive(stack, scene, prepared, sink, vsphere, inventory)
            checks = verify(expect, observations)
            ok = all(check.ok for check in checks)
            self.say(*heading(9, "Checks"), *check_lines(checks))
            if not ok:
                self._log_tails(log_dir)
            self.say("", self._verdict(ok))
            if self.options.keep:
                self._keep(stack)
            return 0 if ok else 1

    def _verdict(self, ok: bool) -> str:
        if not ok:
            return "demo FAILED: see the checks above"
        rounds = (
            "; then, the target not met, a second round preempted one more and met it"
            if self.options.loop
            else ""
        )
        resumed = (
            "; on clear they were resumed, highest priority first" if self.options.resume else ""
        )
        return (
            f"demo passed: the planned VMs on {ALARMED} were given notice, then preempted in "
            f"priority order, annotated and reported{rounds}; the others stayed as they were"
            f"{resumed}"
        )

    def _stack(
        self, url: str, secret: Path, sink: str, log_dir: Path, workdir: Path, policy: Path
    ) -> DevStack:
        o = self.options
        return DevStack(
            # vcsim's certificate is self-signed, made up at start: nothing to verify against.
            vcenter=VCenterTarget(url=url, secret_path=secret, insecure=True),
            temporal_address=o.temporal_address,
            db_file=o.db_file or workdir / "temporal.db",
            temporal_port=o.temporal_port,
            ui_port=o.ui_port,
            function_port=o.function_port,
            namespace=o.namespace,
            task_queue=o.task_queue,
            tag=o.tag,
            alarm_name=o.alarm_name,
            sink=sink,
            log_dir=log_dir,
            extra_worker_env={**WORKER_ENV, "PREEMPTION_POLICY_FILE": str(policy)},
        )

    def _print_stack(self, stack: DevStack, sink: EventSink, log_dir: Path) -> None:
        self.say(
            f"  Temporal server  {stack.address}  (namespace {stack.namespace})",
            f"  function         {stack.function_url}  (receives the alarm CloudEvents)",
            f"  sink (K_SINK)    {sink.url}  (receives the VmPreemptedEvent)",
            f"  logs             {log_dir}/{{temporal,worker,function}}.log"
            + ("" if self.options.log_dir else " (removed at the end; --log-dir keeps them)"),
        )
        if stack.ui_url:
            self.say(f"  Temporal web UI  {stack.ui_url}/namespaces/{stack.namespace}/workflows")
        self.say("  worker and function settings (their environment):")
        settings = {**stack.settings(), **stack.extra_worker_env}
        self.say(*(f"    {key}={value}" for key, value in settings.items()))

    def _scene(self, inventory: Inventory, prepared: PreparedInventory, url: str) -> AlarmScene:
        datacenters = inventory.objects("Datacenter")
        if not datacenters:
            raise DemoFailed("the simulator has no datacenter")
        cluster = prepared.alarmed
        return AlarmScene(
            vcenter_url=url,
            # vcsim names its first datacenter DC0; the name is only shown in the event.
            datacenter=Named("DC0", datacenters[0].type, datacenters[0].value),
            cluster=Named(ALARMED, cluster.type, cluster.value),
            # The demo plays the alarm: vcsim raises none of its own.
            alarm=Named(self.options.alarm_name, "Alarm", "alarm-101"),
        )

    def _drive(
        self,
        stack: DevStack,
        scene: AlarmScene,
        prepared: PreparedInventory,
        sink: EventSink,
        vsphere: VSphereClient,
        inventory: Inventory,
    ) -> tuple[Expectations, Observations]:
        return run_collected(
            lambda runtime: self._drive_async(
                runtime, _Stage(stack, scene, prepared, sink, vsphere, inventory)
            )
        )

    async def _drive_async(
        self, runtime: Runtime, stage: _Stage
    ) -> tuple[Expectations, Observations]:
        stack, scene, prepared = stage.stack, stage.scene, stage.prepared
        sink, vsphere, inventory = stage.sink, stage.vsphere, stage.inventory
        o = self.options
        client = await PreemptionClient.connect(
            stack.address, namespace=stack.namespace, task_queue=o.task_queue, runtime=runtime
        )
        key = 1_000_000 + secrets.randbelow(9_000_000)  # a vCenter event key
        raising = alarm_status_changed(
            scene, key=key, from_status="green", to_status="red", now=datetime.now(UTC)
        )
        # The function addresses the workflow of this alarm on this cluster.
        self._workflow_id = workflow_id(
            o.alarm_name, MoRef(scene.cluster.value, scene.cluster.type)
        )
        policy = demo_policy(o.resume, prepared.loop_target)
        every_victim = prepared.expected.victims + tuple(
            ref for later in prepared.later for ref in later.victims
        )
        expect = Expectations(
            workflow_id=self._workflow_id,
            tag=o.tag,
            criticality=Criticality.HIGH,  # the rule: `to` red
            trigger_event_id=raising.id,
            event_source=preempted_event_source(stack.address, stack.namespace),
            entity=prepared.alarmed,
            cluster=ALARMED,
            victims=prepared.expected.victims,
            left_out=prepared.expected.left_out,
            stay_on=tuple(prepared.plan.stay_on),
            action=policy.stop_for(Criticality.HIGH).action.value,
            notice_seconds=policy.notice_for(Criticality.HIGH),
            resume=policy.resume,
            resume_order=tuple(resume_order(prepared.plan, every_victim, prepared.names)),
            later=prepared.later,
            max_rounds=policy.loop.max_rounds,
            loop_stopped=TARGET_MET if policy.loop.enabled else "",
        )

        self.say(
            *heading(3, f"Alarm {o.alarm_name!r} turns red on {scene.cluster.name}"),
            "  In production VEBA turns vCenter events into CloudEvents and a Knative broker",
            "  delivers them to the function; here the demo sends one itself.",
            f"  {OTHER}'s alarm stays green: its VMs are not this alarm's to take.",
        )
        self.say(
            f"  POST {stack.function_url}/ : AlarmStatusChangedEvent green -> red, "
            "binary content mode (as a Knative broker delivers)",
            *(f"    {name}: {value}" for name, value in raising.headers.items()),
        )
        raising_reply = self._post(stack.function_url, raising)
        self.say(f"  the function answered HTTP {raising_reply[0]}: {_json(raising_reply[1])}")
        run_id = raising_reply[1].get("runID") if isinstance(raising_reply[1], dict) else None
        handle = client.client.get_workflow_handle(self._workflow_id, run_id=run_id or None)
        narrator = HistoryNarrator(prepared.names)

        self.say(
            *heading(4, f"Workflow {self._workflow_id!r}, step by step (from its history)"),
            "  The function signalled the workflow of this alarm on this cluster in Temporal;",
            "  the worker runs it: each step is an activity, retried by Temporal if it fails.",
        )
        if stack.ui_url and run_id:
            self.say(
                f"  in the UI: {stack.ui_url}/namespaces/{o.namespace}/workflows/"
                f"{quote(self._workflow_id, safe='')}/{run_id}/history"
            )
        notice: NoticeSeen | None = None
        if raising_reply[0] == 200:
            if not await self._follow(handle, narrator, _notice_or_done):
                self.say(f"  the run did not reach its notice within {o.timeout:.0f}s")
            elif not run_finished(await _history(handle)):
                notice = self._notice(prepared, sink, vsphere, inventory, expect)
                self.say(*heading(6, "The notice is over: the workflow acts (from its history)"))
            if not await self._follow(handle, narrator, run_finished):
                self.say(f"  the run did not finish within {o.timeout:.0f}s")
        state = await self._state(client)
        runs = await self._runs(client) if expect.looping else None
        event = sink.wait_for(PREEMPTED_EVENT_TYPE, timeout=5.0)
        after = {s.ref: s for s in inventory.vms()}
        annotations = vsphere.read_custom_field(list(after), ANNOTATION_KEY)

        self.say(*heading(7, "What happened, read back from vCenter, Temporal and the sink"))
        off = [ref for ref in every_victim if ref in after]
        kept = [ref for ref in prepared.plan.stay_on if ref in after]
        unchanged = sum(
            1
            for ref, state in prepared.before.items()
            if ref not in off + kept
            and ref in after
            and after[ref].power_state == state.power_state
        )
        self.say(
            "  power states now (vCenter), the planned victims:",
            *(f"    {after[ref].name} ({ref.value}): {after[ref].power_state}" for ref in off),
            "  the protected VM and the tagged VMs out of scope:",
            *(
                f"    {after[ref].name} ({ref.value}, {after[ref].cluster}): "
                f"{after[ref].power_state}"
                for ref in kept
            ),
            f"    the other {len(prepared.before) - len(off) - len(kept)} VMs: {unchanged} "
            "unchanged",
            *state_lines(state, prepared.before),
            f"  annotation (custom attribute {ANNOTATION_KEY!r}, read from vCenter):",
            *annotation_lines(every_victim, annotations, prepared.before),
            f"  the event the sink received ({PREEMPTED_EVENT_TYPE}"
            + (", round 1's" if expect.looping else "")
            + "):",
            *event_lines(event, prepared.before),
        )
        if expect.looping:
            self.say(
                *round_lines(
                    runs[-1] if runs else None,
                    [e for e in sink.events if e.type == PREEMPTED_EVENT_TYPE],
                    prepared.before,
                )
            )

        self.say(*heading(8, f"Alarm {o.alarm_name!r} turns green again"))
        lowering = alarm_status_changed(
            scene, key=key + 1, from_status="red", to_status="green", now=datetime.now(UTC)
        )
        self.say(
            f"  POST {stack.function_url}/ : AlarmStatusChangedEvent red -> green",
            (
                f"  (the policy resumes on clear: the workflow powers its VMs on again, "
                f"{expect.resume.batch_size} at a time, highest priority first)"
                if o.resume
                else "  (the preempted VMs stay off: the policy does not resume; "
                "--resume shows a policy that does)"
            ),
        )
        lowering_reply = self._post(stack.function_url, lowering)
        self.say(f"  the function answered HTTP {lowering_reply[0]}: {_json(lowering_reply[1])}")
        lowered = isinstance(lowering_reply[1], dict) and (
            lowering_reply[1].get("decision") == Action.CANCEL.value
        )
        if lowered and not await self._follow(handle, narrator, is_closed):
            self.say(f"  the workflow did not complete within {o.timeout:.0f}s")
        final_status = await self._status(client, run_id)
        self.say(f"  workflow {self._workflow_id!r} is now {final_status.upper()}")
        after_lowering = {s.ref: s for s in inventory.vms()}
        victims = [ref for ref in every_victim if ref in after_lowering]
        annotations_after = vsphere.read_custom_field(victims, ANNOTATION_KEY)
        guest_after = vsphere.read_extra_config(victims, GUEST_NOTICE_KEY)
        if o.resume:
            self.say(
                *resume_lines(
                    [e for e in sink.events if e.type == RESUMED_EVENT_TYPE],
                    after_lowering,
                    annotations_after,
                    guest_after,
                    expect.resume_order,
                )
            )
        else:
            self.say(
                "  power states now (vCenter), the preempted VMs:",
                *(
                    f"    {after_lowering[ref].name} ({ref.value}): "
                    f"{after_lowering[ref].power_state}"
                    for ref in victims
                ),
            )

        return expect, Observations(
            raising_reply=raising_reply,
            before=prepared.before,
            after=after,
            state=state,
            annotations=annotations,
            events=sink.events,
            lowering_reply=lowering_reply,
            final_status=final_status,
            notice=notice,
            after_lowering=after_lowering,
            annotations_after_lowering=annotations_after,
            guest_after_lowering=guest_after,
            runs=runs,
        )

    def _notice(
        self,
        prepared: PreparedInventory,
        sink: EventSink,
        vsphere: VSphereClient,
        inventory: Inventory,
        expect: Expectations,
    ) -> NoticeSeen:
        """Read back, while the notice runs, what it announced and what the victims look like."""
        scheduled = sink.wait_for(SCHEDULED_EVENT_TYPE, timeout=5.0)
        at = datetime.now(UTC)
        states = {s.ref: s for s in inventory.vms()}
        guest = vsphere.read_extra_config(list(states), GUEST_NOTICE_KEY)
        self.say(
            *heading(
                5,
                f"The notice: {expect.notice_seconds:g}s before anything is stopped "
                "(read back meanwhile)",
            ),
            "  The policy gives a red alarm a short notice: the workflow announces what it will",
            "  do and when, tells each victim's guest, then waits on a durable timer (a worker",
            "  restart does not shorten it; the alarm lowering meanwhile cancels it all).",
            *notice_lines(scheduled, at, states, guest, prepared.expected.victims),
        )
        return NoticeSeen(at, states, guest)

    def _post(self, function_url: str, event: OutgoingEvent) -> tuple[int, Any]:
        try:
            answer = httpx.post(
                f"{function_url}/", headers=event.headers, content=event.body, timeout=HTTP_TIMEOUT
            )
        except httpx.HTTPError as exc:
            raise DemoFailed(f"cannot send the event to the function: {exc}") from None
        try:
            return answer.status_code, answer.json()
        except ValueError:
            return answer.status_code, answer.text[:300]

    async def _follow(
        self,
        handle: WorkflowHandle[Any, Any],
        narrator: HistoryNarrator,
        done: Callable[[Sequence[HistoryEvent]], bool],
    ) -> bool:
        """Print the history as it grows until `done` says so; False on timeout."""
        deadline = time.monotonic() + self.options.timeout
        while True:
            events = await _history(handle)
            self.say(*(f"  {line}" for line in narrator.lines(events)))
            if done(events):
                return True
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(POLL)

    async def _state(self, client: PreemptionClient) -> Any:
        try:
            return (await client.current_state(self._workflow_id)).response
        except TemporalError as exc:
            self.say(f"  current_state: {exc}")
            return None

    async def _runs(self, client: PreemptionClient) -> tuple[dict[str, Any], ...] | None:
        """The workflow's run records (its `history` query): each round is in the last one."""
        try:
            found = await client.history(self._workflow_id)
        except TemporalError as exc:
            self.say(f"  history: {exc}")
            return None
        if found.records is None:
            self.say(f"  history: {found.why}")
        return found.records

    async def _status(self, client: PreemptionClient, run_id: str | None) -> str:
        try:
            summary = await client.describe(self._workflow_id, run_id)
        except TemporalError as exc:
            return f"unknown ({exc})"
        return summary.status

    def _log_tails(self, log_dir: Path) -> None:
        for name in ("worker", "function"):
            path = log_dir / f"{name}.log"
            with contextlib.suppress(OSError):
                tail = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
                self.say("", f"last lines of {path}:", *(f"  {line}" for line in tail))

    def _keep(self, stack: DevStack) -> None:
        self.say(
            "",
            "--keep: everything stays up until Ctrl-C.",
            f"  Temporal web UI: {stack.ui_url}/namespaces/{stack.namespace}/workflows"
            if stack.ui_url
            else f"  Temporal server: {stack.address}",
            f"  e.g. preemptctl workflow status -s {stack.address} -n {stack.namespace} "
            f"--workflow-id {self._workflow_id}",
        )
        wait_until_stopped(stack)


def _json(value: Any) -> str:
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


def _loop_intro(prepared: PreparedInventory) -> list[str]:
    first, second = prepared.expected, prepared.later[0]
    text = (
        "--loop: preempt until relieved, judged on the allocation basis (the memory of the "
        f"powered-on VMs under {ALARMED}, which falls the moment a VM stops; vcsim's measured "
        f"figures never move). The memory target, {prepared.loop_target:g}%, is set so that "
        f"round 1's {len(first.victims)} VMs (maxVMs) leave the cluster half a VM above it; "
        f"after a {LOOP.settle_seconds:g}s settle the workflow plans again and round 2 stops "
        f"{len(second.victims)} more, which meets it (vcsim's VMs are small: hence so low a "
        "target)."
    )
    return textwrap.wrap(text, width=92, initial_indent="  ", subsequent_indent="  ")


def _notice_or_done(events: Sequence[HistoryEvent]) -> bool:
    return notice_started(events) or run_finished(events)


async def _history(handle: WorkflowHandle[Any, Any]) -> list[HistoryEvent]:
    return [event async for event in handle.fetch_history_events()]


def run_demo(options: DemoOptions, out: TextIO = sys.stdout) -> int:
    """Run the demo; 0 when every check held, 1 otherwise (the reason is printed)."""
    try:
        return Demo(options, out).run()
    except (
        ToolMissing,
        ServerFailed,
        VSphereError,
        DemoFailed,
        TemporalError,
        InventoryTooSmall,
    ) as exc:
        out.flush()
        print(f"preemptctl demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        out.flush()
        print("preemptctl demo: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
