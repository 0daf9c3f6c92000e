"""The published ORS v1 JSON Schemas (spec/schemas) are valid and agree with the test vectors (spec/vectors)."""

from __future__ import annotations

import json
import re
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
FEDERATION_VALID = _load(VECTORS / "federation.valid.json")
FEDERATION_INVALID = _load(VECTORS / "federation.invalid.json")
FEDERATION_SHARED = {"federation.common.json", "federation.event.json"}
"""Federation schema files that are not one body or one event (Appendix B)."""


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
    assert set(INDEX) == {"client", "server", "federation"}
    listed = {f for direction in ("client", "server") for f in INDEX[direction].values()}
    on_disk = {f for f in SCHEMA_FILES if f.startswith(("client.", "server."))}
    assert listed == on_disk
    for direction in ("client", "server"):
        for message_type, file_name in INDEX[direction].items():
            assert file_name == f"{direction}.{message_type}.json"


def test_index_lists_exactly_the_federation_body_and_event_schema_files() -> None:
    federation = INDEX["federation"]
    assert set(federation) == {"bodies", "events"}
    listed = {*federation["bodies"].values(), *federation["events"].values()}
    on_disk = {f for f in SCHEMA_FILES if f.startswith("federation.")} - FEDERATION_SHARED
    assert listed == on_disk
    for name, file_name in federation["bodies"].items():
        assert file_name == f"federation.{name}.json"
    for event_type, file_name in federation["events"].items():
        assert file_name == f"federation.event.{event_type}.json"
        schema = SCHEMA_FILES[file_name]
        assert schema["properties"]["type"] == {"const": event_type}
        assert "type" in schema["required"] and schema["additionalProperties"] is True


