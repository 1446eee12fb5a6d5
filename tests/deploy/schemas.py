"""Validators for every kind the chart renders, from official schemas only, offline:

- Kubernetes' own kinds: the JSON schemas kubernetes-validate ships (its `-strict` set, where
  an unknown field is an error, as `kubectl apply` with its default strict field validation);
- Knative Serving's Service and prometheus-operator's ServiceMonitor: the openAPIV3Schema of
  their CRDs, from their Go modules (scripts/setup puts them in the tool cache);
- Knative Eventing's Trigger and SinkBinding: our own schemas of the fields the chart writes,
  from Knative's API reference (tests/deploy/eventing_schemas.py): the Go module proxy refuses
  knative.dev/eventing, so its CRDs cannot be had here. Not validated for them: whatever
  Knative's own CRD says beyond those fields (its status, the open `filters` dialects).

A CRD's schema is read as the API server reads it: unknown fields are errors except under
`x-kubernetes-preserve-unknown-fields`, `x-kubernetes-int-or-string` is an integer or a
string, `nullable` admits null; the object's metadata is checked against Kubernetes' ObjectMeta.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import referencing
import yaml

from tests.deploy.eventing_schemas import SCHEMAS as EVENTING_SCHEMAS
from vsphere_preemption.devtools.devservers import tools_dir

ROOT = Path(__file__).parents[2]
HERE = Path(__file__).parent
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"

Validate = Callable[[dict[str, Any]], None]


class NoSchema(LookupError):
    """A kind no official schema here describes: the test fails rather than skip it."""


def setup_version(name: str) -> str:
    """A version that scripts/setup installs (`HELM_VERSION`, ...): the one source of truth."""
    found = re.search(rf"^{name}=(\S+)$", (ROOT / "scripts" / "setup").read_text(), re.MULTILINE)
    assert found, f"scripts/setup sets no {name}"
    return found.group(1)


def cached_crd(name: str, filename: str, version_var: str) -> Path:
    """A CRD file scripts/setup put in the tool cache, of the version scripts/setup names."""
    folder = tools_dir() / "schemas" / name
    want = setup_version(version_var)
    stamp = folder / "VERSION"
    if not stamp.exists() or stamp.read_text().strip() != want:
        raise AssertionError(f"{folder} does not hold {name} {want}: run scripts/setup")
    return folder / filename


def _k8s_folder(kube: str) -> Any:
    folder = files("kubernetes_validate") / "kubernetes-json-schema" / f"v{kube}.0-local-strict"
    if not folder.is_dir():
        raise NoSchema(f"kubernetes-validate ships no schemas for Kubernetes {kube}")
    return folder


@cache
def _k8s_definitions(kube: str) -> dict[str, Any]:
    defs: dict[str, Any] = json.loads((_k8s_folder(kube) / "_definitions.json").read_text())
    return defs


@cache
def _k8s_validator(kube: str, filename: str) -> jsonschema.protocols.Validator:
    path = _k8s_folder(kube) / filename
    if not path.is_file():
        raise NoSchema(f"Kubernetes {kube} has no schema {filename}")
    schema = json.loads(path.read_text())
    defs = referencing.Resource.from_contents(_k8s_definitions(kube))
    registry: referencing.Registry[Any] = referencing.Registry().with_resources(
        [("_definitions.json", defs), ("file://_definitions.json", defs)]
    )
    return jsonschema.Draft202012Validator(schema, registry=registry)


def crd_to_jsonschema(node: Any) -> Any:
    """An openAPIV3Schema (structural, as in a CRD) as the JSON Schema the API server applies."""
    if isinstance(node, list):
        return [crd_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: crd_to_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes")}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    out.pop("nullable", None)
    out.pop("format", None)  # int32, int64, date-time...: the types already say enough here
    open_ = node.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in node
    if node.get("type") == "object" and not open_:
        out["additionalProperties"] = False
        out.setdefault("properties", {})
    return out


def crd_validator(crd_file: Path, kind: str, version: str, kube: str) -> Validate:
    """The validator of one served version of a CRD; metadata as Kubernetes' ObjectMeta."""
    crd = yaml.safe_load(crd_file.read_text())
    assert crd["kind"] == "CustomResourceDefinition" and crd["spec"]["names"]["kind"] == kind
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = crd_to_jsonschema(served["schema"]["openAPIV3Schema"])
    props = schema["properties"]
    group = crd["spec"]["group"]
    props["apiVersion"] = {"const": f"{group}/{version}"}
    props["kind"] = {"const": kind}
    props["metadata"] = {"$ref": f"#/$defs/{OBJECT_META}"}
    schema["$defs"] = _k8s_definitions(kube)["$defs"]
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    validator = jsonschema.Draft202012Validator(schema)

    def validate(obj: dict[str, Any]) -> None:
        validator.validate(obj)

    return validate


def _spec_validator(api_version: str, kind: str, spec: dict[str, Any], kube: str) -> Validate:
    """An object of `kind` whose spec is `spec`, metadata as Kubernetes' ObjectMeta."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": {"$ref": f"#/$defs/{OBJECT_META}"},
            "spec": spec,
            "status": {"type": "object"},
        },
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "$defs": _k8s_definitions(kube)["$defs"],
    }
    validator = jsonschema.Draft202012Validator(schema)

    def validate(obj: dict[str, Any]) -> None:
        validator.validate(obj)

    return validate


@cache
def validator_for(api_version: str, kind: str, kube: str) -> Validate:
    """The official schema's validator for this kind at this Kubernetes minor (`1.33`)."""
    crds: dict[tuple[str, str], Callable[[], Path]] = {
        ("serving.knative.dev/v1", "Service"): lambda: cached_crd(
            "knative-serving", "service.yaml", "KNATIVE_SERVING_VERSION"
        ),
        ("monitoring.coreos.com/v1", "ServiceMonitor"): lambda: cached_crd(
            "prometheus-operator",
            "monitoring.coreos.com_servicemonitors.yaml",
            "PROMETHEUS_OPERATOR_VERSION",
        ),
    }
    if (api_version, kind) in EVENTING_SCHEMAS:
        return _spec_validator(api_version, kind, EVENTING_SCHEMAS[api_version, kind], kube)
    if (api_version, kind) in crds:
        return crd_validator(crds[api_version, kind](), kind, api_version.split("/")[1], kube)
    if "." in api_version.split("/")[0]:
        raise NoSchema(f"no official schema here for {api_version} {kind}")
    group_version = api_version.replace("/", "-") if "/" in api_version else api_version
    k8s = _k8s_validator(kube, f"{kind.lower()}-{group_version}.json")

    def validate(obj: dict[str, Any]) -> None:
        k8s.validate(obj)

    return validate


def validate(obj: dict[str, Any], kube: str) -> None:
    """Raise jsonschema's ValidationError (or NoSchema) unless `obj` is valid at `kube`."""
    validator_for(obj["apiVersion"], obj["kind"], kube)(obj)
