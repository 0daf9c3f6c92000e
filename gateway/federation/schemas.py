"""Federation bodies checked against the published JSON Schemas (spec/schemas/federation.*.json,
draft 2020-12), read by the same loader as the client's (gateway/ors/schemas.py).

A transaction is checked as a whole, every event included, before anything is applied: the first
bad field (lowest JSON pointer) refuses it with ``invalid_message`` and that ``field``. Events of
a type this server does not know pass (spec 3.2) and are ignored.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from gateway.ors.schemas import first_problem, schema_files


@cache
def _validators() -> dict[str, Draft202012Validator]:
    files = schema_files()
    index = files.pop("index.json")
    registry: Registry = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in files.values()
    )
    return {
        name: Draft202012Validator(files[file_name], registry=registry)
        for name, file_name in index["federation"]["bodies"].items()
    }


def check(body: str, message: Any) -> None:
    """Problem ``invalid_message`` naming the first bad field of ``message``, a ``body`` of
    index.json's federation bodies ("transaction", "link-request", "media-offer"...)."""
    problem = first_problem(
        _validators()[body], message, lambda pointer, name: f"the field '{pointer}' is required"
    )
    if problem is not None:
        raise problem
