"""UUID parsing with the forms the contract accepts (docs/decisions.md#uuid-forms), and nothing
looser.

Accepted, case-insensitive: canonical `8-4-4-4-12`, 32 hex digits, `{canonical}` and
`urn:uuid:canonical`. (The stdlib `UUID()` also takes stray hyphens anywhere; we do not.)
"""

from __future__ import annotations

import re
from uuid import UUID

_UUID_FORMS = re.compile(
    r"(?:urn:uuid:)?([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
    r"|\{([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\}"
    r"|([0-9a-f]{32})",
    re.IGNORECASE,
)
NIL_UUID = UUID(int=0)


def parse_uuid(text: str) -> UUID | None:
    """The UUID written in `text`, or None when it is not one of the accepted forms."""
    match = _UUID_FORMS.fullmatch(text)  # no surrounding spaces: they are not part of any form
    if match is None:
        return None
    return UUID(next(group for group in match.groups() if group))
