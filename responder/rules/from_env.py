"""Rule values that settings may replace: a target's base URL and a metric rule's lines.
Each raises EnvValueError, naming the field, when the environment's value cannot be used."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from responder.rules.schema import BASE_URL, TargetSpec


class EnvValueError(ValueError):
    """An environment value a rule file names cannot be used."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def base_url(env: Mapping[str, str], name: str, spec: TargetSpec, *, placeholder: bool) -> str:
    """``base_url_env``'s value when it is set, else ``base_url``; with neither, a
    placeholder if ``placeholder`` (checking rules calls nothing), else an error."""
    from_env = env.get(spec.base_url_env, "") if spec.base_url_env else ""
    if from_env:
        if re.fullmatch(BASE_URL, from_env) is None:
            raise EnvValueError("base_url_env", f"{spec.base_url_env} is not an http(s) URL:"
                                                f" {from_env[:80]!r}")
        return from_env
    if spec.base_url is not None:
        return spec.base_url
    if placeholder:
        return f"http://{name}.unset.invalid"
    raise EnvValueError("base_url_env", f"environment variable {spec.base_url_env} is not set"
                                        " and there is no base_url")


def number(env: Mapping[str, str], field: str, env_name: str | None, default: float) -> float:
    """A finite number from the environment when ``env_name`` is set there, else ``default``."""
    raw = env.get(env_name, "") if env_name else ""
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise EnvValueError(field, f"{env_name} is not a finite number: {raw[:40]!r}")
    return value
