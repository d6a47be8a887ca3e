"""Phone numbers: E.164 (`+` then 7 to 15 digits, no leading zero)."""

from __future__ import annotations

import re

E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def is_e164(value: str) -> bool:
    return E164.fullmatch(value) is not None
