"""The vSphere client the worker's activities use: find, stop, annotate, notify, resume.

Thread-safe: activities run on a thread pool and share one client, so one logged-in
SOAP session and one REST tagging session serve every call; each is renewed when
vCenter forgets it (`NotAuthenticated` / HTTP 401) and logged out by `close()`.
Errors are `VSphereError`s with safe text (never a credential, never a third-party
exception in the cause chain).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import timedelta
from types import TracebackType

from vsphere_preemption.domain.model import (
    AnnotateOutcome,
    EntityUsage,
    GuestNoticeOutcome,
    MoRef,
    PowerOffOutcome,
    ResumeOutcome,
    Selection,
    StopAction,
    VmMark,
    VmRef,
)
from vsphere_preemption.domain.policy import UseBasis
from vsphere_preemption.domain.selection import VIRTUAL_MACHINE, VmState, select_preemptible
from vsphere_preemption.logs import get_logger
from vsphere_preemption.vsphere.config import VCenterConfig
from vsphere_preemption.vsphere.fields import CustomFields
from vsphere_preemption.vsphere.gather import Gathered, HostSpeeds, allocated_use, gather
from vsphere_preemption.vsphere.guest import read_extra_config, set_extra_config
from vsphere_preemption.vsphere.power import PowerOff
from vsphere_preemption.vsphere.reads import TaskPacing, read_custom_values, read_vm_states
from vsphere_preemption.vsphere.rest import TaggingRest
from vsphere_preemption.vsphere.resume import Resume
from vsphere_preemption.vsphere.scope import read_scope
from vsphere_preemption.vsphere.soap import RequestObserver, RoundTrips, SoapSession
from vsphere_preemption.vsphere.tasks import DEFAULT_FANOUT, Fanout, TaskRunner

log = get_logger(__name__)


def _ignore(_: VmRef) -> None:
    pass


def _placement(state: VmState) -> dict[str, str | None]:
    return {"vm": state.ref.value, "name": state.name, "host": state.host, "cluster": state.cluster}


class VSphereClient:
    """Lazy: nothing is sent to vCenter before the first call."""

    def __init__(
        self,
        config: VCenterConfig,
        *,
        poll_interval: float = 1.0,
        task_timeout: timedelta = timedelta(minutes=2),
        page_size: int | None = None,
        tag_cache_ttl: float = 300.0,
        pool_size: int = 16,
    ) -> None:
        self.config = config
        self._round_trips = RoundTrips()
        # `session` and `tagging` are for this package and devtools/inventory.py (which
        # prepares a simulator's inventory), not for the programs.
        self.session = SoapSession(config, self._round_trips, pool_size=pool_size)
        self.tagging = TaggingRest(config, self._round_trips, tag_cache_ttl=tag_cache_ttl)
        self._fields = CustomFields(self.session)
        pacing = TaskPacing(poll_interval=poll_interval, task_timeout=task_timeout)
        self._power = PowerOff(self.session, pacing)
        self._tasks = TaskRunner(self.session, pacing)
        self._resume = Resume(self.session, self._fields, self._tasks)
        self._page_size = page_size
        # Hosts' core MHz (hardware: the same from run to run), for the CPU allocations.
        self._host_speeds = HostSpeeds(ttl=tag_cache_ttl)

    def connect(self) -> None:
        """Log in to both APIs now (the client is lazy otherwise); raises VSphereError."""
        self.session.connection()
        self.tagging.login()

    def observe_requests(self, observer: RequestObserver | None) -> None:
        """Tell `observer` of every round trip to vCenter from now on (the worker's metrics)."""
        self._round_trips.observer = observer

    @property
    def round_trips(self) -> int:
        """HTTP round trips to vCenter (SOAP + REST) since creation, logins included."""
        return self._round_trips.count

    # -- reads ------------------------------------------------------------------------

    def tagged_objects(self, tag: str) -> list[VmRef]:
        """Every object attached to the tag called `tag` (any type); TagNotFoundError if none."""
        return self.tagging.attached_objects(tag)

    def read_vms(self, vms: Sequence[VmRef]) -> dict[VmRef, VmState]:
        """Name, power state and placement of the VMs that exist, in one batched request."""
        refs = [r for r in vms if r.type == VIRTUAL_MACHINE]
        with self.session.translating("read virtual machines"):
            states, _ = read_vm_states(self.session, refs, page_size=self._page_size)
        return states

    def gather(
        self,
        tag: str,
        entity: MoRef | None,
        categories: Sequence[str] = (),
        *,
        basis: UseBasis = UseBasis.USAGE,
    ) -> Gathered:
        """The facts a plan chooses victims from, for an alarm on `entity` (None: everywhere).

        Every VM carrying `tag` (preemptible) or any tag of `categories` (budget groups;
        not preemptible unless it also carries `tag`), with its scope, tags, power state,
        boot time, usage, allocation, host and our preemption mark; the tagged objects
        that are not VMs; the entity's capacity and use. See `gather.py` for what each
        figure is read from and `scope.py` for what "under the entity" means.

        Round trips, whatever the number of VMs: REST one per requested category + 1,
        plus, when not cached (`tag_cache_ttl`), the name lookups of `tag`, of the
        categories and of each tag met; SOAP 1 to 3 for the scope, 2 for the facts (+1
        per page; 1 when every VM's host was read within `tag_cache_ttl`: `HostSpeeds`).
        Raises TagNotFoundError, CategoryNotFoundError, EntityNotFoundError,
        UnsupportedEntityError, or VSphereError (a VM whose power state cannot be read).
        """
        with self.session.translating("gather preemption facts"):
            gathered = gather(
                self.session,
                self.tagging,
                tag,
                entity,
                categories,
                page_size=self._page_size,
                basis=basis,
                speeds=self._host_speeds,
            )
        log.info(
            "vcenter.gathered",
            tag=tag,
            entity=str(entity) if entity is not None else None,
            categories=list(categories),
            vms=len(gathered.facts),
            in_scope=sum(f.in_scope for f in gathered.facts),
            scope_vms=gathered.scope_vms,
            non_vms=len(gathered.non_vms),
            vanished=len(gathered.vanished),
        )
        return gathered

    def entity_usage(
        self, entity: MoRef, *, basis: UseBasis = UseBasis.USAGE
    ) -> EntityUsage | None:
        """The entity's capacity and use now (None for entities without compute capacity).

        The same read as gather's scope (1 to 3 requests; 1 or 2 more by allocation: the
        hosts' MHz are remembered), for what a run achieved.
        """
        with self.session.translating(f"read the use of {entity}"):
            scope = read_scope(self.session, entity)
            if basis is UseBasis.ALLOCATION:
                scope = allocated_use(
                    self.session, scope, page_size=self._page_size, speeds=self._host_speeds
                )
            return scope.usage

    def find_preemptible(self, tag: str, max_vms: int) -> Selection:
        """The powered-on VMs carrying `tag`, at most `max_vms`, and why the others are not.

        Round trips: 1 REST call per tag of that name + 1 batched SOAP read (+1 per
        page, +1 per tagged VM deleted behind vCenter's back on servers that fault on
        missing objects), whatever the number of VMs. Resolving the tag name costs
        1 + number of tags when it is not cached.
        """
        if max_vms < 1:
            raise ValueError(f"max_vms must be at least 1, not {max_vms}")
        tagged = self.tagged_objects(tag)
        states = self.read_vms(tagged)
        selection = select_preemptible(tagged, states, max_vms)
        log.info(
            "vcenter.preemptible",
            tag=tag,
            tagged=len(tagged),
            selected=[r.value for r in selection.selected],
            left_out=len(selection.left_out),
        )
        log.debug(
            "vcenter.preemptible_detail",
            tag=tag,
            selected=[_placement(states[r]) for r in selection.selected],
            left_out=[{"vm": str(i.vm), "reason": i.reason} for i in selection.left_out],
        )
        return selection

    # -- actions ----------------------------------------------------------------------

    def power_off(
        self,
        vms: Sequence[VmRef],
        *,
        force: bool,
        soft_shutdown_grace: timedelta,
        fanout: Fanout = DEFAULT_FANOUT,
    ) -> PowerOffOutcome:
        """`stop` with a hard power-off (`force`) or a guest shutdown with grace."""
        action = StopAction.POWER_OFF if force else StopAction.SHUTDOWN
        return self.stop(vms, action=action, soft_shutdown_grace=soft_shutdown_grace, fanout=fanout)

    def stop(
        self,
        vms: Sequence[VmRef],
        *,
        action: StopAction,
        soft_shutdown_grace: timedelta,
        fanout: Fanout = DEFAULT_FANOUT,
    ) -> PowerOffOutcome:
        """Stop the VMs as `action` says, confirm it, and mark each stopped VM.

        See `power.py` for the rules of each action. `powered_off` holds every VM
        stopped (off, or suspended by a suspend), and `marks` each one's state right
        after (read in one batched request), for a resume to compare against.
        """
        with self.session.translating(f"stop virtual machines ({action.value})"):
            return self._power.run(
                vms, action=action, soft_shutdown_grace=soft_shutdown_grace, fanout=fanout
            )

    def set_extra_config(
        self,
        vms: Sequence[VmRef],
        key: str,
        value: str,
        *,
        fanout: Fanout = DEFAULT_FANOUT,
    ) -> GuestNoticeOutcome:
        """Set extra config `key` (a `guestinfo.` variable) to `value` on every VM; "" clears.

        One `ReconfigVM_Task` per VM that does not hold the value already, confirmed by
        its success; see `guest.py`.
        """
        with self.session.translating(f"set {key} on virtual machines"):
            return set_extra_config(self.session, self._tasks, vms, key, value, fanout=fanout)

    def read_extra_config(self, vms: Sequence[VmRef], key: str) -> dict[VmRef, str]:
        """The value of extra config `key` on each VM that has one (one batched read)."""
        with self.session.translating(f"read {key}"):
            return read_extra_config(self.session, vms, key)

    def resume(
        self,
        marks: Sequence[VmMark],
        *,
        workflow_id: str,
        annotation_field: str,
        annotation_json: str,
        fanout: Fanout = DEFAULT_FANOUT,
        powered_on_before: Collection[VmRef] = (),
        on_powering_on: Callable[[VmRef], None] = _ignore,
    ) -> ResumeOutcome:
        """Power on the marked VMs nobody changed since, and annotate them resumed.

        A VM is skipped, with the reason, when it is gone, powered on, reconfigured
        (`config.changeVersion`), on another host or pool, or no longer carries the
        annotation of `workflow_id` in custom field `annotation_field`. See `resume.py`.
        `on_powering_on` hears of each VM just before its power-on call; pass those VMs
        back as `powered_on_before` when running again after an interruption.
        """
        with self.session.translating("resume virtual machines"):
            return self._resume.run(
                marks,
                workflow_id=workflow_id,
                annotation_field=annotation_field,
                annotation_json=annotation_json,
                fanout=fanout,
                powered_on_before=powered_on_before,
                on_powering_on=on_powering_on,
            )

    def annotate(
        self,
        vms: Sequence[VmRef],
        key: str,
        value: str,
        *,
        fanout: Fanout = DEFAULT_FANOUT,
    ) -> AnnotateOutcome:
        """Set custom field `key` (created if missing) to `value` on every VM."""
        with self.session.translating(f"annotate virtual machines ({key})"):
            return self._fields.set(vms, key, value, fanout=fanout)

    def custom_field_key(self, name: str) -> int:
        """The key of custom field `name` for VMs, created if missing."""
        with self.session.translating(f"look up custom field {name!r}"):
            return self._fields.key(name)

    def read_custom_field(self, vms: Sequence[VmRef], name: str) -> dict[VmRef, str]:
        """The value of custom field `name` on each VM that has one (one batched read)."""
        with self.session.translating(f"read custom field {name!r}"):
            key = self._fields.key(name)
            return read_custom_values(self.session, vms, key)

    # -- lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        """Log both sessions out; idempotent. The client cannot be used afterwards."""
        try:
            self.session.close()
        finally:
            self.tagging.close()

    def __enter__(self) -> VSphereClient:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
