"""The published ORS v1 JSON Schemas (spec/schemas) are valid and agree with the test vectors (spec/vectors)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, ValidationError
from referencing import Registry, Resource

SPEC = Path(__file__).resolve().parents[2] / "spec"
SCHEMAS = SPEC / "schemas"
VECTORS = SPEC / "vectors"
URN = "urn:ors:v1:schema:"


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


SCHEMA_FILES = {path.name: _load(path) for path in sorted(SCHEMAS.glob("*.json"))}
INDEX = SCHEMA_FILES.pop("index.json")
REGISTRY: Registry = Registry().with_resources(
    (schema["$id"], Resource.from_contents(schema)) for schema in SCHEMA_FILES.values()
)
CLIENT_VALID = _load(VECTORS / "client.valid.json")
CLIENT_INVALID = _load(VECTORS / "client.invalid.json")
SERVER_VALID = _load(VECTORS / "server.valid.json")
HTTP_VALID = _load(VECTORS / "http.valid.json")
HTTP_INVALID = _load(VECTORS / "http.invalid.json")


def _validator(file_name: str) -> Draft202012Validator:
    return Draft202012Validator(SCHEMA_FILES[file_name], registry=REGISTRY)


def _pointer(parts: list[Any]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _error_fields(error: ValidationError) -> set[str]:
    """The JSON pointers an ORS server would put in problem.field for one schema violation.

    A missing property is reported at the property's own path ("/token"), not at its parent.
    """
    path = list(error.absolute_path)
    if error.validator == "required":
        missing = [name for name in error.validator_value if name not in error.instance]
        return {_pointer([*path, name]) for name in missing}
    return {_pointer(path)}


def _fields(file_name: str, instance: Any) -> set[str]:
    fields: set[str] = set()
    for error in _validator(file_name).iter_errors(instance):
        fields |= _error_fields(error)
    return fields


def check_client_message(message: Any) -> tuple[str, set[str]] | None:
    """Validate a client message the way spec/ors-v1.md section 6.5 orders the checks.

    Returns None when the message is valid, else (error code, offending JSON pointers).
    """
    fields = _fields("envelope.json", message)
    if fields:
        return "invalid_message", fields
    schema_file = INDEX["client"].get(message["type"])
    if schema_file is None:
        return "unknown_type", {"/type"}
    fields = _fields(schema_file, message)
    return ("invalid_message", fields) if fields else None


def _message_id(vector: dict[str, Any]) -> str:
    message = vector["message"]
    kind = message.get("type") if isinstance(message, dict) else None
    return f"{kind}:{vector['field']}"


# the schemas themselves ------------------------------------------------------------------------


@pytest.mark.parametrize("file_name", sorted(SCHEMA_FILES))
def test_schema_is_a_valid_draft_2020_12_schema(file_name: str) -> None:
    schema = SCHEMA_FILES[file_name]
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("file_name", sorted(SCHEMA_FILES))
def test_schema_id_is_the_urn_of_its_file_name(file_name: str) -> None:
    assert SCHEMA_FILES[file_name]["$id"] == URN + file_name.removesuffix(".json")


@pytest.mark.parametrize("file_name", sorted(SCHEMA_FILES))
def test_every_reference_resolves(file_name: str) -> None:
    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return found + [r for value in node.values() for r in refs(value)]
        if isinstance(node, list):
            return [r for value in node for r in refs(value)]
        return []

    schema = SCHEMA_FILES[file_name]
    resolver = REGISTRY.resolver(base_uri=schema["$id"])
    for ref in refs(schema):
        assert resolver.lookup(ref).contents is not None, ref


def test_common_defines_the_shared_objects() -> None:
    defs = SCHEMA_FILES["common.json"]["$defs"]
    assert {"Participant", "Track", "Room", "Problem"} <= set(defs)


def test_index_lists_exactly_the_message_schema_files() -> None:
    assert set(INDEX) == {"client", "server"}
    listed = {f for direction in INDEX.values() for f in direction.values()}
    on_disk = {f for f in SCHEMA_FILES if f.startswith(("client.", "server."))}
    assert listed == on_disk
    for direction, types in INDEX.items():
        for message_type, file_name in types.items():
            assert file_name == f"{direction}.{message_type}.json"


@pytest.mark.parametrize(
    ("direction", "message_type"),
    [(d, t) for d, types in INDEX.items() for t in types],
)
def test_message_schema_follows_the_envelope_rules(direction: str, message_type: str) -> None:
    schema = SCHEMA_FILES[INDEX[direction][message_type]]
    properties = schema["properties"]
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is True
    assert properties["type"] == {"const": message_type}
    assert "type" in schema["required"]
    if direction == "client":
        assert properties["id"] == {"$ref": URN + "common#/$defs/RequestId"}
        assert "id" not in schema["required"]
        assert "reply_to" not in properties
    elif "reply_to" in properties:
        assert properties["reply_to"] == {"$ref": URN + "common#/$defs/ReplyTo"}


def test_only_ok_requires_reply_to() -> None:
    requiring = {t for t, f in INDEX["server"].items() if "reply_to" in SCHEMA_FILES[f]["required"]}
    assert requiring == {"ok"}


def test_direct_replies_may_carry_reply_to_and_events_do_not() -> None:
    replies = {"joined", "lobby", "answer", "ok", "pong", "error"}
    carrying = {
        t for t, f in INDEX["server"].items() if "reply_to" in SCHEMA_FILES[f]["properties"]
    }
    assert carrying == replies


# the vectors ------------------------------------------------------------------------------------


def test_every_message_type_has_a_valid_vector() -> None:
    assert {m["type"] for m in CLIENT_VALID} == set(INDEX["client"])
    assert {m["type"] for m in SERVER_VALID} == set(INDEX["server"])


def test_every_client_message_type_has_an_invalid_vector() -> None:
    types = {v["message"].get("type") for v in CLIENT_INVALID if isinstance(v["message"], dict)}
    assert set(INDEX["client"]) <= types


@pytest.mark.parametrize("message", CLIENT_VALID, ids=lambda m: m["type"])
def test_valid_client_vector_passes(message: dict[str, Any]) -> None:
    assert check_client_message(message) is None


@pytest.mark.parametrize("message", SERVER_VALID, ids=lambda m: m["type"])
def test_valid_server_vector_passes(message: dict[str, Any]) -> None:
    assert _fields(INDEX["server"][message["type"]], message) == set()


@pytest.mark.parametrize("vector", CLIENT_INVALID, ids=_message_id)
def test_invalid_client_vector_fails_with_its_code_and_only_at_its_field(
    vector: dict[str, Any],
) -> None:
    assert check_client_message(vector["message"]) == (vector["code"], {vector["field"]})


@pytest.mark.parametrize(
    "message", [m for m in SERVER_VALID if m["type"] == "error"], ids=lambda m: m["problem"]["code"]
)
def test_problem_type_is_the_urn_of_its_code(message: dict[str, Any]) -> None:
    problem = message["problem"]
    assert problem["type"] == "urn:ors:error:" + problem["code"]


@pytest.mark.parametrize(
    ("file_name", "instance"),
    [(f, i) for f, instances in HTTP_VALID.items() for i in instances],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_valid_http_vector_passes(file_name: str, instance: Any) -> None:
    assert _fields(file_name, instance) == set()


@pytest.mark.parametrize(
    ("file_name", "vector"),
    [(f, v) for f, vectors in HTTP_INVALID.items() for v in vectors],
    ids=lambda x: x if isinstance(x, str) else x["field"],
)
def test_invalid_http_vector_fails_only_at_its_field(
    file_name: str, vector: dict[str, Any]
) -> None:
    assert vector["code"] == "invalid_message"
    assert _fields(file_name, vector["message"]) == {vector["field"]}


# the checker can fail ---------------------------------------------------------------------------


def test_checker_reports_a_missing_required_field_at_the_field() -> None:
    assert check_client_message({"type": "mute", "muted": True}) == (
        "invalid_message",
        {"/track_id"},
    )


def test_checker_ignores_unknown_fields() -> None:
    assert check_client_message({"type": "ping", "x-trace": {"any": ["thing"]}}) is None
