"""A short-lived program's Temporal runtime, collected before the interpreter finalizes.

The workaround for temporalio/sdk-python#300: the SDK's client objects sit in reference
cycles, and freed while the interpreter finalizes they abort or segfault the process now and
then. `run_collected` gives a command a runtime of its own and collects it, and every client
made with it, while the interpreter is still whole. The worker, whose runtime lives as long
as the process, has its own answer (`cli/worker_cmd.py`, `_exit`).

temporalio is imported inside the functions, as in `client.py`: loading it is slow.
"""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from temporalio.runtime import Runtime

T = TypeVar("T")

RELEASE_TIMEOUT = 10.0  # a loaded machine's SDK threads have taken over 2 s


def run_collected(
    main: Callable[[Runtime], Coroutine[Any, Any, T]],
    on_error: Callable[[Exception], T] | None = None,
) -> T:
    """`asyncio.run(main(runtime))` with a Temporal runtime of its own, collected on return.

    For a short-lived program (a CLI command, the demo). temporalio's client objects sit in
    reference cycles; freed while the interpreter finalizes, they abort or segfault the
    process now and then (sdk-python#300: 7 of 40 `workflow status` runs exited 134/139
    instead of 1). Collected here, while the interpreter is still whole, they cannot.

    An exception's traceback holds the frames that hold the client, so it is dealt with
    before collecting: `on_error` answers it (its result is returned), or, without one, it
    is raised again without its tracebacks.

    The SDK's own threads may still hold the connection for a moment after the loop ends (a
    call that failed drops it from there, not from Python): collecting once is not always
    enough (4 of 40 runs kept the runtime), so collection repeats until the runtime is gone,
    for at most `RELEASE_TIMEOUT` seconds.
    """
    from temporalio.runtime import Runtime, TelemetryConfig

    error: BaseException | None = None
    runtime: Runtime | None = Runtime(telemetry=TelemetryConfig())
    released = weakref.ref(runtime)
    before = _temporal_objects()
    try:
        assert runtime is not None
        return asyncio.run(main(runtime))
    except Exception as exc:  # noqa: BLE001 - answered by on_error, or raised again
        if on_error is not None:
            return on_error(exc)
        error = _without_tracebacks(exc)
    finally:
        runtime = None
        _collect_until_gone(released, before)
    raise error


def _temporal_objects() -> set[int]:
    from temporalio.client import Client
    from temporalio.service import ServiceClient

    return {id(o) for o in gc.get_objects() if isinstance(o, Client | ServiceClient)}


def _collect_until_gone(obj: weakref.ref[Any], before: set[int]) -> None:
    """Collect until the runtime and the Temporal clients made since `before` are gone, or
    the timeout passes (clients that existed before, a caller's own, are not waited for)."""

    def alive() -> bool:
        return obj() is not None or bool(_temporal_objects() - before)

    deadline = time.monotonic() + RELEASE_TIMEOUT
    gc.collect()
    while alive() and time.monotonic() < deadline:
        time.sleep(0.02)
        gc.collect()


def _without_tracebacks(exc: BaseException) -> BaseException:
    seen: BaseException | None = exc
    while seen is not None:
        seen.__traceback__ = None
        seen = seen.__cause__ or seen.__context__
    return exc