@pytest.mark.parametrize(
    ("direction", "message_type"),
    [(d, t) for d in ("client", "server") for t in INDEX[d]],
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


# the federation vectors ----------------------------------------------------------------------


def test_every_federation_body_and_event_has_a_valid_vector() -> None:
    federation = INDEX["federation"]
    expected = {*federation["bodies"].values(), *federation["events"].values()}
    assert expected | {"federation.event.json"} == set(FEDERATION_VALID)
    in_transactions = {
        event["type"]
        for transaction in FEDERATION_VALID["federation.transaction.json"]
        for event in transaction["events"]
    }
    assert set(federation["events"]) <= in_transactions


def test_every_federation_request_body_and_event_has_an_invalid_vector() -> None:
    assert {
        "federation.link-request.json",
        "federation.transaction.json",
        "federation.media-offer.json",
        "federation.request-claims.json",
    } <= set(FEDERATION_INVALID)
    refused_types = {
        _value_at(vector["message"], "/events/" + vector["field"].split("/")[2] + "/type")
        for vector in FEDERATION_INVALID["federation.transaction.json"]
        if vector["field"].startswith("/events/")
    }
    assert set(INDEX["federation"]["events"]) <= refused_types


@pytest.mark.parametrize(
    ("file_name", "instance"),
    [(f, i) for f, instances in FEDERATION_VALID.items() for i in instances],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_valid_federation_vector_passes(file_name: str, instance: Any) -> None:
    assert _fields(file_name, instance) == set()


@pytest.mark.parametrize(
    ("file_name", "vector"),
    [(f, v) for f, vectors in FEDERATION_INVALID.items() for v in vectors],
    ids=lambda x: x if isinstance(x, str) else x["field"],
)
def test_invalid_federation_vector_fails_only_at_its_field(
    file_name: str, vector: dict[str, Any]
) -> None:
    assert vector["code"] == "invalid_message"
    assert _fields(file_name, vector["message"]) == {vector["field"]}


def test_an_event_of_a_later_version_is_accepted_and_a_known_one_checked() -> None:
    assert _fields("federation.event.json", {"type": "x-later", "participants": 3}) == set()
    assert _fields("federation.event.json", {"type": "state", "participants": 3}) == {
        "/participants"
    }


def test_client_track_schema_has_no_federation_members() -> None:
    """Clients see a partner's people as ordinary participants: `streams` is the relay link's."""
    assert "streams" not in SCHEMA_FILES["common.json"]["$defs"]["Track"]["properties"]


# the checker can fail ---------------------------------------------------------------------------


def test_checker_reports_a_missing_required_field_at_the_field() -> None:
    assert check_client_message({"type": "mute", "muted": True}) == (
        "invalid_message",
        {"/track_id"},
    )


def test_checker_ignores_unknown_fields() -> None:
    assert check_client_message({"type": "ping", "x-trace": {"any": ["thing"]}}) is None


# the specification, the README, the schemas, the vectors and the server agree ----------------

SPEC_TEXT = (SPEC / "ors-v1.md").read_text(encoding="utf-8")
README_TEXT = (SPEC / "README.md").read_text(encoding="utf-8")
VALIDATION_CODES = {"invalid_message", "unknown_type"}
"""The codes of a message that breaks the envelope or its schema (6.5 steps 3 to 5): section 13.4
forbids their detail to repeat the value received."""


def _headings() -> dict[str, str]:
    """Section number -> heading title, from the "## 5. Join tokens" / "### 5.1 Format" lines."""
    found = re.findall(r"^#{2,3} (\d+(?:\.\d+)*)\.? +(.+)$", SPEC_TEXT, flags=re.M)
    return dict(found)


HEADINGS = _headings()


def _section_14_transactions() -> list[dict[str, Any]]:
    return [v for v in _spec_examples() if isinstance(v, dict) and {"link_id", "events"} <= set(v)]


def _section(number: str) -> str:
    """The text of section `number` up to the next heading of its level or above."""
    level = "##" if "." not in number else "###"
    start = re.search(rf"^{level} {re.escape(number)}\.? .*$", SPEC_TEXT, flags=re.M)
    assert start is not None, f"no section {number}"
    end = re.compile(rf"^#{{2,{len(level)}}} ", flags=re.M).search(SPEC_TEXT, start.end())
    return SPEC_TEXT[start.end() : end.start() if end else len(SPEC_TEXT)]


def _error_table() -> dict[str, dict[str, Any]]:
    """The rows of the table in section 12.2, keyed by code: {"status": 413, "title": ...}."""
    lines = [line for line in _section("12.2").splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows: dict[str, dict[str, Any]] = {}
    for line in lines[2:]:
        cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
        code = cells["code"].strip("`")
        assert code not in rows, f"{code} has two rows"
        rows[code] = {"status": int(cells["status"]), "title": cells.get("title")}
    return rows


ERROR_TABLE = _error_table()


def _spec_examples() -> list[Any]:
    """Every JSON value in the ```json blocks of ors-v1.md (some blocks hold several)."""
    values: list[Any] = []
    decoder = json.JSONDecoder()
    for block in re.findall(r"^```json\n(.*?)^```", SPEC_TEXT, flags=re.M | re.S):
        position = 0
        while (start := block.find("{", position)) != -1:
            try:
                value, position = decoder.raw_decode(block, start)
            except ValueError:
                position = start + 1
                continue
            values.append(value)
    return values


def _problems(node: Any) -> list[dict[str, Any]]:
    """The problem details objects anywhere inside `node`."""
    if isinstance(node, list):
        return [p for item in node for p in _problems(item)]
    if not isinstance(node, dict):
        return []
    found = [node] if str(node.get("type", "")).startswith("urn:ors:error:") else []
    return found + [p for value in node.values() for p in _problems(value)]


PROBLEMS = [
    *(("server.valid.json", p) for p in _problems(SERVER_VALID)),
    *(("ors-v1.md", p) for p in _problems(_spec_examples())),
]


def _member_names(node: Any) -> set[str]:
    if isinstance(node, list):
        return {name for item in node for name in _member_names(item)}
    if not isinstance(node, dict):
        return set()
    names = set(node.get("properties", {})) | set(node.get("required", []))
    return names | {name for value in node.values() for name in _member_names(value)}


def _value_at(instance: Any, pointer: str) -> Any:
    for part in pointer.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        try:
            instance = instance[int(part) if isinstance(instance, list) else part]
        except (KeyError, IndexError, TypeError, ValueError):
            return None
    return instance


def test_error_table_has_a_status_and_a_title_for_every_code() -> None:
    assert "message_too_large" in ERROR_TABLE
    for code, row in ERROR_TABLE.items():
        assert 400 <= row["status"] <= 599, code
        assert row["title"], f"{code} has no title in the table of section 12.2"


def test_server_titles_are_the_titles_of_the_error_table() -> None:
    from gateway.ors.problems import TITLES

    assert {code: TITLES.get(code) for code in ERROR_TABLE} == {
        code: row["title"] for code, row in ERROR_TABLE.items()
    }


@pytest.mark.parametrize(
    ("source", "problem"), PROBLEMS, ids=lambda x: x if isinstance(x, str) else x["code"]
)
def test_every_problem_has_the_status_and_title_of_its_code(
    source: str, problem: dict[str, Any]
) -> None:
    row = ERROR_TABLE[problem["code"]]
    assert problem["type"] == "urn:ors:error:" + problem["code"]
    assert problem["status"] == row["status"], f"{source}: section 12.2 says {row['status']}"
    assert problem["title"] == row["title"], f"{source}: section 12.2 says {row['title']!r}"


def test_statuses_named_in_the_text_are_those_of_the_error_table() -> None:
    # "`400 negotiation_failed`", "`not_joined` (409)", "`message_too_large` 413"
    named = re.findall(r"`(\d{3}) ([a-z_]+)`", SPEC_TEXT) + [
        (status, code) for code, status in re.findall(r"`([a-z_]+)`,? \(?(\d{3})\b", SPEC_TEXT)
    ]
    wrong = {
        (code, int(status))
        for status, code in named
        if code in ERROR_TABLE and ERROR_TABLE[code]["status"] != int(status)
    }
    assert named and wrong == set()


@pytest.mark.parametrize("direction", ["client", "server"])
def test_readme_lists_and_counts_the_message_types_of_the_index(direction: str) -> None:
    match = re.search(
        rf"`{direction}\.<type>\.json`: [^(]*\((\d+) types: ([^)]*)\)", README_TEXT, flags=re.S
    )
    assert match is not None
    listed = re.findall(r"`([a-z_]+)`", match[2])
    assert int(match[1]) == len(listed) == len(INDEX[direction])
    assert sorted(listed) == sorted(INDEX[direction])


@pytest.mark.parametrize(("direction", "number"), [("client", "8"), ("server", "9")])
def test_spec_has_one_subsection_per_message_type_of_the_index(direction: str, number: str) -> None:
    types = [
        re.match(r"`([a-z_]+)`", title)
        for n, title in HEADINGS.items()
        if n.startswith(number + ".")
    ]
    assert sorted(m[1] for m in types if m) == sorted(INDEX[direction])


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading ("6.5 Processing a client message" -> "65-processing-...")."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def _section_references() -> list[tuple[str, str, str]]:
    """(where, section number, the text after the number) for every "section N.M" / "§N.M"."""
    texts = [("README.md", README_TEXT)]
    for name in sorted(SCHEMA_FILES):
        texts.append((f"schemas/{name}", json.dumps(SCHEMA_FILES[name], ensure_ascii=False)))
    for path in sorted(VECTORS.glob("*.json")):
        texts.append((f"vectors/{path.name}", json.dumps(_load(path), ensure_ascii=False)))
    pattern = re.compile(r"(?:\b[Ss]ections? +|§ ?)(\d+(?:\.\d+)*)(?<!\.)(.{0,80})", flags=re.S)
    return [
        (where, m[1], m[2])
        for where, text in texts
        for m in pattern.finditer(text)
        if not _cites_an_rfc(text, m.start())
    ]


def _cites_an_rfc(text: str, start: int) -> bool:
    """In "[RFC 8445, section 2.5]" the section is the RFC's, not one of ors-v1.md."""
    return re.search(r"RFC \d+,? *$", text[max(0, start - 12) : start]) is not None


@pytest.mark.parametrize(
    ("where", "number", "after"),
    _section_references(),
    ids=[f"{where}:{number}" for where, number, _ in _section_references()],
)
def test_section_references_name_the_section_they_mean(where: str, number: str, after: str) -> None:
    """A reference outside ors-v1.md carries the heading it means, so a wrong number shows:
    "section 5, Join tokens" / "section 5 (Join tokens)" or, in Markdown, a link to its anchor,
    "[section 6.5](ors-v1.md#65-processing-a-client-message)"."""
    assert number in HEADINGS, f"{where}: ors-v1.md has no section {number}"
    heading = f"{number} {HEADINGS[number]}"
    title = HEADINGS[number].replace("`", "")
    assert after.startswith((f", {title}", f" ({title}", f": {title}")) or after.startswith(
        f"](ors-v1.md#{_slug(heading)})"
    ), f"{where}: section {number} is {title!r}, cited as {after[:60]!r}"


def test_section_references_inside_the_spec_exist() -> None:
    cited = [
        m[1]
        for m in re.finditer(r"\b[Ss]ections? +(\d+(?:\.\d+)*)(?<!\.)", SPEC_TEXT)
        if not _cites_an_rfc(SPEC_TEXT, m.start())
    ]
    assert cited and sorted(set(cited) - set(HEADINGS)) == []


@pytest.mark.parametrize(
    "problem",
    [p for _, p in PROBLEMS if p["code"] in VALIDATION_CODES],
    ids=lambda p: p["code"],
)
def test_validation_error_vectors_do_not_repeat_the_value_received(problem: dict[str, Any]) -> None:
    # Section 13.4: the detail names the field and the rule, never the value. Quoted words
    # may name a member, a message type or the field's pointer, nothing else.
    known = {problem.get("field")} | set(INDEX["client"]) | _member_names(SCHEMA_FILES)
    quoted = re.findall(r"'([^']*)'|\"([^\"]*)\"", problem["detail"])
    assert [q for pair in quoted for q in pair if q and q not in known] == []


@pytest.mark.parametrize("vector", CLIENT_INVALID, ids=_message_id)
def test_server_answers_an_invalid_vector_as_the_spec_says(vector: dict[str, Any]) -> None:
    """gateway.ors.schemas.validate gives the vector's code and field, the status of section 12.2,
    and a detail without the value received (section 13.4)."""
    from gateway.ors.problems import Problem
    from gateway.ors.schemas import validate

    with pytest.raises(Problem) as refused:
        validate("client", vector["message"])
    problem = refused.value
    assert (problem.code, problem.field) == (vector["code"], vector["field"])
    assert problem.status == ERROR_TABLE[problem.code]["status"]
    received = _value_at(vector["message"], vector["field"]) if vector["field"] else None
    shown = received if isinstance(received, str) else json.dumps(received)
    if received is not None and len(shown.strip()) >= 3:
        assert shown not in problem.detail


def test_the_federation_examples_of_the_spec_are_valid() -> None:
    examples = _spec_examples()
    transactions = _section_14_transactions()
    assert transactions
    for transaction in transactions:
        assert _fields("federation.transaction.json", transaction) == set()
    decoder = json.JSONDecoder()
    links = [
        decoder.raw_decode(SPEC_TEXT, m.start())[0]
        for m in re.finditer(r'^\{"link_id"', SPEC_TEXT, flags=re.M)
    ]
    links = [v for v in links if "peer_room" in v]
    claims = [v for v in examples if isinstance(v, dict) and "body_sha256" in v]
    assert links and claims
    for link in links:
        assert _fields("federation.link-request.json", link) == set()
    for claim in claims:
        assert _fields("federation.request-claims.json", claim) == set()


def test_section_14_names_every_federation_event_and_code() -> None:
    text = _section("14")
    for event_type in INDEX["federation"]["events"]:
        assert f"| `{event_type}` |" in text, event_type
    federation_codes = {code for code, row in ERROR_TABLE.items() if code in text}
    assert {
        "signature_invalid",
        "peer_not_allowed",
        "key_unknown",
        "wrong_audience",
        "signature_expired",
        "replayed_request",
        "link_not_found",
        "too_many_links",
    } <= federation_codes
