"""PreemptionPausesWorkflow: the pause switch's durable home, one per task queue.

Why a workflow: a pause must outlive every component (the CLI that set it, the worker, the
function, Temporal itself, whose database keeps it), exist before any alarm's workflow does,
and be seen where operators already look. This workflow's state is the list of pauses; each
pause, lift and expiry is a signal or a timer in its history (the Temporal UI shows them, the
reason in each), its memo carries the pauses as one line per pause (the UI's workflow list), and
its `pauses` query answers them (`preemptctl pause --list`, and the workers' ReadPauses).

A held PreemptVMsWorkflow asks to be told of the next change (WATCH_SIGNAL, naming the version
it read); on a change this workflow signals each watcher PAUSES_CHANGED_SIGNAL once, so an
unpause releases held runs at once rather than at their next re-check. A pause that expires is
dropped by a timer here (and announced); the held runs have timers of their own for it.

Each change is announced as a CloudEvent to the pause's replyTo (the CLI passes K_SINK), through
the worker's SendPreemptedEvent activity. Deterministic code, as workflow.py.
"""

from __future__ import annotations

import contextlib
import json
from collections import deque
from datetime import timedelta
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from vsphere_preemption.domain.pauses import Pause, next_expiry, requested_pause
    from vsphere_preemption.temporal.activities import PreemptionActivities
    from vsphere_preemption.temporal.contracts import SendEventInput
    from vsphere_preemption.wire import (
        PAUSE_SIGNAL,
        PAUSED_EVENT_TYPE,
        PAUSES_CHANGED_SIGNAL,
        PAUSES_QUERY,
        PAUSES_WORKFLOW_TYPE,
        UNPAUSE_SIGNAL,
        UNPAUSED_EVENT_TYPE,
        WATCH_SIGNAL,
        format_time,
        go_json,
    )

# Changes remembered in the state (the query's `log`), newest last: the audit trail a person
# reads without opening the history.
LOG_KEEP = 50
# Continue as new past this many history events (pauses carried): replays stay quick.
MAX_HISTORY_EVENTS = 1_000
SEND_TIMEOUT = timedelta(minutes=1)


