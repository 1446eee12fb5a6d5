"""One logged-in vSphere SOAP (pyVmomi) session, shared by threads, re-logged-in on expiry.

pyVmomi's stub is safe to share between threads (its HTTP connection pool has a
lock; each call builds its own request). What is not safe is logging in: two threads
that both see `NotAuthenticated` must not both log in, so login is serialized under a
lock and guarded by a generation number (the second thread finds the session already
renewed and just retries).

Every SOAP HTTP round trip is counted (`RoundTrips`), for the benchmarks and for the
tests that prove reads are batched.
"""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from vsphere_preemption.domain.model import VmRef
from vsphere_preemption.logs import get_logger
from vsphere_preemption.vsphere.config import VCenterConfig
from vsphere_preemption.vsphere.errors import (
    LoginError,
    TLSVerificationError,
    VSphereError,
    scrub,
)
from vsphere_preemption.vsphere.sdk import connect, vim, vmodl

log = get_logger(__name__)

T = TypeVar("T")

PC = vmodl.query.PropertyCollector

# A pooled keep-alive connection the server has closed (idle timeout, vCenter
# restart) fails like this on first use; the request never reached vCenter, or a
# retried call is harmless (every call we make is idempotent), so retry once.
_STALE_CONNECTION = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    BrokenPipeError,
    ssl.SSLEOFError,
)


# Told of every round trip: the API (soap, rest), the outcome (ok; fault: vCenter answered
# with an error; error: no answer) and its seconds (None when not timed). The worker's metrics.
RequestObserver = Callable[[str, str, float | None], None]


class RoundTrips:
    """A thread-safe count of HTTP round trips to vCenter, and who else is told of them."""

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()
        self.observer: RequestObserver | None = None

    def add(
        self, n: int = 1, *, api: str = "soap", outcome: str = "ok", seconds: float | None = None
    ) -> None:
        with self._lock:
            self._count += n
        observer = self.observer
        if observer is not None:
            for _ in range(n):
                observer(api, outcome, seconds)

    @property
    def count(self) -> int:
        return self._count


@dataclass(frozen=True)
class Connection:
    """A logged-in stub and the service content it serves; `generation` counts logins."""

    stub: Any
    content: Any
    generation: int

    def managed(self, ref: VmRef) -> Any:
        """The pyVmomi managed object for a reference (no round trip)."""
        return getattr(vim, ref.type)(ref.value, self.stub)


def _raise_if_unauthenticated(answer: Any) -> None:
    """A property read on a session the server does not know is a NotAuthenticated fault.

    vCenter faults the call itself; vcsim (after a restart on the same address, say)
    answers instead with every property missing, each with a NotAuthenticated fault:
    objects with empty property sets, which read as VMs with no name and no power state.
    Raising the fault here lets `SoapSession.call` log in again and retry, whatever
    made the read (`retrieve`, a raw RetrievePropertiesEx, a pyVmomi property accessor).
    """
    if isinstance(answer, PC.RetrieveResult):
        contents: Any = answer.objects or ()
    elif isinstance(answer, list):
        contents = answer
    else:
        return
    for content in contents:
        for missing in getattr(content, "missingSet", None) or ():
            if isinstance(missing.fault, vim.fault.NotAuthenticated):
                raise vim.fault.NotAuthenticated(
                    msg=f"property {missing.path} read without a session"
                )


def fault_name(exc: BaseException) -> str:
    """`vim.fault.NotAuthenticated` -> `NotAuthenticated`."""
    return type(exc).__name__.rsplit(".", 1)[-1]


def fault_text(exc: BaseException) -> str:
    """A short, safe description of a pyVmomi fault or a transport error."""
    name = fault_name(exc)
    msg = getattr(exc, "msg", None)
    if isinstance(exc, vmodl.MethodFault):
        if isinstance(exc, vim.fault.InvalidPowerState) and exc.existingState:
            return f"{name} (VM is {exc.existingState})"
        return f"{name}: {msg}" if msg else name
    if isinstance(exc, OSError) and exc.strerror:
        return f"{name}: {exc.strerror}"
    return f"{name}: {exc}" if str(exc) else name


