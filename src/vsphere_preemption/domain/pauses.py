"""Pauses and quiet windows: whether a preemption may act now, and if not, until when.

An operator's pause (`preemptctl pause`) covers everything, one alarm, or one alarm on one
entity, for a while or until it is lifted. A policy's quiet window (the weekly maintenance
window, say) is a pause that comes back by itself: given days, a start and an end time of day
and a time zone. A run whose alarm is covered by either is held: planned and shown, never
acted on, until both have ended.

Pure: the caller gives the time (a workflow gives `workflow.now()`), and the answer depends on
nothing else. zoneinfo is the standard library's; it reads the system's time zone database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from vsphere_preemption.domain.durations import parse_seconds
from vsphere_preemption.domain.shapes import HoldWire

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_A_DAY = 24 * 60
MAX_REASON = 500  # a reason is a line an operator reads, not a document


@dataclass(frozen=True)
class Pause:
    """An operator's pause. `alarm` None: every alarm; `entity` (a moref value) None: every
    entity of the alarm. `until` None: until someone lifts it."""

    reason: str
    alarm: str | None = None
    entity: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    by: str = ""  # who paused, as the CLI found the user
    reply_to: str = ""  # where the registry announces it (a CloudEvents sink); "" for none

    @property
    def key(self) -> tuple[str | None, str | None]:
        """One pause per scope: pausing a scope again replaces its pause."""
        return (self.alarm, self.entity)

    def scope(self) -> str:
        return scope_text(self.alarm, self.entity)

    def covers(self, alarm: str, entity: str | None) -> bool:
        if self.alarm is not None and self.alarm != alarm:
            return False
        return self.entity is None or self.entity == entity

    def active(self, now: datetime) -> bool:
        return self.until is None or now < self.until

    def to_wire(self) -> dict[str, Any]:
        return {
            "alarm": self.alarm,
            "entity": self.entity,
            "scope": self.scope(),
            "reason": self.reason,
            "since": None if self.since is None else _iso(self.since),
            "until": None if self.until is None else _iso(self.until),
            "by": self.by,
            "replyTo": self.reply_to,
        }

    @classmethod
    def from_wire(cls, obj: Mapping[str, Any]) -> Pause:
        since, until = obj.get("since"), obj.get("until")
        return cls(
            reason=str(obj.get("reason", "")),
            alarm=obj.get("alarm") or None,
            entity=obj.get("entity") or None,
            since=None if not since else _parse_iso(since),
            until=None if not until else _parse_iso(until),
            by=str(obj.get("by", "")),
            reply_to=str(obj.get("replyTo", "")),
        )


def scope_text(alarm: str | None, entity: str | None) -> str:
    if alarm is None:
        return "everything"
    return f"alarm {alarm}" if entity is None else f"alarm {alarm} on {entity}"


def pause_problem(alarm: str | None, entity: str | None, reason: str) -> str | None:
    """Why a pause cannot be taken as asked, or None."""
    if entity is not None and alarm is None:
        return "an entity is paused for one alarm: name the alarm too"
    if not reason.strip():
        return "a pause needs a reason (it is what operators read)"
    if len(reason) > MAX_REASON:
        return f"the reason is longer than {MAX_REASON} characters"
    return None


def pause_expiry(seconds: Any, now: datetime) -> datetime | None:
    """When a pause asked for `seconds` (a number or a duration text) at `now` ends; None (no
    or zero seconds): when someone lifts it. ValueError for what is no duration, or one whose
    end no clock can tell (past the year 9999)."""
    if seconds is None or seconds == 0 or seconds == "":
        return None
    length = parse_seconds(seconds)
    try:
        return now + timedelta(seconds=length)
    except OverflowError:
        raise ValueError(f"a pause of {length:g}s ends beyond any date") from None


def _scope_name(value: Any, what: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"the {what} must be a name, got {value!r}")
    return value


def requested_pause(body: Mapping[str, Any], now: datetime) -> Pause:
    """The pause a Pause signal asks for at `now`; ValueError saying why it cannot be taken.

    The registry drops what this refuses instead of failing on it: a signal it cannot read
    would fail its workflow task again and again, and hold every run while the pauses could
    not be read."""
    alarm = _scope_name(body.get("alarm"), "alarm")
    entity = _scope_name(body.get("entity"), "entity")
    reason = body.get("reason", "")
    if not isinstance(reason, str):
        raise ValueError(f"the reason must be text, got {reason!r}")
    problem = pause_problem(alarm, entity, reason)
    if problem is not None:
        raise ValueError(problem)
    return Pause(
        reason=reason.strip(),
        alarm=alarm,
        entity=entity,
        since=now,
        until=pause_expiry(body.get("forSeconds"), now),
        by=str(body.get("by", "")),
        reply_to=str(body.get("replyTo", "")),
    )


def next_expiry(pauses: Iterable[Pause], now: datetime) -> timedelta | None:
    """How long until the first of `pauses` ends by itself (zero if one already has); None
    when none ends by itself (no timer is needed)."""
    ends = [p.until for p in pauses if p.until is not None]
    if not ends:
        return None
    return max(min(ends) - now, timedelta(0))


@dataclass(frozen=True)
class QuietWindow:
    """Every listed day (the day the window starts), from `start` to `end` minutes after local
    midnight in `zone`; an end at or before the start ends on the next day (22:00-02:00)."""

    days: tuple[int, ...]  # date.weekday() numbers, Monday 0
    start: int  # minutes after midnight, 0..1439
    end: int  # minutes after midnight, 1..1440 (24:00: the end of the day)
    zone: str = "UTC"

    def to_wire(self) -> dict[str, Any]:
        return {
            "days": [DAYS[d] for d in self.days],
            "start": _hhmm(self.start),
            "end": _hhmm(self.end),
            "timeZone": self.zone,
        }

    def describe(self) -> str:
        days = ",".join(DAYS[d] for d in self.days)
        return f"quiet window {days} {_hhmm(self.start)}-{_hhmm(self.end)} {self.zone}"

    def end_if_within(self, now: datetime) -> datetime | None:
        """The end of the occurrence of this window that `now` falls in (UTC), or None."""
        zone = ZoneInfo(self.zone)
        today = now.astimezone(zone).date()
        # The window that started yesterday may still run past midnight.
        for day in (today - timedelta(days=1), today):
            if day.weekday() not in self.days:
                continue
            begin = _local(day, self.start, zone)
            length = self.end - self.start
            if length <= 0:
                length += MINUTES_A_DAY  # 22:00-02:00 ends the next day
            finish = _local(day, self.start + length, zone)
            if begin <= now.astimezone(UTC) < finish:
                return finish
        return None


def _local(day: date, minutes: int, zone: ZoneInfo) -> datetime:
    """`minutes` after `day`'s local midnight as a wall clock reads them, in UTC (a day that
    skips an hour for summer time still starts the window at its written time)."""
    extra, minute = divmod(minutes, MINUTES_A_DAY)
    wall = datetime(day.year, day.month, day.day, tzinfo=zone) + timedelta(
        days=extra, minutes=minute
    )
    return wall.astimezone(UTC)


@dataclass(frozen=True)
class Hold:
    """Why a run may not act now, and when it may (None: when someone lifts a pause)."""

    until: datetime | None
    reason: str
    source: str  # "pause", "quiet", or "pause+quiet"
    pauses: tuple[Pause, ...] = ()
    windows: tuple[QuietWindow, ...] = ()

    def to_wire(self) -> HoldWire:
        return {
            "until": None if self.until is None else _iso(self.until),
            "reason": self.reason,
            "source": self.source,
            "status": self.status(),
        }

    def status(self) -> str:
        when = "unpaused" if self.until is None else _iso(self.until)
        return f"paused until {when}: {self.reason}"


def hold_for(
    now: datetime,
    pauses: Iterable[Pause],
    windows: Sequence[QuietWindow],
    alarm: str,
    entity: str | None,
) -> Hold | None:
    """Whether a run of `alarm` on `entity` is held at `now`, and until when."""
    covering = [p for p in pauses if p.active(now) and p.covers(alarm, entity)]
    quiet = [(w, end) for w in windows if (end := w.end_if_within(now)) is not None]
    if not covering and not quiet:
        return None
    ends: list[datetime | None] = [p.until for p in covering] + [end for _, end in quiet]
    until = None if any(e is None for e in ends) else max(e for e in ends if e is not None)
    reasons = [f"{p.reason} (paused: {p.scope()}{_by(p)})" for p in covering]
    reasons += [w.describe() for w, _ in quiet]
    source = "+".join(s for s, on in (("pause", covering), ("quiet", quiet)) if on)
    return Hold(until, "; ".join(reasons), source, tuple(covering), tuple(w for w, _ in quiet))


def _by(pause: Pause) -> str:
    return f" by {pause.by}" if pause.by else ""


# -- reading quiet windows as people write them ---------------------------------------------


def quiet_windows(value: Any, path: str = "quiet") -> tuple[tuple[QuietWindow, ...], list[str]]:
    """The windows of a policy's `quiet:` (a list of objects), and every problem found."""
    problems: list[str] = []
    if value is None:
        return (), problems
    if not isinstance(value, list):
        return (), [f"{path} must be a list of windows ({{days, start, end, timeZone}})"]
    windows = []
    for index, item in enumerate(value):
        window = _window(item, f"{path}[{index}]", problems)
        if window is not None:
            windows.append(window)
    return tuple(windows), problems


