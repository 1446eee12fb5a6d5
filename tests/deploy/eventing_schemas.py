"""Our own JSON schemas of Knative Eventing's Trigger (eventing.knative.dev/v1) and SinkBinding
(sources.knative.dev/v1), for the fields the chart renders.

Written by us from Knative Eventing's published API reference (the field names, types and
which are required are facts of its API); not Knative's files: the Go module proxy refuses
knative.dev/eventing, so its CRDs cannot be fetched the way Knative Serving's are, and the
project does not carry another project's files. Closed where the chart writes (an unknown or
misspelt field is an error), open where Knative itself leaves the API open.
"""

from __future__ import annotations

from typing import Any

_STRING: dict[str, Any] = {"type": "string"}
_STRING_MAP: dict[str, Any] = {"type": "object", "additionalProperties": _STRING}


def _closed(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = list(required)
    return schema


# duckv1.KReference and duckv1.Destination
K_REFERENCE = _closed(
    {
        "apiVersion": _STRING,
        "kind": _STRING,
        "name": _STRING,
        "namespace": _STRING,
        "group": _STRING,
        "address": _STRING,
    },
    ("kind", "name"),
)
DESTINATION = _closed({"ref": K_REFERENCE, "uri": _STRING, "CACerts": _STRING, "audience": _STRING})
DELIVERY = _closed(
    {
        "deadLetterSink": DESTINATION,
        "retry": {"type": "integer", "minimum": 0},
        "backoffPolicy": {"enum": ["linear", "exponential"]},
        "backoffDelay": _STRING,
        "timeout": _STRING,
        "retryAfterMax": _STRING,
    }
)

TRIGGER_SPEC = _closed(
    {
        "broker": _STRING,
        "filter": _closed({"attributes": _STRING_MAP}),
        "filters": {"type": "array"},  # the subscriptions API dialects: left open
        "subscriber": DESTINATION,
        "delivery": DELIVERY,
        "brokerRef": K_REFERENCE,
    },
    ("broker", "subscriber"),
)

SINK_BINDING_SPEC = _closed(
    {
        "subject": _closed(
            {
                "apiVersion": _STRING,
                "kind": _STRING,
                "namespace": _STRING,
                "name": _STRING,
                "selector": _closed(
                    {"matchLabels": _STRING_MAP, "matchExpressions": {"type": "array"}}
                ),
            },
            ("apiVersion", "kind"),
        ),
        "sink": DESTINATION,
        "ceOverrides": _closed({"extensions": _STRING_MAP}),
    },
    ("subject", "sink"),
)

SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("eventing.knative.dev/v1", "Trigger"): TRIGGER_SPEC,
    ("sources.knative.dev/v1", "SinkBinding"): SINK_BINDING_SPEC,
}
