"""Reports as pprof profiles, for ``go tool pprof``, Grafana Pyroscope and Parca.

The format is the protocol buffer ``perftools.profiles.Profile``
(github.com/google/pprof, proto/profile.proto), gzipped. Its message types
are declared here field by field, numbers as in profile.proto, and built
with the protobuf library at run time (no protoc step, nothing generated
committed): the library does the encoding.

A profile holds one sample per group: its kernel stack as locations (one
per frame, leaf first, the function named without its offset), values
``inuse_objects``/count and ``inuse_space``/bytes (what is outstanding, as
Go's heap profiles call it), and labels ``kind``, ``cache``, ``cgroup``.
Two profiles of one system diff with ``go tool pprof -diff_base``.
"""

import gzip
import re
from datetime import datetime

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from ..text import printable

__all__ = ["render_pprof", "Profile"]

_F = descriptor_pb2.FieldDescriptorProto
_INT64, _UINT64, _STRING, _BOOL, _MESSAGE = _F.TYPE_INT64, _F.TYPE_UINT64, _F.TYPE_STRING, _F.TYPE_BOOL, _F.TYPE_MESSAGE
_ONE, _MANY = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED

#: profile.proto's messages: {name: [(field, number, type, label, message type)]}
_MESSAGES = {
    "Profile": [("sample_type", 1, _MESSAGE, _MANY, "ValueType"), ("sample", 2, _MESSAGE, _MANY, "Sample"),
                ("mapping", 3, _MESSAGE, _MANY, "Mapping"), ("location", 4, _MESSAGE, _MANY, "Location"),
                ("function", 5, _MESSAGE, _MANY, "Function"), ("string_table", 6, _STRING, _MANY, None),
                ("drop_frames", 7, _INT64, _ONE, None), ("keep_frames", 8, _INT64, _ONE, None),
                ("time_nanos", 9, _INT64, _ONE, None), ("duration_nanos", 10, _INT64, _ONE, None),
                ("period_type", 11, _MESSAGE, _ONE, "ValueType"), ("period", 12, _INT64, _ONE, None),
                ("comment", 13, _INT64, _MANY, None), ("default_sample_type", 14, _INT64, _ONE, None)],
    "ValueType": [("type", 1, _INT64, _ONE, None), ("unit", 2, _INT64, _ONE, None)],
    "Sample": [("location_id", 1, _UINT64, _MANY, None), ("value", 2, _INT64, _MANY, None),
               ("label", 3, _MESSAGE, _MANY, "Label")],
    "Label": [("key", 1, _INT64, _ONE, None), ("str", 2, _INT64, _ONE, None), ("num", 3, _INT64, _ONE, None),
              ("num_unit", 4, _INT64, _ONE, None)],
    "Mapping": [("id", 1, _UINT64, _ONE, None), ("memory_start", 2, _UINT64, _ONE, None),
                ("memory_limit", 3, _UINT64, _ONE, None), ("file_offset", 4, _UINT64, _ONE, None),
                ("filename", 5, _INT64, _ONE, None), ("build_id", 6, _INT64, _ONE, None),
                ("has_functions", 7, _BOOL, _ONE, None), ("has_filenames", 8, _BOOL, _ONE, None),
                ("has_line_numbers", 9, _BOOL, _ONE, None), ("has_inline_frames", 10, _BOOL, _ONE, None)],
    "Location": [("id", 1, _UINT64, _ONE, None), ("mapping_id", 2, _UINT64, _ONE, None),
                 ("address", 3, _UINT64, _ONE, None), ("line", 4, _MESSAGE, _MANY, "Line"),
                 ("is_folded", 5, _BOOL, _ONE, None)],
    "Line": [("function_id", 1, _UINT64, _ONE, None), ("line", 2, _INT64, _ONE, None)],
    "Function": [("id", 1, _UINT64, _ONE, None), ("name", 2, _INT64, _ONE, None),
                 ("system_name", 3, _INT64, _ONE, None), ("filename", 4, _INT64, _ONE, None),
                 ("start_line", 5, _INT64, _ONE, None)],
}
_PACKAGE = "perftools.profiles"