def _window(item: Any, path: str, problems: list[str]) -> QuietWindow | None:
    known = {"days", "start", "end", "timeZone"}
    if not isinstance(item, Mapping):
        problems.append(f"{path} must be an object ({', '.join(sorted(known))})")
        return None
    before = len(problems)
    for key in item:
        if key not in known:
            problems.append(f"{path}.{key} is not a field ({', '.join(sorted(known))})")
    days = _days(item.get("days"), f"{path}.days", problems)
    start = _minutes(item.get("start"), f"{path}.start", problems, end=False)
    end = _minutes(item.get("end"), f"{path}.end", problems, end=True)
    zone = item.get("timeZone", "UTC")
    if not isinstance(zone, str) or not zone.strip():
        problems.append(f"{path}.timeZone must be a time zone name (Europe/Berlin, UTC)")
    else:
        try:
            ZoneInfo(zone.strip())
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(f"{path}.timeZone {zone!r} is not a known time zone")
    if start is not None and end is not None and start == end:
        problems.append(f"{path} starts and ends at the same time (for a whole day: 00:00-24:00)")
    if len(problems) > before or days is None or start is None or end is None:
        return None
    return QuietWindow(days, start, end, str(zone).strip())


def _days(value: Any, path: str, problems: list[str]) -> tuple[int, ...] | None:
    if value is None:
        return tuple(range(7))  # every day
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        problems.append(f"{path} must be a day or a list of days (mon, tue, ..., or mon-fri)")
        return None
    found: set[int] = set()
    for item in items:
        if not isinstance(item, str):
            problems.append(f"{path} must name days (mon, tue, ..., or mon-fri)")
            return None
        first, dash, last = item.strip().lower().partition("-")
        a, b = _day(first), _day(last) if dash else _day(first)
        if a is None or b is None:
            problems.append(f"{path}: {item!r} is not a day (mon, tue, ..., or a range mon-fri)")
            return None
        span = (b - a) % 7
        found.update((a + i) % 7 for i in range(span + 1))
    return tuple(sorted(found))


def _day(text: str) -> int | None:
    """A day by its name or any start of it of three letters or more (sat, satur, saturday)."""
    full = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    if len(text) < 3:
        return None
    return next((i for i, name in enumerate(full) if name.startswith(text)), None)


def _minutes(value: Any, path: str, problems: list[str], *, end: bool) -> int | None:
    if not isinstance(value, str):
        problems.append(f"{path} must be a time of day like 02:00")
        return None
    hours, colon, minutes = value.strip().partition(":")
    if not (colon and hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        problems.append(f"{path} must be a time of day like 02:00")
        return None
    total = int(hours) * 60 + int(minutes)
    limit = MINUTES_A_DAY if end else MINUTES_A_DAY - 1
    if int(minutes) > 59 or total > limit:
        problems.append(f"{path} must be between 00:00 and {'24:00' if end else '23:59'}")
        return None
    return total


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_iso(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