@workflow.defn(name=PAUSES_WORKFLOW_TYPE)
class PauseRegistryWorkflow:
    def __init__(self) -> None:
        self._pauses: dict[tuple[str | None, str | None], Pause] = {}
        self._inbox: deque[tuple[str, dict[str, Any]]] = deque()
        self._watchers: set[str] = set()
        self._version = 0
        self._stale_watcher = False  # a watcher read an older version than this one's
        self._log: deque[dict[str, Any]] = deque(maxlen=LOG_KEEP)

    @workflow.run
    async def run(self, carried: str | None = None) -> None:
        if carried is not None:
            self._restore(carried)
        while True:
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: bool(self._inbox), timeout=self._next_expiry()
                )
            changes: list[tuple[str, Pause, str]] = []  # (event type, pause, why)
            while self._inbox:
                name, body = self._inbox.popleft()
                changes += self._take(name, body)
            now = workflow.now()
            for key, pause in list(self._pauses.items()):
                if not pause.active(now):
                    del self._pauses[key]
                    changes.append((UNPAUSED_EVENT_TYPE, pause, "expired"))
            if changes:
                self._version += 1
                workflow.upsert_memo({"pauses": self._summary()})
                for number, (kind, pause, why) in enumerate(changes, 1):
                    self._note(kind, pause, why)
                    await self._announce(kind, pause, why, number)
            if self._watchers and (changes or self._stale_watcher):
                await self._tell_watchers()
            self._stale_watcher = False
            if _history_is_long():
                self._continue_as_new()

    @workflow.signal(name=PAUSE_SIGNAL)
    def on_pause(self, body: dict[str, Any]) -> None:
        self._inbox.append((PAUSE_SIGNAL, body))

    @workflow.signal(name=UNPAUSE_SIGNAL)
    def on_unpause(self, body: dict[str, Any]) -> None:
        self._inbox.append((UNPAUSE_SIGNAL, body))

    @workflow.signal(name=WATCH_SIGNAL)
    def on_watch(self, body: dict[str, Any]) -> None:
        self._inbox.append((WATCH_SIGNAL, body))

    @workflow.query(name=PAUSES_QUERY)
    def pauses(self) -> str:
        """The pauses (expired ones included until the timer drops them: readers compare
        `until` with their own clock), the change counter, and the recent changes."""
        return go_json(
            {
                "version": self._version,
                "pauses": [p.to_wire() for p in self._pauses.values()],
                "log": list(self._log),
            }
        ).decode()

    # -- changes --------------------------------------------------------------------------

    def _take(self, name: str, body: dict[str, Any]) -> list[tuple[str, Pause, str]]:
        now = workflow.now()
        alarm, entity = body.get("alarm") or None, body.get("entity") or None
        if name == WATCH_SIGNAL:
            watcher = str(body.get("workflowID", ""))
            if watcher:
                self._watchers.add(watcher)
                # Changed since that workflow read: wake it now, not at the next change.
                self._stale_watcher = self._stale_watcher or (
                    int(body.get("version", 0)) < self._version
                )
            return []
        if name == PAUSE_SIGNAL:
            try:
                pause = requested_pause(body, now)
            except ValueError as exc:
                workflow.logger.warning("dropping a pause: %s", exc)
                return []
            self._pauses[pause.key] = pause  # pausing a scope again replaces its pause
            workflow.logger.info("paused %s: %s", pause.scope(), pause.reason)
            return [(PAUSED_EVENT_TYPE, pause, "paused")]
        if name == UNPAUSE_SIGNAL:
            keys = list(self._pauses) if body.get("all") else [(alarm, entity)]
            lifted = [self._pauses.pop(k) for k in keys if k in self._pauses]
            by = str(body.get("by", ""))
            why = f"unpaused by {by}" if by else "unpaused"
            for pause in lifted:
                workflow.logger.info("unpaused %s", pause.scope())
            return [(UNPAUSED_EVENT_TYPE, pause, why) for pause in lifted]
        return []

    def _next_expiry(self) -> timedelta | None:
        return next_expiry(self._pauses.values(), workflow.now())  # None: no timer

    def _summary(self) -> str:
        lines = []
        for pause in self._pauses.values():
            until = "until unpaused" if pause.until is None else f"until {format_time(pause.until)}"
            lines.append(f"{pause.scope()} {until}: {pause.reason}")
        return "\n".join(lines) or "nothing paused"

    def _note(self, kind: str, pause: Pause, why: str) -> None:
        self._log.append({"at": format_time(workflow.now()), "what": why, **pause.to_wire()})

    async def _announce(self, kind: str, pause: Pause, why: str, number: int) -> None:
        if not pause.reply_to:
            return
        info = workflow.info()
        data = {"registry": info.workflow_id, "what": why, **pause.to_wire()}
        data.pop("replyTo")
        try:
            await workflow.execute_activity_method(
                PreemptionActivities.send_preempted_event,
                SendEventInput(
                    reply_to=pause.reply_to,
                    # Unique per change: the registry's version and the change's place in it.
                    event_id=f"{info.workflow_id}-{self._version}-{number}",
                    data_json=go_json(data).decode(),
                    event_type=kind,
                ),
                start_to_close_timeout=SEND_TIMEOUT,
            )
        except FailureError as err:
            # The pause holds whether or not the sink heard of it.
            workflow.logger.error("announcing %s failed: %s", why, err.cause or err)

    async def _tell_watchers(self) -> None:
        watchers, self._watchers = sorted(self._watchers), set()
        for watcher in watchers:
            try:
                await workflow.get_external_workflow_handle(watcher).signal(PAUSES_CHANGED_SIGNAL)
            except Exception as exc:  # noqa: BLE001 (a watcher gone is no failure of ours)
                workflow.logger.info("could not tell %s of the change: %s", watcher, exc)

    # -- a life without end -----------------------------------------------------------------

    def _continue_as_new(self) -> NoReturn:
        carried = {
            "version": self._version,
            "pauses": [p.to_wire() for p in self._pauses.values()],
            "watchers": sorted(self._watchers),
            "log": list(self._log),
            "inbox": [[name, body] for name, body in self._inbox],
        }
        workflow.continue_as_new(go_json(carried).decode())

    def _restore(self, carried: str) -> None:
        obj = json.loads(carried)
        self._version = int(obj.get("version", 0))
        for item in obj.get("pauses", []):
            pause = Pause.from_wire(item)
            self._pauses[pause.key] = pause
        self._watchers = set(obj.get("watchers", []))
        self._log.extend(obj.get("log", []))
        self._inbox.extend((name, body) for name, body in obj.get("inbox", []))


def _history_is_long() -> bool:
    info = workflow.info()
    return (
        info.is_continue_as_new_suggested()
        or info.get_current_history_length() > MAX_HISTORY_EVENTS
    )
