"""Times read from label files, as the project stores them: UTC without a zone."""
from __future__ import annotations

import math
from datetime import datetime, timezone


def utc_time(value: object) -> tuple[datetime | None, bool]:
    """(a label's time as UTC without zone, as the project stores it; whether ``value`` was given but is not a
    time). ISO 8601 text (``Z`` or an offset; no zone: UTC), a datetime, or epoch seconds."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip()):
        return None, False
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            when = datetime.fromtimestamp(float(value), timezone.utc)
        elif isinstance(value, datetime):
            when = value
        else:
            when = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        return None, True
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc).replace(tzinfo=None)
    return when, False
