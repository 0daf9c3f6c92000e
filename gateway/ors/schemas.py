"""Validation of ORS messages against the published JSON Schemas (draft 2020-12).

The schemas are read from the package (``gateway/ors/json_schemas``, a link to ``spec/schemas`` in the
source tree, so the published copy is the one source and the wheel carries real files).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from gateway.ors.problems import Problem

SCHEMA_PACKAGE = "gateway.ors"
SCHEMA_FOLDER = "json_schemas"


def schema_files() -> dict[str, Any]:
    """Every published schema file by name (index.json included), as packaged."""
    folder = resources.files(SCHEMA_PACKAGE).joinpath(SCHEMA_FOLDER)
    return {
        entry.name: json.loads(entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".json")
    }


@cache
def _validators() -> dict[str, dict[str, Draft202012Validator]]:
    files = schema_files()
    index = files.pop("index.json")
    registry: Registry = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in files.values()
    )
    validators: dict[str, dict[str, Draft202012Validator]] = {}
    for direction in ("client", "server"):
        validators[direction] = {}
        for message_type, filename in index[direction].items():
            validators[direction][message_type] = Draft202012Validator(
                files[filename], registry=registry
            )
    return validators


def message_types(direction: str) -> set[str]:
    return set(_validators()[direction])


def validate(direction: str, message: Any) -> None:
    """Raise Problem(invalid_message / unknown_type) naming the first bad field of ``message``."""
    if not isinstance(message, dict):
        raise Problem("invalid_message", "a message is a JSON object", field="")
    message_type = message.get("type")
    if not isinstance(message_type, str):
        raise Problem("invalid_message", "the message has no string 'type'", field="/type")
    validator = _validators()[direction].get(message_type)
    if validator is None:
        raise Problem("unknown_type", "the message type is not part of ORS v1", field="/type")
    problem = first_problem(
        validator,
        message,
        lambda pointer, name: f"'{message_type}' is missing the required field '{name}'",
    )
    if problem is not None:
        raise problem


def first_problem(
    validator: Draft202012Validator, message: Any, missing: Callable[[str, str], str]
) -> Problem | None:
    """The ``invalid_message`` problem naming the first bad field of ``message`` (the lowest JSON
    pointer, as ``field``), or None when it is valid. ``missing(pointer, name)`` words an absent
    required member; other broken rules are described without echoing the value."""
    # Paths compare element by element, and two paths first differ inside one container, whose
    # keys are all strings or all indexes: sorting them as lists never compares a str to an int.
    error = next(iter(sorted(validator.iter_errors(message), key=lambda e: list(e.path))), None)
    if error is None:
        return None
    pointer = "".join(f"/{part}" for part in error.absolute_path)
    if error.validator == "required":
        name = error.message.split("'")[1] if "'" in error.message else ""
        pointer = f"{pointer}/{name}"
        detail = missing(pointer, name)
    else:
        detail = f"field '{pointer or '/'}' {_rule(error.validator, error.validator_value)}"
    return Problem("invalid_message", detail, field=pointer)


def _rule(validator: Any, value: Any) -> str:
    """Describe the broken rule without echoing the message's value (it may hold a secret)."""
    phrases = {
        "type": "must be of type {}",
        "maxLength": "is longer than {} characters",
        "minLength": "is shorter than {} characters",
        "maximum": "is above {}",
        "minimum": "is below {}",
        "enum": "must be one of {}",
        "const": "must be {}",
        "pattern": "must match {}",
        "maxItems": "has more than {} items",
        "minItems": "has fewer than {} items",
    }
    if validator in phrases and isinstance(value, str | int | float | list):
        shown = value if not isinstance(value, list) else ", ".join(map(str, value))
        return phrases[validator].format(shown)
    return f"breaks the schema rule '{validator}'"
