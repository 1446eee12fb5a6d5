"""The vSphere tagging REST API: one session, re-created on 401, two URL dialects.

vCenter has served tagging at `/rest/com/vmware/cis/tagging/...` (responses wrapped
in `{"value": ...}`, `id:` path prefixes, `~action=`) since 6.5, and additionally at
`/api/cis/tagging/...` (bare JSON, `action=`) since 7.0U2; vcsim serves only `/rest`.
We log in at `/rest` first, because every vCenter we target and vcsim answer it, and
fall back to `/api` only when `/rest` answers 404 (a vCenter that dropped the
deprecated API). vcsim has no `/api` tagging: tests/vsphere/test_api_dialect.py checks
that dialect against VMware's own Python SDK instead (the requests it sends for each call,
and the responses its models make).

Tags are found by name: the API has no name lookup, so resolving a name costs one
list plus one read per tag. Names resolve once per `tag_cache_ttl`; a cached tag
that has since been deleted (404) is resolved again at once. A session replaced because
vCenter forgot it (a restart; idle expiry too, at the cost of one lookup) drops every
cached name: a vCenter restored or rebuilt
(vcsim on every restart) gives re-created tags and categories new ids, and a reader of
cached ids would find nobody tagged until the cache expired. Readers compare
`renewals` before and after to know they must read again. Tag names are unique
only within a category: a name that several categories use means all those tags.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from vsphere_preemption.domain.model import VmRef
from vsphere_preemption.logs import get_logger
from vsphere_preemption.vsphere.config import VCenterConfig
from vsphere_preemption.vsphere.errors import (
    LoginError,
    TagNotFoundError,
    TLSVerificationError,
    VSphereError,
    scrub,
)
from vsphere_preemption.vsphere.soap import RoundTrips

log = get_logger(__name__)

SESSION_HEADER = "vmware-api-session-id"


@dataclass(frozen=True)
class Dialect:
    """How one generation of the REST API spells paths, actions and results."""

    name: str
    session: str
    category: str
    tag: str
    association: str
    id_prefix: str
    action_param: str
    wrapped: bool  # results inside {"value": ...}

    def unwrap(self, body: Any) -> Any:
        return body.get("value") if self.wrapped and isinstance(body, dict) else body

    def wrap_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        return {"create_spec": spec} if self.wrapped else spec

    def item(self, collection: str, ident: str) -> str:
        return f"{collection}/{self.id_prefix}{ident}"


REST = Dialect(
    name="rest",
    session="/rest/com/vmware/cis/session",
    category="/rest/com/vmware/cis/tagging/category",
    tag="/rest/com/vmware/cis/tagging/tag",
    association="/rest/com/vmware/cis/tagging/tag-association",
    id_prefix="id:",
    action_param="~action",
    wrapped=True,
)
API = Dialect(
    name="api",
    session="/api/session",
    category="/api/cis/tagging/category",
    tag="/api/cis/tagging/tag",
    association="/api/cis/tagging/tag-association",
    id_prefix="",
    action_param="action",
    wrapped=False,
)


class NotFound(VSphereError):
    """The REST API answered 404 for an object."""


class TaggingRest:
    """Thread-safe; lazy login; re-login once on 401; logout on close."""

    def __init__(
        self,
        config: VCenterConfig,
        round_trips: RoundTrips,
        *,
        tag_cache_ttl: float = 300.0,
        http_timeout: float = 60.0,
    ) -> None:
        self._config = config
        self._round_trips = round_trips
        self._tag_cache_ttl = tag_cache_ttl
        self._http = httpx.Client(
            base_url=config.rest_base, verify=config.ssl_context(), timeout=http_timeout
        )
        self._lock = threading.Lock()
        self._session: str | None = None
        self._dialect: Dialect | None = None
        self._closed = False
        self._tag_ids: dict[str, tuple[float, list[str]]] = {}
        self._categories: tuple[float, dict[str, str]] | None = None
        self._tag_info: dict[str, tuple[float, dict[str, Any]]] = {}
        self._renewals = 0

    @property
    def renewals(self) -> int:
        """How many times a stale session was replaced (each one dropped the name caches)."""
        return self._renewals

    def forget_names(self) -> None:
        """Drop every cached tag and category name: the next lookups ask vCenter."""
        self._tag_ids = {}
        self._categories = None
        self._tag_info = {}

    # -- session --------------------------------------------------------------------

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        started = time.monotonic()
        outcome = "error"
        try:
            response = self._http.request(method, url, **kwargs)
            # 404 is how the dialect probe and a deleted tag answer: an answer, not a fault.
            outcome = (
                "fault" if response.status_code >= 400 and response.status_code != 404 else "ok"
            )
            return response
        except httpx.ConnectError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                raise TLSVerificationError(
                    f"cannot verify the TLS certificate of vCenter {self._config.address}; give "
                    "a CA bundle that signs it, or set VCENTER_INSECURE=true (not for production)"
                ) from None
            raise VSphereError(
                f"cannot reach the vCenter REST API at {self._config.address}: {self._safe(exc)}"
            ) from None
        except httpx.HTTPError as exc:
            raise VSphereError(
                f"vCenter REST request failed ({self._config.address}): {self._safe(exc)}"
            ) from None
        finally:
            self._round_trips.add(
                1, api="rest", outcome=outcome, seconds=time.monotonic() - started
            )

    def _safe(self, exc: BaseException) -> str:
        return scrub(f"{type(exc).__name__}: {exc}", [self._config.password])

    def _login(self) -> tuple[str, Dialect]:
        """Under the lock: a new session, in whichever dialect the server speaks."""
        cfg = self._config
        for dialect in (self._dialect,) if self._dialect else (REST, API):
            response = self._send(
                "POST",
                dialect.session,
                auth=(cfg.username, cfg.password),
                headers={"vmware-use-header-authn": "true"},
            )
            if response.status_code == 404 and dialect is REST:
                continue  # no /rest on this server: try /api
            if response.status_code == 401:
                raise LoginError(
                    f"vCenter {cfg.address} refused the REST login of user {cfg.username!r}"
                )
            if response.status_code >= 300:
                raise VSphereError(
                    f"vCenter REST login failed ({cfg.address}): HTTP {response.status_code}"
                )
            session = dialect.unwrap(_json(response))
            if not isinstance(session, str) or not session:
                raise VSphereError(f"vCenter REST login at {cfg.address} returned no session")
            log.info("vcenter.rest_login", vcenter=cfg.address, api=dialect.name)
            return session, dialect
        raise VSphereError(f"vCenter {cfg.address} serves no tagging REST API (/rest nor /api)")

    def login(self) -> None:
        """Open the REST session now rather than on the first request."""
        self._current()

    def _current(self) -> tuple[str, Dialect]:
        with self._lock:
            if self._closed:
                raise VSphereError("the vSphere client is closed")
            if self._session is None or self._dialect is None:
                self._session, self._dialect = self._login()
            return self._session, self._dialect

    def _renew(self, stale: str) -> tuple[str, Dialect]:
        with self._lock:
            if self._closed:
                raise VSphereError("the vSphere client is closed")
            if self._session == stale or self._session is None:
                log.info("vcenter.rest_session_expired", vcenter=self._config.address)
                self._session, self._dialect = self._login()
                # vCenter forgot our session: it may have been restarted, and its tags and
                # categories re-created with new ids. Names are resolved again.
                self.forget_names()
                self._renewals += 1
            assert self._dialect is not None
            return self._session, self._dialect

    def request(
        self,
        method: str,
        path_of: Callable[[Dialect], str],
        *,
        action: str | None = None,
        body: Any = None,
        body_of: Callable[[Dialect], Any] | None = None,
        create_spec: dict[str, Any] | None = None,
    ) -> Any:
        """Call the API; `path_of(dialect)` builds the path. Returns the unwrapped JSON.

        `body_of(dialect)` builds a body that differs between the dialects.
        """
        session, dialect = self._current()
        for attempt in (1, 2):
            params = {dialect.action_param: action} if action else None
            if create_spec is not None:
                body = dialect.wrap_spec(create_spec)
            elif body_of is not None:
                body = body_of(dialect)
            response = self._send(
                method,
                path_of(dialect),
                params=params,
                json=body,
                headers={SESSION_HEADER: session},
            )
            if response.status_code == 401 and attempt == 1:
                session, dialect = self._renew(session)
                continue
            if response.status_code == 404:
                raise NotFound(f"not found: {method} {path_of(dialect)}")
            if response.status_code >= 300:
                raise VSphereError(
                    f"vCenter REST {method} {path_of(dialect)} failed: HTTP "
                    f"{response.status_code} {_error_text(response)}"
                )
            return dialect.unwrap(_json(response)) if response.content else None
        raise VSphereError(f"vCenter REST session at {self._config.address} keeps expiring")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            session, dialect, self._session = self._session, self._dialect, None
        try:
            if session is not None and dialect is not None:
                self._send("DELETE", dialect.session, headers={SESSION_HEADER: session})
                log.info("vcenter.rest_logout", vcenter=self._config.address)
        except VSphereError as exc:
            log.warning("vcenter.rest_logout_failed", vcenter=self._config.address, error=str(exc))
        finally:
            self._http.close()

    # -- tags ---------------------------------------------------------------------------

    def list_tag_ids(self) -> list[str]:
        return list(self.request("GET", lambda d: d.tag) or [])

    def get_tag(self, tag_id: str) -> dict[str, Any]:
        return dict(self.request("GET", lambda d: d.item(d.tag, tag_id)))

    def find_tag_ids(self, name: str, *, fresh: bool = False) -> list[str]:
        """Ids of every tag called `name` (cached); raises TagNotFoundError if none."""
        cached = self._tag_ids.get(name)
        if cached and not fresh and time.monotonic() - cached[0] < self._tag_cache_ttl:
            return cached[1]
        ids: list[str] = []
        for tag_id in self.list_tag_ids():
            try:
                if self.get_tag(tag_id).get("name") == name:
                    ids.append(tag_id)
            except NotFound:
                continue  # deleted while we listed
        if not ids:
            self._tag_ids.pop(name, None)
            raise TagNotFoundError(name)
        self._tag_ids[name] = (time.monotonic(), ids)
        return ids

    def attached_objects(self, name: str) -> list[VmRef]:
        """Every object attached to the tag(s) called `name`, any type, no duplicates."""
        for fresh in (False, True):
            try:
                renewals = self._renewals
                found: list[VmRef] = []
                for tag_id in self.find_tag_ids(name, fresh=fresh):
                    found += self.objects_of_tag(tag_id)
                if self._renewals != renewals and not fresh:
                    # The session was replaced meanwhile: the ids read may be a forgotten
                    # vCenter's (a restart). Read again, from names.
                    log.info("vcenter.tag_ids_reread_after_relogin", tag=name)
                    continue
                return list(dict.fromkeys(found))
            except NotFound:
                if fresh:
                    raise TagNotFoundError(name) from None
                log.info("vcenter.tag_cache_stale", tag=name)
        raise TagNotFoundError(name)  # unreachable: the loop returns or raises

    def objects_of_tag(self, tag_id: str) -> list[VmRef]:
        # The tag is in the path; there is nothing to send. `/rest` gets an empty JSON object,
        # because vcsim answers 400 to an empty body there; `/api` gets no body, as VMware's
        # SDK sends it (tests/vsphere/test_api_dialect.py).
        objects = self.request(
            "POST",
            lambda d: d.item(d.association, tag_id),
            action="list-attached-objects",
            body_of=lambda d: {} if d.wrapped else None,
        )
        return [VmRef(value=o["id"], type=o["type"]) for o in objects or []]

    def _fresh(self, cached_at: float) -> bool:
        return time.monotonic() - cached_at < self._tag_cache_ttl

    def categories(self, *, fresh: bool = False) -> dict[str, str]:
        """Every tag category, name -> id; cached like tag names (else 1 + C requests)."""
        if self._categories is not None and not fresh and self._fresh(self._categories[0]):
            return self._categories[1]
        names: dict[str, str] = {}
        for category_id in self.request("GET", lambda d: d.category) or []:
            try:
                names[str(self._get_category(category_id).get("name"))] = str(category_id)
            except NotFound:
                continue  # deleted while we listed
        self._categories = (time.monotonic(), names)
        return names

    def tag_info(self, tag_id: str) -> dict[str, Any]:
        """A tag's name and category id, cached by id like tag names (else 1 request)."""
        cached = self._tag_info.get(tag_id)
        if cached is not None and self._fresh(cached[0]):
            return cached[1]
        info = self.get_tag(tag_id)
        self._tag_info[tag_id] = (time.monotonic(), info)
        return info

    def tags_of_category(self, category_id: str) -> list[str]:
        """Ids of the tags in a category, in one request."""
        # /rest names the category in the path, /api in the body.
        return [
            str(t)
            for t in self.request(
                "POST",
                lambda d: d.item(d.tag, category_id) if d.wrapped else d.tag,
                action="list-tags-for-category",
                body_of=lambda d: {} if d.wrapped else {"category_id": category_id},
            )
            or []
        ]

    def objects_on_tags(self, tag_ids: Sequence[str]) -> dict[str, list[VmRef]]:
        """The objects attached to each tag, for any number of tags, in one request."""
        if not tag_ids:
            return {}
        found = self.request(
            "POST",
            lambda d: d.association,
            action="list-attached-objects-on-tags",
            body={"tag_ids": list(tag_ids)},
        )
        attached: dict[str, list[VmRef]] = {t: [] for t in tag_ids}
        for entry in found or []:
            objects = [VmRef(value=o["id"], type=o["type"]) for o in entry.get("object_ids") or []]
            attached.setdefault(str(entry["tag_id"]), []).extend(objects)
        return attached

    # -- preparing an inventory (tests, demo, benchmarks) ------------------------------

    def ensure_category(self, name: str) -> str:
        for category_id in self.request("GET", lambda d: d.category) or []:
            category = self._get_category(category_id)
            if category.get("name") == name:
                return str(category_id)
        spec = {"name": name, "description": "", "cardinality": "MULTIPLE", "associable_types": []}
        return str(self.request("POST", lambda d: d.category, create_spec=spec))

    def _get_category(self, category_id: str) -> dict[str, Any]:
        return dict(self.request("GET", lambda d: d.item(d.category, category_id)))

    def ensure_tag(self, category_id: str, name: str) -> str:
        for tag_id in self.list_tag_ids():
            tag = self.get_tag(tag_id)
            if tag.get("name") == name and tag.get("category_id") == category_id:
                return tag_id
        spec = {"name": name, "description": "", "category_id": category_id}
        return str(self.request("POST", lambda d: d.tag, create_spec=spec))

    def delete_tag(self, tag_id: str) -> None:
        self.request("DELETE", lambda d: d.item(d.tag, tag_id))

    def attach(self, tag_id: str, objects: Sequence[VmRef]) -> None:
        """Attach in one request, whatever the number of objects."""
        if not objects:
            return
        body = {"object_ids": [{"type": o.type, "id": o.value} for o in objects]}
        self.request(
            "POST",
            lambda d: d.item(d.association, tag_id),
            action="attach-tag-to-multiple-objects",
            body=body,
        )

    def detach(self, tag_id: str, obj: VmRef) -> None:
        self.request(
            "POST",
            lambda d: d.item(d.association, tag_id),
            action="detach",
            body={"object_id": {"type": obj.type, "id": obj.value}},
        )


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise VSphereError(
            f"vCenter REST answered HTTP {response.status_code} with no JSON"
        ) from None


def _error_text(response: httpx.Response) -> str:
    # vCenter errors name a type ("com.vmware.vapi.std.errors.already_exists") and may
    # carry messages; keep it short. Never credentials: the request body holds none.
    return response.text.strip()[:200]
