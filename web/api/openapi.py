"""The OpenAPI 3.1 document, generated from the route registry and the pydantic models."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import textwrap
from collections.abc import Mapping
from typing import Any, Final

from pydantic import BaseModel, Field
from pydantic.json_schema import (
    GenerateJsonSchema,
    JsonSchemaMode,
    JsonSchemaValue,
    models_json_schema,
)
from pydantic_core import core_schema

from .registry import Operation, Registry

PREFIX: Final = "/api/v1"
REF_TEMPLATE: Final = "#/components/schemas/{model}"

_BINARY: Final = {"type": "string", "format": "binary"}

#: (model, mode) -> ``{"$ref": ...}``, as ``models_json_schema`` returns it.
Refs = Mapping[Any, dict[str, Any]]


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable error code.")
    message: str = Field(description="Short English text for people.")


class ErrorBody(BaseModel):
    """Every error response: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


_ERROR_TEXT: Final = {
    400: "Malformed request (not JSON, wrong content type).",
    401: "No, unknown, expired or revoked bearer token, or failed sign-in.",
    403: "The permission table or a participant rule refuses the caller (audited).",
    404: "No such object.",
    409: "The current state or a rule of care refuses the request.",
    413: "Request body too large.",
    415: "The body is not application/json.",
    422: "A value is missing, malformed or out of range.",
}


def _error_statuses(op: Operation) -> list[int]:
    has_input = op.body or op.raw_body or op.query or op.path_params
    if op.public and not has_input:
        return []
    statuses = [400, 409, 422] if has_input else [409]
    if op.body is not None or op.raw_body:
        statuses += [413, 415]
    statuses += [401, 403] if not op.public else [401]
    if op.path_params is not None:
        statuses.append(404)
    return sorted(set(statuses))


def attribute_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of a dataclass and its dataclass bases: a string literal right
    after ``name: type`` in the class body, as the view dataclasses document their fields."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in itertools.pairwise(body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


class DocumentedSchemas(GenerateJsonSchema):
    """Field descriptions of the view dataclasses from their attribute docstrings, read when the
    document is built. (pydantic's ``use_attribute_docstrings`` reads them while every view
    class is made, walking all loaded modules per class: 0.7 s of every process's start.)"""

    def dataclass_schema(self, schema: core_schema.DataclassSchema) -> JsonSchemaValue:
        json_schema = super().dataclass_schema(schema)
        properties = json_schema.get("properties")
        if isinstance(properties, dict):
            for name, doc in attribute_docs(schema["cls"]).items():
                if isinstance(properties.get(name), dict):
                    properties[name].setdefault("description", doc)
        return json_schema


def build_openapi(registry: Registry, *, title: str, version: str) -> dict[str, Any]:
    """The document for every operation of ``registry``."""
    pairs: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorBody, "serialization")]
    for op in registry.operations:
        for model in (op.body, op.query, op.path_params):
            if model is not None:
                pairs.append((model, "validation"))
        if op.response is not None:
            pairs.append((op.response, "serialization"))
    refs, definitions = models_json_schema(
        pairs, ref_template=REF_TEMPLATE, schema_generator=DocumentedSchemas
    )
    schemas: dict[str, Any] = dict(definitions.get("$defs", {}))

    paths: dict[str, dict[str, Any]] = {}
    for op in registry.operations:
        item: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": [op.tag],
            "parameters": _parameters(op, refs, schemas),
            "responses": _responses(op, refs),
        }
        if op.action is not None:
            item["x-permission"] = op.action
        else:
            item["security"] = []
        if op.body is not None:
            item["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[(op.body, "validation")]}},
            }
        elif op.raw_body:
            item["requestBody"] = {
                "required": True,
                "content": {"application/octet-stream": {"schema": _BINARY}},
            }
        paths.setdefault(PREFIX + op.path, {})[op.method.lower()] = item

    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": (
                "Teleconsultation REST API. Authenticate with `Authorization: Bearer <token>` "
                "from `POST /api/v1/session`. Each operation names the permission-table action "
                "it checks in `x-permission`; a refusal is 403 and is recorded in the audit chain."
            ),
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def _parameters(
    op: Operation,
    refs: Refs,
    schemas: dict[str, Any],
) -> list[dict[str, Any]]:
    parameters = []
    for location, model in (("path", op.path_params), ("query", op.query)):
        if model is None:
            continue
        name = refs[(model, "validation")]["$ref"].rsplit("/", 1)[-1]
        schema = schemas[name]
        required = set(schema.get("required", ()))
        for name, field_schema in schema.get("properties", {}).items():
            field_schema = _without_null(dict(field_schema))
            description = field_schema.pop("description", None)
            field_schema.pop("title", None)
            parameter: dict[str, Any] = {
                "name": name,
                "in": location,
                "required": location == "path" or name in required,
                "schema": field_schema,
            }
            if description:
                parameter["description"] = description
            parameters.append(parameter)
    return parameters


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """``X | None`` as just ``X``: a query string cannot say null, it leaves the key out."""
    options = schema.get("anyOf")
    if isinstance(options, list):
        rest = [option for option in options if option != {"type": "null"}]
        if len(rest) == 1 and len(rest) < len(options):
            schema.pop("anyOf")
            if schema.get("default", ...) is None:
                schema.pop("default")
            return {**rest[0], **schema}
    return schema


def _responses(op: Operation, refs: Refs) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    if op.produces:
        responses[str(op.status)] = {
            "description": "Done.",
            "content": {content_type: {"schema": _BINARY} for content_type in op.produces},
        }
    elif op.response is None:
        responses[str(op.status)] = {"description": "Done."}
    else:
        responses[str(op.status)] = {
            "description": "Done.",
            "content": {"application/json": {"schema": refs[(op.response, "serialization")]}},
        }
    error_schema = {"$ref": REF_TEMPLATE.format(model="ErrorBody")}
    for status in _error_statuses(op):
        responses[str(status)] = {
            "description": _ERROR_TEXT[status],
            "content": {"application/json": {"schema": error_schema}},
        }
    return responses
