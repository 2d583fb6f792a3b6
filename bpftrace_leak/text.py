"""The one way a string reaches a person: printable().

Much of what kleaktrace shows is named by others: a process names itself
(prctl PR_SET_NAME), a user names files and cgroups, a capture may be made
up. Text, HTML, pprof profiles and error messages all pass every string
through printable(), so an escape sequence, a bidi override or a lone
surrogate is shown, never obeyed and never a crash of the encoder.
"""

import sys

__all__ = ["printable", "human_bytes", "say", "warn"]


def printable(value) -> str:
    """``value`` as text with every non-printable character (controls, escapes,
    bidi overrides, lone surrogates: Unicode's C* categories, and line
    breaks) spelled ``\\xNN`` / ``\\uNNNN``."""
    s = str(value)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")
                   for c in s)


def human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def say(message: str) -> None:
    """One line on stderr, "kleaktrace: ..."; a closed stderr costs it."""
    try:
        print(f"kleaktrace: {printable(message)}", file=sys.stderr, flush=True)
    except (OSError, AttributeError, ValueError):
        pass


def warn(message: str) -> None:
    say(f"warning: {message}")