def _classes() -> dict:
    fd = descriptor_pb2.FileDescriptorProto(name="kleaktrace/profile.proto", package=_PACKAGE, syntax="proto3")
    for name, fields in _MESSAGES.items():
        msg = fd.message_type.add(name=name)
        for field, number, ftype, label, type_name in fields:
            f = msg.field.add(name=field, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = f".{_PACKAGE}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    if hasattr(message_factory, "GetMessageClass"):  # protobuf 4.x
        return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{n}")) for n in _MESSAGES}
    factory = message_factory.MessageFactory(pool)
    return {n: factory.GetPrototype(pool.FindMessageTypeByName(f"{_PACKAGE}.{n}")) for n in _MESSAGES}


_CLASSES = None


def Profile():
    """An empty perftools.profiles.Profile message."""
    global _CLASSES
    if _CLASSES is None:
        _CLASSES = _classes()
    return _CLASSES["Profile"]()


_OFFSET = re.compile(r"\+0x[0-9a-f]+(?:/0x[0-9a-f]+)?")


def _when(report: dict) -> float | None:
    """When the report was made (seconds since the epoch): serve's ``_made``,
    else its start plus its duration."""
    if report.get("_made"):
        return report["_made"]
    try:
        return datetime.fromisoformat(report["started"]).timestamp() + float(report.get("duration_s") or 0)
    except (KeyError, TypeError, ValueError):
        return None


_INT64_MAX = 2**63 - 1


def _int64(x) -> int:
    """``x`` as profile.proto's int64: a capture's numbers may be anything
    below 1e18, culled groups' sums beyond 2**63."""
    return int(max(-_INT64_MAX, min(_INT64_MAX, x)))


def render_pprof(report: dict) -> bytes:
    """The report's groups as a gzipped pprof profile."""
    prof = Profile()
    strings = {"": 0}

    def s(text) -> int:
        text = printable(text)  # go tool pprof -top prints names as they are: no escapes through it
        if text not in strings:
            strings[text] = len(strings)
        return strings[text]

    for type_, unit in (("inuse_objects", "count"), ("inuse_space", "bytes")):
        prof.sample_type.add(type=s(type_), unit=s(unit))
    prof.default_sample_type = s("inuse_space")  # a string table index, as profile.proto says
    mapping = prof.mapping.add(id=1, filename=s("[kernel]"), has_functions=True)
    functions: dict[str, int] = {}
    locations: dict[str, int] = {}

    def location(frame: str) -> int:
        if frame not in locations:
            name = _OFFSET.sub("", frame).split(" ")[0] or frame
            if name not in functions:
                functions[name] = len(functions) + 1
                prof.function.add(id=functions[name], name=s(name), system_name=s(name))
            locations[frame] = len(locations) + 1
            loc = prof.location.add(id=locations[frame], mapping_id=mapping.id)
            loc.line.add(function_id=functions[name])
        return locations[frame]

    made = _when(report)
    if made:
        prof.time_nanos = _int64(made * 1e9)
    if report.get("duration_s"):
        prof.duration_nanos = _int64(report["duration_s"] * 1e9)
    if report.get("sampling_bytes"):
        prof.comment.append(s(f"sampled: an allocation of S bytes kept with probability S/{report['sampling_bytes']}; "
                              "values are weighed estimates"))
    for g in report["groups"]:
        root = f"{g['kind']}:{g['cache']}" if g["cache"] else g["kind"]
        frames = list(g["stack"]) + [root]  # leaf first; the kind and cache as the root frame
        sample = prof.sample.add(location_id=[location(f) for f in frames],
                                 value=[_int64(g["objects"]), _int64(g["bytes"])])
        one = (g.get("cgroups") or [{}])[0] if g.get("cgroup_count") == 1 else {}
        for key, value in (("kind", g.get("kind")), ("cache", g.get("cache")),
                           ("cgroup", g.get("cgroup") or one.get("path")),
                           ("container", g.get("container") or one.get("container"))):
            if value:
                sample.label.add(key=s(key), str=s(value))
    prof.string_table.extend(strings)
    return gzip.compress(prof.SerializeToString(), mtime=0)
