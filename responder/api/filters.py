"""The query string of ``GET /v1/actions`` as a pydantic model, like the request bodies.

``limit`` runs from 1 to 1000: a ``limit=0`` used to mean 100 without saying so, and an
empty page cannot carry the cursor of the next, so it is refused rather than honoured.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from multidict import MultiMapping
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic import ValidationError as PydanticValidationError

from responder.api.bodies import BodyRefused, first_problem, storable
from responder.params import MAX_ID, plain_int, utc_time

MAX_FILTER = 200
MAX_LIMIT = 1000


def _decimal(value: Any) -> Any:
    """ASCII digits only: ``int()`` would take "²" or "1_000" from a query string."""
    if isinstance(value, str):
        number = plain_int(value, MAX_ID)
        if number is None:
            raise ValueError(f"expected an integer from 0 to {MAX_ID}")
        return number
    return value


def _time(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return utc_time(value)
        except ValueError as e:
            raise ValueError(f"expected an ISO 8601 time with a UTC offset ({e})") from None
    return value


Filter = Annotated[str, BeforeValidator(storable), StringConstraints(max_length=MAX_FILTER)]
Id = Annotated[int, Field(ge=0, le=MAX_ID), BeforeValidator(_decimal)]
Time = Annotated[datetime, BeforeValidator(_time)]


class ActionQuery(BaseModel):
    """Filters and paging of the action log; an absent parameter is no filter."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    rule: Filter | None = None
    control: Filter | None = None
    incident: Id | None = None
    kind: Filter | None = None
    correlation_id: Filter | None = None
    since: Time | None = None
    until: Time | None = None
    after: Id = Field(0, description="The next_after of the previous page.")
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT, description="Records per page, 1 to 1000."),
                     BeforeValidator(_decimal)] = 100

    @classmethod
    def from_query(cls, query: MultiMapping[str]) -> ActionQuery:
        """The filters of a query string (the first of a repeated name), or BodyRefused."""
        unknown = sorted(set(query) - set(cls.model_fields))
        if unknown:
            raise BodyRefused("invalid_query", f"{unknown[0]!r}: not a filter of this route")
        given = {name: query[name] for name in cls.model_fields if name in query}
        try:
            return cls.model_validate(given)
        except PydanticValidationError as e:
            raise BodyRefused("invalid_query", first_problem(e)) from None
