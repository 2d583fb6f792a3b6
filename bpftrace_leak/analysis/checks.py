"""The checks a field of a document read from a file passes
(analysis/schema.py puts them together): JSON types and bounds, each
failure an Invalid naming the field."""

import math

__all__ = ["Invalid", "MAX_FRAMES", "MAX_TEXT", "MAX_LIST", "MAX_COUNT", "finite_float", "reject_constant",
           "count", "number", "text", "opt_text", "listed", "texts", "counts", "stack", "obj", "fields", "flag",
           "rows", "together", "kinds"]

#: frames a stack may have: the kernel keeps at most perf_event_max_stack
#: (127 by default) per stack; a capture holding more was not made by us
MAX_FRAMES = 512
MAX_TEXT = 4096  # a kernel symbol is at most 512 bytes, a file name 255
MAX_LIST = 10_000_000
MAX_COUNT = 2**63


class Invalid(ValueError):
    """A document that breaks the format; the message names the field."""


def finite_float(text: str) -> float:
    """json ``parse_float``: 1e400 is not a number kleaktrace wrote."""
    value = float(text)
    if not math.isfinite(value):
        raise Invalid(f"number {text[:20]} out of range")
    return value


def reject_constant(name: str):
    """json ``parse_constant``: NaN and Infinity are not JSON."""
    raise Invalid(f"{name} is not a number")


def count(v, where):
    if type(v) is not int or not 0 <= v < MAX_COUNT:
        raise Invalid(f"{where}: not a count")
    return v


def number(v, where):
    if type(v) not in (int, float) or not -1e18 < v < 1e18:
        raise Invalid(f"{where}: not a number")
    return v


def text(v, where, limit=MAX_TEXT):
    if type(v) is not str or len(v) > limit:
        raise Invalid(f"{where}: not a string of at most {limit} characters")
    return v


def opt_text(v, where):
    return None if v is None else text(v, where)


def listed(v, where, limit=MAX_LIST):
    if type(v) is not list or len(v) > limit:
        raise Invalid(f"{where}: not a list")
    return v


def texts(v, where, limit=MAX_LIST):
    listed(v, where, limit)
    if v and (set(map(type, v)) != {str} or max(map(len, v)) > MAX_TEXT):
        raise Invalid(f"{where}: not a list of strings")
    return v


def counts(v, where):
    listed(v, where)
    for i, n in enumerate(v):
        count(n, f"{where}[{i}]")
    return v


def stack(v, where):
    return texts(v, where, MAX_FRAMES)


def obj(v, where):
    if type(v) is not dict:
        raise Invalid(f"{where}: not an object")
    return v


def fields(doc, where, required, optional=()):
    """Check ``doc``'s fields: {name: checker}; required ones must be there."""
    obj(doc, where)
    for name, check in required:
        if name not in doc:
            raise Invalid(f"{where}: no {name!r}")
        check(doc[name], f"{where}.{name}")
    for name, check in optional:
        if doc.get(name) is not None:
            check(doc[name], f"{where}.{name}")
    return doc


def flag(v, where):
    if type(v) is not bool:
        raise Invalid(f"{where}: not true or false")
    return v


def rows(v, where, required, limit, optional=()):
    for i, row in enumerate(listed(v, where, limit)):
        fields(row, f"{where}[{i}]", required, optional)
    return v


def together(doc, where, pairs):
    for have, need in pairs:
        if doc.get(have) is not None and doc.get(need) is None:
            raise Invalid(f"{where}: {have!r} without {need!r}")


def kinds(k, where):
    """{kind: count}, kinds named in at most 64 characters."""
    for name, n in obj(k, where).items():
        text(name, f"{where} key", 64)
        count(n, f"{where}[{name!r}]")
    return k
