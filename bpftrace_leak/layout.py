"""Constants shared with probes.c, read from layout.h so they are defined once.

The map key and value ctypes are not retyped here either: BCC derives them
from the same header when it compiles probes.c (``bpf["live"].Leaf``).
"""

import os
import re

__all__ = ["HEADER", "PROBES_C", "dtype", "parse_struct", "KINDS", "SPACES", "COUNTERS", "FREE_EVENTS", "REF_OBJECTS", "REF_WHY", "STACK_HOW", "DEFINES", "ENUMS", "KIND_NAMES",
           "KIND_BY_NAME", "COUNTER_NAMES", "parse_header"]

PACKAGE = os.path.dirname(os.path.abspath(__file__))
HEADER = os.path.join(PACKAGE, "layout.h")
PROBES_C = os.path.join(PACKAGE, "probes.c")


def parse_header(text: str) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """Parse ``enum NAME { A = 0, B, ... };`` blocks and integer ``#define``s.

    Returns ({enum name: {member: value}}, {define: value}).
    """
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    enums: dict[str, dict[str, int]] = {}
    for name, body in re.findall(r"enum\s+(\w+)\s*\{(.*?)\}\s*;", text, flags=re.S):
        members: dict[str, int] = {}
        nxt = 0
        for item in body.split(","):
            item = item.strip()
            if not item:
                continue
            if "=" in item:
                member, value = (s.strip() for s in item.split("=", 1))
                nxt = int(value, 0)
            else:
                member = item
            members[member] = nxt
            nxt += 1
        enums[name] = members
    defines = {
        name: int(value, 0)
        for name, value in re.findall(r"^\s*#define\s+(\w+)\s+(0x[0-9a-fA-F]+|\d+)\s*$", text, flags=re.M)
    }
    return enums, defines


_SCALARS = {"u8": "<u1", "u16": "<u2", "u32": "<u4", "u64": "<u8", "s32": "<i4", "s64": "<i8"}


def parse_struct(text: str, name: str):
    """The numpy dtype of ``struct name`` in ``text``: a struct of scalar
    members and char arrays, laid out as C does (each member at its natural
    alignment). For records that no map carries, so BCC gives no ctypes for
    them (what BPF iterators write)."""
    import numpy as np
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    body = re.search(r"struct\s+" + name + r"\s*\{(.*?)\}\s*;", text, flags=re.S)
    if not body:
        raise KeyError(name)
    fields, offset, align = [], 0, 1
    for member in filter(None, (m.strip() for m in body.group(1).split(";"))):
        kind, field = member.split()
        if kind == "char":
            field, n = re.match(r"(\w+)\[(\w+)\]", field).groups()
            dt, size, a = f"S{DEFINES.get(n) or int(n)}", DEFINES.get(n) or int(n), 1
        else:
            dt = _SCALARS[kind]
            size = a = np.dtype(dt).itemsize
        offset = -(-offset // a) * a
        fields.append((field, dt, offset))
        offset += size
        align = max(align, a)
    return np.dtype({"names": [f[0] for f in fields], "formats": [f[1] for f in fields],
                     "offsets": [f[2] for f in fields], "itemsize": -(-offset // align) * align})


def dtype(name: str):
    """parse_struct() of layout.h's ``struct name``."""
    with open(HEADER) as f:
        return parse_struct(f.read(), name)


with open(HEADER) as _f:
    _ENUMS, DEFINES = parse_header(_f.read())

KINDS = _ENUMS["kind"]
SPACES = _ENUMS["space"]
COUNTERS = _ENUMS["counter"]
FREE_EVENTS = _ENUMS["free_event"]
REF_OBJECTS = _ENUMS["ref_object"]
REF_WHY = _ENUMS["ref_why"]
ENUMS = _ENUMS
COUNTER_NAMES = {v: k[len("CNT_"):].lower() for k, v in COUNTERS.items() if k.startswith("CNT_")}
STACK_HOW = _ENUMS["stack_how"]

#: report names of the kinds, as the JSON schema spells them
KIND_NAMES = {
    KINDS["KIND_KMALLOC"]: "kmalloc",
    KINDS["KIND_SLAB"]: "slab",
    KINDS["KIND_PAGE"]: "page",
    KINDS["KIND_PERCPU"]: "percpu",
    KINDS["KIND_VMALLOC"]: "vmalloc",
    KINDS["KIND_USER_PAGE"]: "user-page",
}
KIND_BY_NAME = {name: kind for kind, name in KIND_NAMES.items()}
