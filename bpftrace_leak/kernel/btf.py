"""Struct member offsets of the running kernel, from its BTF (/sys/kernel/btf/vmlinux).

Used where a probe must follow a kernel pointer (struct path, struct dentry):
header layouts may belong to another kernel version and struct dentry may be
layout-randomized, BTF describes the kernel that is running. Only the parts
of the format needed for member offsets are parsed (include/uapi/linux/btf.h).
"""

import functools
import struct

__all__ = ["BTF_VMLINUX", "Btf", "BtfError"]

BTF_VMLINUX = "/sys/kernel/btf/vmlinux"

_MAGIC = 0xEB9F
_STRUCT, _UNION = 4, 5
_FUNC, _FUNC_PROTO = 12, 13
_VAR, _DATASEC = 14, 15
_ENUM, _ENUM64 = 6, 19
_TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG = 8, 9, 10, 11, 18
# bytes of kind-specific data after the 12-byte btf_type, per kind: (fixed, per vlen)
_TRAILER = {1: (4, 0), 2: (0, 0), 3: (12, 0), 4: (0, 12), 5: (0, 12), 6: (0, 8), 7: (0, 0),
            8: (0, 0), 9: (0, 0), 10: (0, 0), 11: (0, 0), 12: (0, 0), 13: (0, 8), 14: (4, 0),
            15: (0, 12), 16: (0, 0), 17: (4, 0), 18: (0, 0), 19: (0, 12)}


class BtfError(Exception):
    pass


