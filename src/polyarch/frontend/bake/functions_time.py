"""buildx's date and time functions: ``formatdate``, ``timeadd``, ``formattimestamp``, ``unixtimestampparse``,
``timestamp``.

Timestamps are RFC 3339 strings (``2024-01-02T03:04:05Z``, an offset such as ``+05:30``, optional fraction);
results keep the input's UTC offset, as go-cty does. ``formatdate`` verbs (a run of one letter; quote literal
letters with ``'``, ``''`` is a quote): ``YY YYYY  M MM MMM MMMM  D DD  EEE EEEE  h hh (24h)  H HH (12h)  AA aa
m mm  s ss  Z ZZZ ZZZZ ZZZZZ``. Durations are Go's: ``1h30m``, ``-1.5h``, ``300ms`` (units ns us µs ms s m h).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from .functions import FuncError, to_str, type_name

__all__ = ["TIME_FUNCTIONS", "format_date", "parse_duration", "parse_timestamp", "rfc3339"]

_RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def parse_timestamp(text: Any) -> datetime:
    """An RFC 3339 timestamp → an aware datetime. :raises FuncError: not RFC 3339."""
    s = to_str(text)
    m = _RFC3339.match(s)
    if m is None:
        if "T" not in s:
            raise FuncError(f"not a valid RFC3339 timestamp: missing required time introducer 'T' in {s!r}")
        raise FuncError(f"not a valid RFC3339 timestamp: {s!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac, zone = m.group(7), m.group(8)
    if zone == "Z":
        tz = UTC
    else:
        sign = -1 if zone[0] == "-" else 1
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            raise FuncError(f"not a valid RFC3339 timestamp: cannot use {zone!r} as UTC offset")
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    micro = int((frac[1:] + "000000")[:6]) if frac else 0
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    except ValueError as exc:
        raise FuncError(f"not a valid RFC3339 timestamp: {exc}") from None


def _offset(t: datetime, colon: bool) -> str:
    off = t.utcoffset() or timedelta(0)
    total = int(off.total_seconds()) // 60
    sign = "-" if total < 0 else "+"
    h, m = divmod(abs(total), 60)
    return f"{sign}{h:02d}:{m:02d}" if colon else f"{sign}{h:02d}{m:02d}"


def rfc3339(t: datetime) -> str:
    """Go's ``time.RFC3339`` layout: whole seconds, ``Z`` for a zero offset."""
    zone = "Z" if not (t.utcoffset() or timedelta(0)) else _offset(t, True)
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}{zone}"


_VERB: dict[str, Callable[[datetime, int], str | None]] = {
    "Y": lambda t, n: f"{t.year % 100:02d}" if n == 2 else f"{t.year:04d}" if n == 4 else None,
    "M": lambda t, n: (None, str(t.month), f"{t.month:02d}", _MONTHS[t.month - 1][:3], _MONTHS[t.month - 1])[n]
    if n <= 4 else None,
    "D": lambda t, n: str(t.day) if n == 1 else f"{t.day:02d}" if n == 2 else None,
    "E": lambda t, n: _DAYS[(t.weekday() + 1) % 7][:3] if n == 3 else
    _DAYS[(t.weekday() + 1) % 7] if n == 4 else None,
    "h": lambda t, n: str(t.hour) if n == 1 else f"{t.hour:02d}" if n == 2 else None,
    "H": lambda t, n: str((t.hour % 12) or 12) if n == 1 else f"{(t.hour % 12) or 12:02d}" if n == 2 else None,
    "A": lambda t, n: ("AM" if t.hour < 12 else "PM") if n == 2 else None,
    "a": lambda t, n: ("am" if t.hour < 12 else "pm") if n == 2 else None,
    "m": lambda t, n: str(t.minute) if n == 1 else f"{t.minute:02d}" if n == 2 else None,
    "s": lambda t, n: str(t.second) if n == 1 else f"{t.second:02d}" if n == 2 else None,
    "Z": lambda t, n: (None, rfc3339(t)[19:], None, "UTC" if _offset(t, False) == "+0000" else _offset(t, False),
                       _offset(t, False), _offset(t, True))[n] if n <= 5 else None,
}