class SoapSession:
    """Lazily connects; `call(fn)` runs fn with a live connection, re-logging in once."""

    def __init__(
        self,
        config: VCenterConfig,
        round_trips: RoundTrips,
        *,
        pool_size: int = 16,
        http_timeout: float = 120.0,
    ) -> None:
        self._config = config
        self._round_trips = round_trips
        self._pool_size = pool_size
        self._http_timeout = http_timeout
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._closed = False

    # -- session ------------------------------------------------------------------

    def connection(self) -> Connection:
        conn = self._conn
        if conn is not None:
            return conn
        with self._lock:
            if self._closed:
                raise VSphereError("the vSphere client is closed")
            if self._conn is None:
                stub, content = self._open()
                try:
                    self._login(content)
                except VSphereError:
                    _drop(stub)
                    raise
                self._conn = Connection(stub, content, 1)
            return self._conn

    def _open(self) -> tuple[Any, Any]:
        cfg = self._config
        context = cfg.ssl_context()
        try:
            stub = connect.SmartStubAdapter(
                host=cfg.host,
                port=cfg.port,
                path=cfg.soap_path,
                sslContext=context,
                poolSize=self._pool_size,
                httpConnectionTimeout=self._http_timeout,
            )
        except ssl.SSLCertVerificationError as exc:
            raise TLSVerificationError(
                f"cannot verify the TLS certificate of vCenter {cfg.address}: "
                f"{exc.verify_message or exc.reason}; give a CA bundle that signs it, or set "
                "VCENTER_INSECURE=true to skip verification (not for production)"
            ) from None
        except OSError as exc:
            raise VSphereError(f"cannot reach vCenter {cfg.address}: {fault_text(exc)}") from None
        except Exception:  # noqa: BLE001 (pyVim raises a bare Exception for "not a VIM server")
            raise VSphereError(
                f"vCenter {cfg.address} answers no vSphere SOAP API at {cfg.soap_path}"
            ) from None
        except BaseException:
            self._round_trips.add(1, outcome="error")  # pyVim's GET of vimServiceVersions.xml
            raise
        self._round_trips.add(1)
        self._count_calls(stub)
        try:
            content = vim.ServiceInstance("ServiceInstance", stub).RetrieveContent()
        except Exception as exc:  # noqa: BLE001 (turned into our safe error)
            _drop(stub)
            raise self.error(exc, "read the vCenter service content") from None
        return stub, content

    def _count_calls(self, stub: Any) -> None:
        # Every SOAP request, property accessors included, goes through InvokeMethod.
        invoke = stub.InvokeMethod
        round_trips = self._round_trips

        def counted(*args: Any, **kwargs: Any) -> Any:
            started = time.monotonic()
            outcome = "error"
            try:
                answer = invoke(*args, **kwargs)
                outcome = "ok"
                _raise_if_unauthenticated(answer)
                return answer
            except vmodl.MethodFault:
                outcome = "fault"  # vCenter answered, with a fault
                raise
            finally:
                round_trips.add(1, outcome=outcome, seconds=time.monotonic() - started)

        stub.InvokeMethod = counted

    def _login(self, content: Any) -> None:
        cfg = self._config
        try:
            content.sessionManager.Login(cfg.username, cfg.password, None)
        except vim.fault.InvalidLogin:
            raise LoginError(
                f"vCenter {cfg.address} refused the login of user {cfg.username!r}"
            ) from None
        except Exception as exc:  # noqa: BLE001 (turned into our safe error)
            raise self.error(exc, "log in to vCenter") from None
        log.info("vcenter.login", vcenter=cfg.address, user=cfg.username)

    def _relogin(self, stale: Connection) -> Connection:
        with self._lock:
            if self._closed:
                raise VSphereError("the vSphere client is closed")
            current = self._conn
            if current is not None and current.generation != stale.generation:
                return current  # another thread already renewed the session
            log.info("vcenter.session_expired", vcenter=self._config.address)
            self._login(stale.content)
            self._conn = Connection(stale.stub, stale.content, stale.generation + 1)
            return self._conn

    def call(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` (which makes SOAP calls) with a live session; faults propagate.

        Re-logs in once on `NotAuthenticated` (session expired or terminated) and
        retries once on a stale pooled connection; `fn` must be safe to run again,
        which every call this adapter makes is (reads, or actions that are no-ops
        the second time).
        """
        conn = self.connection()
        relogged = reconnected = False
        while True:
            try:
                return fn(conn)
            except vim.fault.NotAuthenticated:
                if relogged:
                    raise
                relogged = True
                conn = self._relogin(conn)
            except _STALE_CONNECTION:
                if reconnected:
                    raise
                reconnected = True  # pyVmomi dropped its pool; the retry opens a new one

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.content.sessionManager.Logout()
            log.info("vcenter.logout", vcenter=self._config.address)
        except vim.fault.NotAuthenticated:
            log.info("vcenter.logout_unneeded", vcenter=self._config.address)  # expired already
        except Exception as exc:  # noqa: BLE001 (best effort: the session may be gone already)
            log.warning("vcenter.logout_failed", vcenter=self._config.address, error=self.text(exc))
        finally:
            _drop(conn.stub)

    # -- errors -------------------------------------------------------------------

    def text(self, exc: BaseException) -> str:
        return scrub(fault_text(exc), [self._config.password])

    def error(self, exc: BaseException, doing: str) -> VSphereError:
        if isinstance(exc, VSphereError):
            return exc
        if isinstance(exc, ssl.SSLCertVerificationError):
            return TLSVerificationError(
                f"cannot verify the TLS certificate of vCenter {self._config.address}"
            )
        return VSphereError(f"cannot {doing} on vCenter {self._config.address}: {self.text(exc)}")

    @contextmanager
    def translating(self, doing: str) -> Iterator[None]:
        """Turn anything but our own errors into a safe VSphereError (no cause chain)."""
        try:
            yield
        except VSphereError:
            raise
        except Exception as exc:  # noqa: BLE001 (pyVmomi faults, sockets, http.client: all of it)
            raise self.error(exc, doing) from None

    # -- batched reads --------------------------------------------------------------

    def retrieve(
        self,
        refs: Sequence[VmRef],
        prop_specs: Sequence[Any],
        *,
        page_size: int | None = None,
        traversal: Sequence[Any] = (),
    ) -> tuple[list[Any], set[VmRef]]:
        """One RetrievePropertiesEx (plus continuation pages) for all `refs` at once.

        Returns the ObjectContents (of the refs and of whatever `traversal` reaches)
        and the refs that no longer exist. Vanished objects are left out of the result
        where the server honours `reportMissingObjectsInResults`; older servers fault
        `ManagedObjectNotFound` naming one of them: drop it and ask again (one extra
        round trip per vanished object, which only a stale tag association causes).
        """
        remaining = list(dict.fromkeys(refs))
        missing: set[VmRef] = set()
        while remaining:
            asked = list(remaining)
            try:
                contents = self.call(
                    partial(
                        _retrieve_once,
                        refs=asked,
                        prop_specs=prop_specs,
                        page_size=page_size,
                        traversal=traversal,
                    )
                )
            except vmodl.fault.ManagedObjectNotFound as exc:
                gone = ref_of(exc.obj) if exc.obj is not None else None
                if gone is None or gone not in remaining:
                    raise
                missing.add(gone)
                remaining = [r for r in remaining if r != gone]
                continue
            found = {ref_of(c.obj) for c in contents if not _vanished(c)}
            missing.update(r for r in remaining if r not in found)
            return [c for c in contents if not _vanished(c)], missing
        return [], missing


def _vanished(content: Any) -> bool:
    return any(
        isinstance(m.fault, vmodl.fault.ManagedObjectNotFound) for m in content.missingSet or ()
    )


def _retrieve_once(
    conn: Connection,
    refs: Sequence[VmRef],
    prop_specs: Sequence[Any],
    page_size: int | None,
    traversal: Sequence[Any],
) -> list[Any]:
    spec = PC.FilterSpec(
        objectSet=[
            PC.ObjectSpec(obj=conn.managed(ref), skip=False, selectSet=list(traversal))
            for ref in refs
        ],
        propSet=list(prop_specs),
        reportMissingObjectsInResults=True,
    )
    collector = conn.content.propertyCollector
    result = collector.RetrievePropertiesEx([spec], PC.RetrieveOptions(maxObjects=page_size))
    contents: list[Any] = []
    while result is not None:
        contents.extend(result.objects or ())
        if not result.token:
            break
        result = collector.ContinueRetrievePropertiesEx(result.token)
    return contents


def check_power_state(ref: VmRef, content: Any) -> None:
    """A VM whose power state cannot be read is an error: no caller may guess it.

    (An empty power state read as "not running" once left every VM out silently.)
    """
    if ref.type != "VirtualMachine":
        return
    for missing in content.missingSet or ():
        if missing.path in ("runtime.powerState", "name"):
            fault = type(missing.fault).__name__.rsplit(".", 1)[-1]
            raise VSphereError(f"cannot read {missing.path} of {ref}: {fault}")
    if "runtime.powerState" not in props(content):
        raise VSphereError(f"vCenter gave no power state for {ref}")


def props(content: Any) -> dict[str, Any]:
    """An ObjectContent's properties as a dict."""
    return {p.name: p.val for p in content.propSet or ()}


def ref_of(obj: Any) -> VmRef:
    """A pyVmomi managed object as our reference type."""
    return VmRef(value=obj._moId, type=obj._wsdlName)


def _drop(stub: Any) -> None:
    """Close the stub's pooled connections, and any returned to it later.

    A pool thread whose call was abandoned (`shutdown(wait=False)`) can hand its connection
    back after the pool was dropped; with no room left it is closed, not pooled and leaked."""
    stub.poolSize = 0
    stub.DropConnections()
