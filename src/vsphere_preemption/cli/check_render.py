"""`preemptctl check`'s output: one line per check (and what to do), or JSON. Pure."""

from __future__ import annotations

from typing import Any

from vsphere_preemption.domain.preflight import Report, Status

_MARK = {Status.OK: "ok", Status.WARN: "WARN", Status.FAIL: "FAIL", Status.SKIP: "skip"}


def render_text(report: Report) -> str:
    width = max((len(c.name) for c in report.checks), default=0)
    lines: list[str] = []
    for check in report.checks:
        lines.append(f"{_MARK[check.status]:<4}  {check.name:<{width}}  {check.summary}")
        if check.fix and check.status in (Status.FAIL, Status.WARN):
            lines.append(f"{'':<4}  {'':<{width}}  -> {check.fix}")
    lines.append(verdict(report))
    return "\n".join(lines)


def verdict(report: Report) -> str:
    warnings = len(report.warnings)
    also = f" ({warnings} warning{'s' if warnings != 1 else ''})" if warnings else ""
    if not report.failed:
        return f"all checks passed{also}"
    names = ", ".join(f"{c.name} ({c.summary})" for c in report.failed)
    return f"{len(report.failed)} failed{also if not report.strict else ''}: {names}"


def report_json(report: Report) -> dict[str, Any]:
    return {
        "ok": not report.failed,
        "exitCode": report.exit_code,
        "strict": report.strict,
        "failed": [c.name for c in report.failed],
        "warnings": [c.name for c in report.warnings],
        "checks": [
            {
                "name": c.name,
                "status": c.status.value,
                "summary": c.summary,
                "fix": c.fix,
                "details": dict(c.details),
            }
            for c in report.checks
        ],
    }