def format_date(spec: Any, timestamp: Any) -> str:
    """go-cty's ``formatdate``. :raises FuncError: a bad timestamp, an unknown verb, an unterminated quote."""
    fmt, t = to_str(spec), parse_timestamp(timestamp)
    out: list[str] = []
    i = 0
    while i < len(fmt):
        c = fmt[i]
        if c == "'":
            if fmt.startswith("''", i):
                out.append("'")
                i += 2
                continue
            j, lit = i + 1, []
            while True:
                if j >= len(fmt):
                    raise FuncError("unterminated literal '")
                if fmt[j] == "'":
                    if fmt.startswith("''", j):
                        lit.append("'")
                        j += 2
                        continue
                    break
                lit.append(fmt[j])
                j += 1
            out.append("".join(lit))
            i = j + 1
        elif c.isascii() and c.isalpha():
            j = i
            while j < len(fmt) and fmt[j] == c:
                j += 1
            verb = _VERB.get(c)
            text = verb(t, j - i) if verb else None
            if text is None:
                raise FuncError(f"invalid date format verb {fmt[i:j]!r}")
            out.append(text)
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9,
          "h": 3600 * 10**9}
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: Any) -> int:
    """A Go duration string → nanoseconds. :raises FuncError: invalid."""
    s = to_str(text)
    sign, rest = (-1, s[1:]) if s.startswith("-") else (1, s[1:] if s.startswith("+") else s)
    if rest == "0":
        return 0
    if not rest:
        raise FuncError(f"time: invalid duration {s!r}")
    total, pos = 0, 0
    while pos < len(rest):
        m = _PART.match(rest, pos)
        if m is None:
            missing = re.fullmatch(r"[\d.]+", rest[pos:]) is not None
            raise FuncError(f"time: missing unit in duration {s!r}" if missing else f"time: invalid duration {s!r}")
        number, unit = m.groups()
        whole, _, frac = number.partition(".")
        scale = _UNITS[unit]
        total += int(whole or "0") * scale + (int(frac) * scale // 10 ** len(frac) if frac else 0)
        pos = m.end()
    return sign * total


def _timeadd(timestamp: Any, duration: Any) -> str:
    t = parse_timestamp(timestamp)
    try:
        return rfc3339(t + timedelta(microseconds=parse_duration(duration) // 1000))
    except OverflowError:
        raise FuncError("timeadd: the result is out of range") from None


def _unix(value: Any) -> datetime:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise FuncError(f"a unix timestamp number is required, got {type_name(value)}")
    n = value
    if isinstance(n, float) and not n.is_integer():
        raise FuncError("unix timestamp must be an integer")
    try:
        return datetime.fromtimestamp(int(n), UTC)
    except (OverflowError, OSError, ValueError):
        raise FuncError(f"unix timestamp {n} is out of range") from None


def _formattimestamp(spec: Any, value: Any) -> str:
    fmt = to_str(spec)
    if isinstance(value, str):
        return str(int(parse_timestamp(value).timestamp())) if fmt == "X" else format_date(fmt, value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        t = _unix(value)
        return str(int(t.timestamp())) if fmt == "X" else format_date(fmt, rfc3339(t))
    raise FuncError(f"must be a string timestamp or a unix timestamp number, got {type_name(value)}")


def _unixtimestampparse(value: Any) -> dict[str, Any]:
    t = _unix(value)
    iso_year, iso_week, _ = t.isocalendar()
    return {"year": t.year, "year_day": t.timetuple().tm_yday, "day": t.day, "month": t.month,
            "month_name": _MONTHS[t.month - 1], "weekday": (t.weekday() + 1) % 7,
            "weekday_name": _DAYS[(t.weekday() + 1) % 7], "hour": t.hour, "minute": t.minute, "second": t.second,
            "rfc3339": rfc3339(t), "iso_year": iso_year, "iso_week": iso_week}


def _timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


TIME_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "formatdate": format_date,
    "formattimestamp": _formattimestamp,
    "timeadd": _timeadd,
    "timestamp": _timestamp,
    "unixtimestampparse": _unixtimestampparse,
}