class Btf:
    """Parsed struct/union members of one BTF blob.

    ``Btf.load()`` reads the running kernel's; ``offset("dentry", "d_name.name")``
    returns a byte offset, descending through anonymous struct/union members.
    """

    def __init__(self, blob: bytes):
        if len(blob) < 24:
            raise BtfError("BTF blob too short")
        magic, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<HBBIIIII", blob)
        if magic != _MAGIC:
            raise BtfError("not BTF (bad magic)")
        types = blob[hdr_len + type_off: hdr_len + type_off + type_len]
        self._strings = blob[hdr_len + str_off: hdr_len + str_off + str_len]
        self._kinds: list[tuple[int, int]] = [(0, 0)]  # id -> (kind, size_or_type); id 0 is void
        self._members: dict[int, list[tuple[str, int, int]]] = {}  # id -> [(name, type, bit offset)]
        self._by_name: dict[str, int] = {}
        self._params: dict[int, list[str]] = {}  # FUNC_PROTO id -> parameter names
        self._funcs: dict[str, int] = {}  # FUNC name -> its id (its FUNC_PROTO: _kinds[id][1])
        self._percpu: dict[str, int] = {}  # per-CPU variable -> its offset in the per-CPU area
        names: dict[int, str] = {}  # VAR id -> name
        # (VAR id, offset) of .data..percpu: named after the pass, as 7.x's
        # pahole emits the section before its VARs (6.1-6.18: after)
        percpu: list[tuple[int, int]] = []
        self._enumerators: dict[str, int] = {}  # every enum member -> its value
        pos = 0
        while pos < len(types):
            name_off, info, size_or_type = struct.unpack_from("<III", types, pos)
            pos += 12
            kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
            if kind not in _TRAILER:
                raise BtfError(f"unknown BTF kind {kind}")
            tid = len(self._kinds)
            self._kinds.append((kind, size_or_type))
            if kind in (_STRUCT, _UNION):
                members = []
                for i in range(vlen):
                    m_name, m_type, m_off = struct.unpack_from("<III", types, pos + 12 * i)
                    members.append((self._str(m_name), m_type, m_off & 0xFFFFFF if kflag else m_off))
                self._members[tid] = members
                name = self._str(name_off)
                if name and name not in self._by_name:
                    self._by_name[name] = tid
            elif kind == _FUNC_PROTO:
                self._params[tid] = [self._str(struct.unpack_from("<I", types, pos + 8 * i)[0])
                                     for i in range(vlen)]
            elif kind == _FUNC:
                self._funcs.setdefault(self._str(name_off), tid)
            elif kind == _VAR:
                names[tid] = self._str(name_off)
            elif kind == _ENUM:
                for i in range(vlen):
                    m_name, value = struct.unpack_from("<Ii", types, pos + 8 * i)
                    self._enumerators.setdefault(self._str(m_name), value)
            elif kind == _ENUM64:
                for i in range(vlen):
                    m_name, lo, hi = struct.unpack_from("<III", types, pos + 12 * i)
                    self._enumerators.setdefault(self._str(m_name), lo | hi << 32)
            elif kind == _DATASEC and self._str(name_off) == ".data..percpu":
                for i in range(vlen):
                    var, off, _size = struct.unpack_from("<III", types, pos + 12 * i)
                    percpu.append((var, off))
            fixed, per = _TRAILER[kind]
            pos += fixed + per * vlen
        self._percpu = {names.get(var, ""): off for var, off in percpu}

    @classmethod
    @functools.lru_cache(maxsize=2)  # parsed once per session: both the slab and the refcount probes need it
    def load(cls, path: str = BTF_VMLINUX) -> "Btf":
        try:
            with open(path, "rb") as f:
                return cls(f.read())
        except OSError as e:
            raise BtfError(f"cannot read {path}: {e.strerror}") from None

    def _str(self, off: int) -> str:
        end = self._strings.index(b"\0", off)
        return self._strings[off:end].decode()

    def _resolve(self, tid: int) -> int:
        while self._kinds[tid][0] in (_TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG):
            tid = self._kinds[tid][1]
        return tid

    def _find(self, tid: int, name: str) -> tuple[int, int] | None:
        """(bit offset, type id) of member ``name`` in struct/union ``tid``."""
        for m_name, m_type, m_off in self._members.get(tid, ()):
            if m_name == name:
                return m_off, m_type
            if not m_name:  # anonymous struct or union: look inside
                inner = self._find(self._resolve(m_type), name)
                if inner:
                    return m_off + inner[0], inner[1]
        return None

    def params(self, func: str) -> list[str]:
        """Parameter names of function ``func``, in order."""
        fid = self._funcs.get(func)
        proto = self._kinds[fid][1] if fid is not None else None
        if proto is None or proto not in self._params:
            raise BtfError(f"function {func} not in BTF")
        return self._params[proto]

    def func_id(self, func: str) -> int:
        """The type id of function ``func`` (what a call to it as a kfunc names)."""
        if func not in self._funcs:
            raise BtfError(f"function {func} not in BTF")
        return self._funcs[func]

    def struct_id(self, struct_name: str) -> int:
        """The type id of ``struct struct_name``."""
        if struct_name not in self._by_name:
            raise BtfError(f"struct {struct_name} not in BTF")
        return self._by_name[struct_name]

    def enumerator(self, name: str) -> int:
        """The value of enum member ``name`` (e.g. memory_cgrp_id)."""
        if name not in self._enumerators:
            raise BtfError(f"enum member {name} not in BTF")
        return self._enumerators[name]

    def percpu(self, var: str) -> int:
        """Offset of per-CPU variable ``var`` in the per-CPU area (BTF's
        .data..percpu DATASEC; a CPU's copy is at this plus its per-CPU offset)."""
        if var not in self._percpu:
            raise BtfError(f"per-CPU variable {var} not in BTF")
        return self._percpu[var]

    def percpu_vars(self) -> dict[str, int]:
        """Every per-CPU variable: {name: offset in the per-CPU area}."""
        return dict(self._percpu)

    def size(self, struct_name: str) -> int:
        """sizeof(struct ``struct_name``)."""
        tid = self._by_name.get(struct_name)
        if tid is None:
            raise BtfError(f"struct {struct_name} not in BTF")
        return self._kinds[tid][1]

    def offset(self, struct_name: str, member_path: str) -> int:
        """Byte offset of ``member_path`` (dotted) in ``struct struct_name``."""
        tid = self._by_name.get(struct_name)
        if tid is None:
            raise BtfError(f"struct {struct_name} not in BTF")
        bits = 0
        for part in member_path.split("."):
            found = self._find(self._resolve(tid), part)
            if found is None:
                raise BtfError(f"struct {struct_name} has no member {member_path}")
            bits += found[0]
            tid = found[1]
        if bits % 8:
            raise BtfError(f"{struct_name}.{member_path} is a bit field")
        return bits // 8
