"""The URL an admin call goes to, checked against the path template the control declares.

A key is quoted into one path segment, but the URL library still removes dot segments
(``.`` and ``..``, also percent-encoded) before sending, so a key of ``..`` would move
``/admin/tenants/{key}/mode`` to ``/admin/mode``: another control's endpoint. The URL is
therefore built here exactly as the HTTP client will send it, and refused unless its path
still has the template's shape: the same literal segments, one non-empty segment for
each placeholder.
"""

from __future__ import annotations

import re
from functools import lru_cache

from yarl import URL

from responder.errors import ActionPermanentError
from responder.rules.table import PLACEHOLDER


class OffTemplate(ActionPermanentError):
    """The built URL left the control's declared path template; nothing was called."""


@lru_cache(maxsize=1024)
def _shape(base_url: str, template: str) -> re.Pattern[str]:
    prefix = URL(base_url).raw_path.rstrip("/")
    parts = PLACEHOLDER.split(template)
    # split() alternates literal text and placeholder names: literals at even indexes.
    pattern = "".join(re.escape(p) if i % 2 == 0 else "[^/?#]+" for i, p in enumerate(parts))
    return re.compile(re.escape(prefix) + pattern)


def checked_url(target_name: str, base_url: str, template: str, rendered: str) -> URL:
    """The URL to send (already normalised, so the client sends it unchanged), or
    OffTemplate if normalising moved it off the template."""
    url = URL(base_url.rstrip("/") + rendered)
    sent = url.raw_path + (f"?{url.raw_query_string}" if url.raw_query_string else "")
    if _shape(base_url, template).fullmatch(sent) is None:
        raise OffTemplate(f"{target_name}: refused to call {sent!r}: it does not have the"
                          f" shape of the declared path {template!r}")
    return URL(str(url), encoded=True)
