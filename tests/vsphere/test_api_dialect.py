"""The tagging `/api` dialect, checked against VMware's own Python SDK for the vSphere
Automation API (vmware-vcenter, vmware-vapi-runtime, vmware-vapi-common-client).

vcsim serves only `/rest`, and no real vCenter can run here, so a small HTTPS server of this
test's own, on loopback, stands in for one: it serves no `/rest` (the vCenter that makes our
client fall back to `/api`), records every request and answers from a table.

Requests: VMware's SDK, through its REST protocol binding (`msg_protocol="rest"`, whose
generated paths are the `/api` ones), and our client make the same call against the stand-in;
method, path, query, JSON body and credentials must agree.

Responses: each answer is an SDK model (TagModel, CategoryModel, DynamicID, TagToObjects...)
made JSON by the SDK's own converter and serializer for the `/api` JSON, which the SDK calls
"Swagger REST" ("REST 2018"); our client must read it. The SDK's own reader in that mode must
read it back to the same model, which shows the body is what the SDK takes `/api` to serve.

One quirk of the SDK: its generated tagging stubs declare the older vAPI REST format
(`is_vapi_rest=True`), so its REST client takes results out of a `{"value": ...}` envelope,
the `/rest` format, even on the `/api` paths. The stand-in wraps what it tells the SDK's client
only so that the SDK's calls complete; our client gets the answers bare, as `/api` serves them.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from com.vmware.cis.tagging_client import (
    Category,
    CategoryModel,
    Tag,
    TagAssociation,
    TagModel,
)
from com.vmware.cis_client import Session
from com.vmware.vapi.std_client import DynamicID
from vmware.vapi.bindings.converter import RestConverter, TypeConverter
from vmware.vapi.data.serializers.cleanjson import DataValueConverter
from vmware.vapi.data.serializers.rest import ResponseDeserializer
from vmware.vapi.lib.connect import get_requests_connector
from vmware.vapi.protocol.client.http_lib import HTTPResponse
from vmware.vapi.security.client.security_context_filter import LegacySecurityContextFilter
from vmware.vapi.security.session import create_session_security_context
from vmware.vapi.security.user_password import create_user_password_security_context
from vmware.vapi.stdlib.client.factories import StubConfigurationFactory

from vsphere_preemption.domain.model import VmRef
from vsphere_preemption.vsphere.config import VCenterConfig
from vsphere_preemption.vsphere.rest import TaggingRest
from vsphere_preemption.vsphere.soap import RoundTrips

USER = "administrator@vsphere.local"
PASSWORD = "s3cret-Pa55"
SESSION_ID = "b00c1e7a5e5510n1d"
# Identifiers as vCenter makes them (URNs with colons, which go in paths unescaped).
TAG_ID = "urn:vmomi:InventoryServiceTag:5b6c1d2e-0f3a-4b5c-8d7e-9f0a1b2c3d4e:GLOBAL"
TAG_ID_2 = "urn:vmomi:InventoryServiceTag:6c7d2e3f-1a4b-5c6d-9e8f-0a1b2c3d4e5f:GLOBAL"
CATEGORY_ID = "urn:vmomi:InventoryServiceCategory:7d8e3f4a-2b5c-6d7e-0f9a-1b2c3d4e5f6a:GLOBAL"


@dataclass(frozen=True)
class Pki:
    ca_crt: Path
    server_crt: Path
    server_key: Path


@dataclass(frozen=True)
class Seen:
    """One request as it arrived: what VMware's API definition constrains."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any  # the JSON body, parsed; None when there is none
    headers: dict[str, str]  # names in lower case

    @property
    def basic_credentials(self) -> str | None:
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return base64.b64decode(token).decode() if scheme.lower() == "basic" else None

    def contract(self) -> tuple[str, str, dict[str, list[str]], Any, str | None, str | None]:
        """What must agree between the SDK's request and ours."""
        session = self.headers.get("vmware-api-session-id")
        return (self.method, self.path, self.query, self.body, session, self.basic_credentials)


@dataclass
class Answer:
    status: int
    result: str | None = None  # JSON text of the operation's result; None: no body


