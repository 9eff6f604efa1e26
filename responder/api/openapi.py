"""The OpenAPI 3.1 document of the HTTP API, built from the route table and its models."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from responder import __version__
from responder.api.actions import Handler
from responder.api.bodies import ErrorAnswer
from responder.api.routes import Operation

PATH = "/v1/openapi.json"
REF = "#/components/schemas/{model}"
STATUS_TEXT = {200: "OK", 202: "Accepted", 400: "Refused: the message names the field",
               401: "No valid bearer token", 403: "The token's role may not do this",
               404: "Not found", 409: "Conflicts with the current state",
               502: "The target did not confirm the change",
               503: "Not ready, or the store is unavailable (retry)"}


def _models(operations: Iterable[Operation]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    found: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {(ErrorAnswer, "serialization"):
                                                                  None}
    for op in operations:
        if op.body is not None:
            found[(op.body, "validation")] = None
        for model in op.success.values():
            if model is not None:
                found[(model, "serialization")] = None
    return list(found)


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent rather than null: keep the other branch of an Optional."""
    branches = [s for s in schema.get("anyOf", ()) if s.get("type") != "null"]
    if len(branches) == 1:
        rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
        return {**rest, **branches[0]}
    return {k: v for k, v in schema.items() if k != "default"}


def _parameters(op: Operation) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": dict(schema)}
        for name, schema in op.path_params.items()]
    query: dict[str, Any] = dict(op.extra_query)
    if op.query is not None:
        props = op.query.model_json_schema()["properties"]
        query |= {name: _without_null(schema) for name, schema in props.items()}
    params += [{"name": name, "in": "query", "required": False, "schema": dict(schema)}
               for name, schema in query.items()]
    return params


def _content(op: Operation, model: type[BaseModel] | None) -> dict[str, Any]:
    if op.media_type != "application/json":
        return {op.media_type: {"schema": {"type": "string"}}}
    schema = {"$ref": REF.format(model=model.__name__)} if model else {"type": "object"}
    return {"application/json": {"schema": schema}}


def _operation(op: Operation) -> dict[str, Any]:
    error = {"application/json": {"schema": {"$ref": REF.format(model="ErrorAnswer")}}}
    responses: dict[str, Any] = {
        str(status): {"description": STATUS_TEXT[status], "content": _content(op, model)}
        for status, model in op.success.items()}
    refusals = [*op.refusals, *((400,) if op.body is not None else ()),
                *((401, 403, 503) if op.role is not None else ())]
    for status in sorted(set(refusals)):
        responses[str(status)] = {"description": STATUS_TEXT[status], "content": error}
    doc: dict[str, Any] = {
        "summary": op.summary,
        "operationId": f"{op.method.lower()}_{op.handler.__name__}",
        "responses": responses,
    }
    if op.role is not None:
        doc["security"] = [{"bearer": []}]
        doc["x-role"] = op.role
        doc["description"] = f"Needs a token of role {op.role} or above."
    if params := _parameters(op):
        doc["parameters"] = params
    if op.body is not None:
        doc["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": REF.format(model=op.body.__name__)}}}}
    return doc


def document(operations: Sequence[Operation]) -> dict[str, Any]:
    """The OpenAPI 3.1 document for these operations."""
    _, defs = models_json_schema(_models(operations), ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    paths[PATH] = {"get": {"summary": "This document.", "operationId": "get_openapi",
                           "responses": {"200": {"description": "OK", "content": {
                               "application/json": {"schema": {"type": "object"}}}}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "responder", "version": __version__,
                 "description": "Operator API of the responder daemon. Bodies are JSON"
                                " objects; an unknown field, NUL, a lone surrogate or a"
                                " number of more than 40 characters is refused with 400."},
        "paths": paths,
        "components": {"schemas": defs.get("$defs", {}),
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


def serve(doc: dict[str, Any]) -> Handler:
    """A handler answering the (pre-built) document."""

    async def openapi(request: web.Request) -> web.StreamResponse:
        return web.json_response(doc)

    return openapi

