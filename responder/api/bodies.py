"""The ``/v1`` request bodies as pydantic models: they validate requests and they are the
schemas of the published OpenAPI document, so the two cannot disagree."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic import ValidationError as PydanticValidationError

from responder.api.jsonbody import BodyError, decode
from responder.auth import Principal
from responder.engine.modes import MAX_BREAK_GLASS_S
from responder.engine.policy import GlobalMode
from responder.intake.alertmanager import PayloadError, check_text
from responder.state import STATE

MAX_REASON = 1000
MAX_TICKET = 200
MAX_LEVEL = 64


def storable(value: Any) -> Any:
    """Text PostgreSQL can store: no NUL, no lone surrogate (other types pass to the model).
    The rule is intake's ``check_text``, so webhooks and the API refuse the same text."""
    try:
        check_text(value, "")
    except PayloadError as e:
        raise ValueError(str(e)) from None
    return value


def _trimmed(value: Any) -> Any:
    return storable(value).strip() if isinstance(value, str) else value


def _text(max_length: int) -> Any:
    # Trimmed here, not by StringConstraints: in strict mode it checks the length first.
    return (BeforeValidator(_trimmed), StringConstraints(min_length=1, max_length=max_length))


# Required, storable strings of bounded length; surrounding blanks are trimmed, so a blank
# one is refused.
Reason = Annotated[str, *_text(MAX_REASON)]
Ticket = Annotated[str, *_text(MAX_TICKET)]
Level = Annotated[str, *_text(MAX_LEVEL)]


class Body(BaseModel):
    """A request body: unknown fields are refused, so a typo is not silently ignored."""

    # strict: JSON gives real types, so "5" is not a number and true is not 1
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ModeChange(Body):
    mode: GlobalMode
    reason: Reason


class BreakGlassStart(Body):
    ttl_s: float = Field(ge=1, le=MAX_BREAK_GLASS_S, allow_inf_nan=False,
                         description="Seconds from now; repeating the call while active"
                                     " extends it, up to a capped total.")
    reason: Reason


class BreakGlassEnd(Body):
    reason: Reason


class ReleaseChange(Body):
    to_level: Level
    reason: Reason
    ticket: Ticket


class ContainChange(Body):
    to_level: Level
    reason: Reason


class ErrorAnswer(BaseModel):
    """Every refusal: a stable code and, mostly, a sentence naming the field."""

    error: str
    message: str | None = None


class BodyRefused(ValueError):
    """A request body that does not fit its model; ``code`` goes into the answer and metric."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


M = TypeVar("M", bound=Body)


def first_problem(error: PydanticValidationError) -> str:
    """One sentence for the first failure, naming its field and never echoing the input."""
    problem = error.errors(include_input=False, include_url=False)[0]
    where = ".".join(str(part) for part in problem["loc"]) or "body"
    ctx = problem.get("ctx", {})
    kind = problem["type"]
    if kind == "value_error":
        return f"{where}: {ctx.get('error')}"
    if kind in ("too_short", "string_too_short"):
        return f"{where}: a non-blank string is required"
    if kind in ("too_long", "string_too_long"):
        return f"{where}: at most {ctx.get('max_length')} characters"
    return f"{where}: {problem['msg']}"


def validate(model: type[M], data: Any) -> M:
    """The model from a decoded document, or BodyRefused."""
    if not isinstance(data, dict):
        raise BodyRefused("malformed_json", "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except PydanticValidationError as e:
        raise BodyRefused("invalid_field", first_problem(e)) from None


async def parse(request: web.Request, model: type[M]) -> M:
    """The request's body as ``model``, or BodyRefused (answer it with ``refused``)."""
    try:
        data = decode(await request.read())
    except BodyError as e:
        raise BodyRefused(e.code, str(e)) from None
    return validate(model, data)


def refused(request: web.Request, error: BodyRefused) -> web.Response:
    """The 400 for a refused body, counted in the rejection metric by its code."""
    request.app[STATE].metrics.rejected.labels("api", error.code).inc()
    return web.json_response({"error": error.code, "message": str(error)}, status=400)


Answer = Awaitable[web.StreamResponse]
BodyHandler = Callable[[web.Request, Principal, M], Answer]
_MODELS: dict[str, type[Body]] = {}


def _name(handler: Callable[..., Any]) -> str:
    return f"{handler.__module__}.{handler.__qualname__}"


def with_body(model: type[M]) -> Callable[[BodyHandler[M]], Callable[[web.Request, Principal],
                                                                     Answer]]:
    """Parse the body as ``model`` before the handler runs (400 otherwise); the route table
    reads the model back with ``model_of``, so the document shows what is parsed."""

    def wrap(handler: BodyHandler[M]) -> Callable[[web.Request, Principal], Answer]:
        @functools.wraps(handler)
        async def parsed(request: web.Request, principal: Principal) -> web.StreamResponse:
            try:
                body = await parse(request, model)
            except BodyRefused as e:
                return refused(request, e)
            return await handler(request, principal, body)

        _MODELS[_name(parsed)] = model
        return parsed

    return wrap


def model_of(handler: Callable[..., Any]) -> type[Body] | None:
    """The body model a handler parses (through ``with_body``), or None if it takes none."""
    return _MODELS.get(_name(handler))