@dataclass
class StandIn:
    """A loopback HTTPS server that records requests and answers from `answers`, keyed by
    (method, path, action); `/rest` is not served, like a vCenter that dropped it."""

    pki: Pki
    answers: dict[tuple[str, str, str | None], Answer] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    wrap: bool = False  # answer in the `{"value": ...}` envelope the SDK's stubs expect

    def __post_init__(self) -> None:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def handle_any(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                query = parse_qs(parts.query, keep_blank_values=True)
                stand_in.seen.append(
                    Seen(
                        method=self.command,
                        path=parts.path,
                        query=query,
                        body=json.loads(raw) if raw else None,
                        headers={k.lower(): v for k, v in self.headers.items()},
                    )
                )
                action = query.get("action", [None])[0]
                answer = stand_in.answers.get((self.command, parts.path, action))
                if parts.path.startswith("/rest/"):
                    answer = Answer(404, '{"error_type":"NOT_FOUND","messages":[]}')
                elif answer is None:
                    answer = Answer(501, json.dumps({"unexpected": f"{self.command} {self.path}"}))
                elif answer.result is not None and stand_in.wrap and answer.status < 300:
                    answer = Answer(answer.status, '{"value":' + answer.result + "}")
                body = (answer.result or "").encode()
                self.send_response(answer.status)
                if answer.result is not None:
                    self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = do_PATCH = handle_any

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the test reads `seen`, not a log

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.pki.server_crt, self.pki.server_key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, method: str, path: str, status: int, result: str | None = None) -> None:
        base, _, action = path.partition("?action=")
        self.answers[(method, base, action or None)] = Answer(status, result)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def _openssl(directory: Path, *args: str) -> None:
    done = subprocess.run(
        ["openssl", *args], cwd=directory, capture_output=True, text=True, check=False, timeout=30
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A test CA and the stand-in's certificate for 127.0.0.1, with the key usages that
    Python 3.13's strict certificate checks (VERIFY_X509_STRICT) want."""
    d = tmp_path_factory.mktemp("pki")
    new_key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2")
    _openssl(d, "req", "-x509", *new_key, "-subj", "/CN=stand-in test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    _openssl(d, "req", "-x509", *new_key, "-subj", "/CN=127.0.0.1",
             "-CA", "ca.crt", "-CAkey", "ca.key",
             "-addext", "subjectAltName=IP:127.0.0.1",
             "-addext", "basicConstraints=critical,CA:FALSE",
             "-addext", "keyUsage=critical,digitalSignature",
             "-addext", "extendedKeyUsage=serverAuth",
             "-keyout", "server.key", "-out", "server.crt")  # fmt: skip
    return Pki(ca_crt=d / "ca.crt", server_crt=d / "server.crt", server_key=d / "server.key")


@pytest.fixture
def stand_in(pki: Pki) -> Iterator[StandIn]:
    server = StandIn(pki)
    server.answer("POST", "/api/session", 201, _json(SESSION_ID, Session, "create"))
    server.answer("DELETE", "/api/session", 204)
    yield server
    server.stop()


@pytest.fixture
def ours(stand_in: StandIn, pki: Pki) -> Iterator[TaggingRest]:
    config = VCenterConfig(
        url=f"{stand_in.url}/sdk", username=USER, password=PASSWORD, ca_bundle=pki.ca_crt
    )
    tagging = TaggingRest(config, RoundTrips())
    yield tagging
    tagging.close()


@dataclass
class Sdk:
    """VMware's SDK on its REST binding, logged in with the session the stand-in gives."""

    stand_in: StandIn
    http: Any

    def config(self, security_context: Any) -> Any:
        connector = get_requests_connector(
            session=self.http,
            msg_protocol="rest",
            url=f"{self.stand_in.url}/api",
            provider_filter_chain=[LegacySecurityContextFilter(security_context=security_context)],
        )
        return StubConfigurationFactory.new_std_configuration(connector)

    def logged_in(self) -> Any:
        return self.config(create_session_security_context(SESSION_ID))

    def credentials(self) -> Any:
        return self.config(create_user_password_security_context(USER, PASSWORD))


@pytest.fixture
def sdk(stand_in: StandIn, pki: Pki) -> Iterator[Sdk]:
    http = requests.Session()
    http.verify = str(pki.ca_crt)
    http.trust_env = False  # no CA bundle or proxy from the environment: loopback, our CA
    yield Sdk(stand_in, http)
    http.close()


def _output_type(service: Any, operation: str) -> Any:
    """The result type the SDK's generated stub declares for `operation`."""
    # A stub needs a connector to be made; this one is never used (port 9 is discard).
    connector = get_requests_connector(
        session=requests.Session(), msg_protocol="rest", url="https://127.0.0.1:9/api"
    )
    stub = service(StubConfigurationFactory.new_std_configuration(connector))._api_interface
    return stub._operations[operation]["output_type"]


def _json(result: Any, service: Any, operation: str) -> str:
    """`result` (an SDK model) as the `/api` serves it: the SDK's Swagger-REST conversion,
    then its JSON serializer for REST 2018 (the `/api`)."""
    value = TypeConverter.convert_to_vapi(
        result, _output_type(service, operation), rest_converter_mode=RestConverter.SWAGGER_REST
    )
    text: str = DataValueConverter.convert_to_json(value, new_rest=True)
    return text


def _sdk_reads(text: str, service: Any, operation: str) -> Any:
    """What the SDK's own reader of bare (Swagger-REST) JSON makes of `text`."""
    response = HTTPResponse(200, {"content-type": "application/json"}, text)
    result = ResponseDeserializer.deserialize_response(response, is_vapi_rest=False)
    assert result.error is None
    return TypeConverter.convert_to_python(
        result.output,
        _output_type(service, operation),
        rest_converter_mode=RestConverter.SWAGGER_REST,
    )


def _serve(
    stand_in: StandIn, method: str, path: str, result: Any, service: Any, operation: str
) -> None:
    text = _json(result, service, operation)
    assert _sdk_reads(text, service, operation) == result
    stand_in.answer(method, path, 200, text)


def _after_login(seen: list[Seen]) -> list[Seen]:
    return [s for s in seen if s.path != "/api/session" and not s.path.startswith("/rest/")]


def _compare(
    stand_in: StandIn,
    sdk_call: Callable[[], Any],
    our_call: Callable[[], Any],
    pick: Callable[[list[Seen]], list[Seen]] = _after_login,
) -> tuple[Any, Any]:
    """Make the same call with the SDK and with our client; their requests must agree."""
    stand_in.seen.clear()
    stand_in.wrap = True
    sdk_result = sdk_call()
    theirs = pick(stand_in.seen)
    stand_in.seen.clear()
    stand_in.wrap = False
    our_result = our_call()
    mine = pick(stand_in.seen)
    assert theirs, "the SDK sent nothing"
    assert [s.contract() for s in mine] == [s.contract() for s in theirs]
    return sdk_result, our_result


# -- session ---------------------------------------------------------------------------


def test_login_matches_the_sdk_after_a_404_on_rest(
    stand_in: StandIn, sdk: Sdk, ours: TaggingRest
) -> None:
    def logins(seen: list[Seen]) -> list[Seen]:
        return [s for s in seen if s.path == "/api/session"]

    theirs, _ = _compare(
        stand_in, lambda: Session(sdk.credentials()).create(), ours.login, pick=logins
    )
    assert theirs == SESSION_ID  # the SDK read the (wrapped) answer too
    # Ours asked `/rest` first, was told 404, and went on to `/api`.
    assert [s.path for s in stand_in.seen] == ["/rest/com/vmware/cis/session", "/api/session"]
    # Our login has no body; the SDK's has none either (only a JSON content type).
    assert stand_in.seen[-1].basic_credentials == f"{USER}:{PASSWORD}"


def test_logout_matches_the_sdk(stand_in: StandIn, sdk: Sdk, ours: TaggingRest) -> None:
    ours.login()

    def logouts(seen: list[Seen]) -> list[Seen]:
        return [s for s in seen if s.method == "DELETE"]

    _compare(stand_in, lambda: Session(sdk.logged_in()).delete(), ours.close, pick=logouts)


# -- reading tags ----------------------------------------------------------------------

TAG = TagModel(
    id=TAG_ID,
    category_id=CATEGORY_ID,
    name="preemptible",
    description="may be stopped",
    used_by=set(),
)
CATEGORY = CategoryModel(
    id=CATEGORY_ID,
    name="preemption",
    description="",
    cardinality=CategoryModel.Cardinality.MULTIPLE,
    associable_types={"VirtualMachine"},
    used_by=set(),
)


def test_list_tags_matches_and_is_read(stand_in: StandIn, sdk: Sdk, ours: TaggingRest) -> None:
    _serve(stand_in, "GET", "/api/cis/tagging/tag", [TAG_ID, TAG_ID_2], Tag, "list")
    theirs, mine = _compare(stand_in, lambda: Tag(sdk.logged_in()).list(), ours.list_tag_ids)
    assert theirs == mine == [TAG_ID, TAG_ID_2]


def test_get_tag_matches_and_is_read(stand_in: StandIn, sdk: Sdk, ours: TaggingRest) -> None:
    _serve(stand_in, "GET", f"/api/cis/tagging/tag/{TAG_ID}", TAG, Tag, "get")
    theirs, mine = _compare(
        stand_in, lambda: Tag(sdk.logged_in()).get(TAG_ID), lambda: ours.tag_info(TAG_ID)
    )
    assert theirs == TAG
    assert (mine["id"], mine["name"], mine["category_id"]) == (TAG_ID, "preemptible", CATEGORY_ID)


def test_a_tag_is_found_by_name_from_the_sdks_answers(stand_in: StandIn, ours: TaggingRest) -> None:
    other = TagModel(
        id=TAG_ID_2, category_id=CATEGORY_ID, name="keep", description="", used_by=set()
    )
    _serve(stand_in, "GET", "/api/cis/tagging/tag", [TAG_ID, TAG_ID_2], Tag, "list")
    _serve(stand_in, "GET", f"/api/cis/tagging/tag/{TAG_ID}", TAG, Tag, "get")
    _serve(stand_in, "GET", f"/api/cis/tagging/tag/{TAG_ID_2}", other, Tag, "get")
    assert ours.find_tag_ids("preemptible") == [TAG_ID]
    assert ours.find_tag_ids("keep") == [TAG_ID_2]


def test_list_categories_matches_and_is_read(
    stand_in: StandIn, sdk: Sdk, ours: TaggingRest
) -> None:
    _serve(stand_in, "GET", "/api/cis/tagging/category", [CATEGORY_ID], Category, "list")
    _serve(stand_in, "GET", f"/api/cis/tagging/category/{CATEGORY_ID}", CATEGORY, Category, "get")

    def sdk_categories() -> dict[str, str]:
        service = Category(sdk.logged_in())
        return {service.get(c).name: c for c in service.list()}

    theirs, mine = _compare(stand_in, sdk_categories, ours.categories)
    assert theirs == mine == {"preemption": CATEGORY_ID}


def test_tags_of_a_category_match_and_are_read(
    stand_in: StandIn, sdk: Sdk, ours: TaggingRest
) -> None:
    _serve(
        stand_in,
        "POST",
        "/api/cis/tagging/tag?action=list-tags-for-category",
        [TAG_ID, TAG_ID_2],
        Tag,
        "list_tags_for_category",
    )
    theirs, mine = _compare(
        stand_in,
        lambda: Tag(sdk.logged_in()).list_tags_for_category(CATEGORY_ID),
        lambda: ours.tags_of_category(CATEGORY_ID),
    )
    assert theirs == mine == [TAG_ID, TAG_ID_2]


# -- reading attachments ---------------------------------------------------------------

VM_1 = DynamicID(type="VirtualMachine", id="vm-42")
VM_2 = DynamicID(type="VirtualMachine", id="vm-43")
HOST = DynamicID(type="HostSystem", id="host-7")


def test_attached_objects_match_and_are_read(
    stand_in: StandIn, sdk: Sdk, ours: TaggingRest
) -> None:
    _serve(
        stand_in,
        "POST",
        f"/api/cis/tagging/tag-association/{TAG_ID}?action=list-attached-objects",
        [VM_1, HOST],
        TagAssociation,
        "list_attached_objects",
    )
    theirs, mine = _compare(
        stand_in,
        lambda: TagAssociation(sdk.logged_in()).list_attached_objects(TAG_ID),
        lambda: ours.objects_of_tag(TAG_ID),
    )
    assert theirs == [VM_1, HOST]
    assert mine == [VmRef(value="vm-42", type="VirtualMachine"), VmRef("host-7", "HostSystem")]


def test_objects_on_tags_match_and_are_read(stand_in: StandIn, sdk: Sdk, ours: TaggingRest) -> None:
    found = [
        TagAssociation.TagToObjects(tag_id=TAG_ID, object_ids=[VM_1, VM_2]),
        TagAssociation.TagToObjects(tag_id=TAG_ID_2, object_ids=[]),
    ]
    _serve(
        stand_in,
        "POST",
        "/api/cis/tagging/tag-association?action=list-attached-objects-on-tags",
        found,
        TagAssociation,
        "list_attached_objects_on_tags",
    )
    theirs, mine = _compare(
        stand_in,
        lambda: TagAssociation(sdk.logged_in()).list_attached_objects_on_tags([TAG_ID, TAG_ID_2]),
        lambda: ours.objects_on_tags([TAG_ID, TAG_ID_2]),
    )
    assert theirs == found
    assert mine == {
        TAG_ID: [VmRef("vm-42", "VirtualMachine"), VmRef("vm-43", "VirtualMachine")],
        TAG_ID_2: [],
    }


def test_objects_of_a_tag_by_name_from_the_sdks_answers(
    stand_in: StandIn, ours: TaggingRest
) -> None:
    _serve(stand_in, "GET", "/api/cis/tagging/tag", [TAG_ID], Tag, "list")
    _serve(stand_in, "GET", f"/api/cis/tagging/tag/{TAG_ID}", TAG, Tag, "get")
    _serve(
        stand_in,
        "POST",
        f"/api/cis/tagging/tag-association/{TAG_ID}?action=list-attached-objects",
        [VM_1, VM_1, VM_2],
        TagAssociation,
        "list_attached_objects",
    )
    assert ours.attached_objects("preemptible") == [
        VmRef("vm-42", "VirtualMachine"),
        VmRef("vm-43", "VirtualMachine"),
    ]


# -- preparing an inventory (tests, demo, benchmarks) ----------------------------------


def test_creating_a_category_matches(stand_in: StandIn, sdk: Sdk, ours: TaggingRest) -> None:
    _serve(stand_in, "GET", "/api/cis/tagging/category", [], Category, "list")
    _serve(stand_in, "POST", "/api/cis/tagging/category", CATEGORY_ID, Category, "create")

    def sdk_create() -> str:
        service = Category(sdk.logged_in())
        service.list()
        spec = Category.CreateSpec(
            name="preemption",
            description="",
            cardinality=CategoryModel.Cardinality.MULTIPLE,
            associable_types=set(),
        )
        created: str = service.create(spec)
        return created

    theirs, mine = _compare(stand_in, sdk_create, lambda: ours.ensure_category("preemption"))
    assert theirs == mine == CATEGORY_ID


def test_creating_a_tag_matches(stand_in: StandIn, sdk: Sdk, ours: TaggingRest) -> None:
    _serve(stand_in, "GET", "/api/cis/tagging/tag", [], Tag, "list")
    _serve(stand_in, "POST", "/api/cis/tagging/tag", TAG_ID, Tag, "create")

    def sdk_create() -> str:
        service = Tag(sdk.logged_in())
        service.list()
        spec = Tag.CreateSpec(name="preemptible", description="", category_id=CATEGORY_ID)
        created: str = service.create(spec)
        return created

    theirs, mine = _compare(
        stand_in, sdk_create, lambda: ours.ensure_tag(CATEGORY_ID, "preemptible")
    )
    assert theirs == mine == TAG_ID


def test_attaching_detaching_and_deleting_match(
    stand_in: StandIn, sdk: Sdk, ours: TaggingRest
) -> None:
    association = f"/api/cis/tagging/tag-association/{TAG_ID}"
    batch = TagAssociation.BatchResult(success=True, error_messages=[])
    _serve(
        stand_in,
        "POST",
        f"{association}?action=attach-tag-to-multiple-objects",
        batch,
        TagAssociation,
        "attach_tag_to_multiple_objects",
    )
    stand_in.answer("POST", f"{association}?action=detach", 204)
    stand_in.answer("DELETE", f"/api/cis/tagging/tag/{TAG_ID}", 204)
    vms = [VmRef("vm-42", "VirtualMachine"), VmRef("vm-43", "VirtualMachine")]

    _compare(
        stand_in,
        lambda: TagAssociation(sdk.logged_in()).attach_tag_to_multiple_objects(
            TAG_ID, [VM_1, VM_2]
        ),
        lambda: ours.attach(TAG_ID, vms),
    )
    _compare(
        stand_in,
        lambda: TagAssociation(sdk.logged_in()).detach(TAG_ID, VM_1),
        lambda: ours.detach(TAG_ID, vms[0]),
    )
    _compare(stand_in, lambda: Tag(sdk.logged_in()).delete(TAG_ID), lambda: ours.delete_tag(TAG_ID))
