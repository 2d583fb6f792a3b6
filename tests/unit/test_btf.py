import struct

import pytest

from bpftrace_leak.kernel.btf import Btf, BtfError


def build_btf(types: list[bytes], strings: list[str]) -> tuple[bytes, dict]:
    """A BTF blob from raw type records; returns it and {string: offset}."""
    strtab, offs = b"\0", {"": 0}
    for s in strings:
        offs[s] = len(strtab)
        strtab += s.encode() + b"\0"
    tsec = b"".join(types)
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(tsec), len(tsec), len(strtab))
    return hdr + tsec + strtab, offs


def t(name_off, kind, vlen, size_or_type, kflag=0):
    return struct.pack("<III", name_off, (kflag << 31) | (kind << 24) | vlen, size_or_type)


def member(name_off, type_id, bit_off):
    return struct.pack("<III", name_off, type_id, bit_off)


def test_offsets_through_anonymous_union_and_typedef():
    names = ["int", "qstr", "hash", "name", "dentry", "d_flags", "d_name", "qstr_t", "path", "mnt"]
    _, o = build_btf([], names)
    types = [
        t(o["int"], 1, 0, 4) + struct.pack("<I", 32),                      # 1 int
        t(0, 2, 0, 1),                                                     # 2 int *
        t(o["qstr"], 4, 2, 16) + member(o["hash"], 1, 0) + member(o["name"], 2, 64),  # 3 struct qstr
        t(o["qstr_t"], 8, 0, 3),                                           # 4 typedef qstr_t
        t(0, 5, 1, 16) + member(o["d_name"], 4, 0),                        # 5 anon union { qstr_t d_name }
        t(o["dentry"], 4, 2, 64) + member(o["d_flags"], 1, 0) + member(0, 5, 256),  # 6 struct dentry
        t(o["path"], 4, 1, 8) + member(o["mnt"], 2, 0),                    # 7 struct path
    ]
    blob, _ = build_btf(types, names)
    btf = Btf(blob)
    assert btf.offset("dentry", "d_name.name") == 32 + 8
    assert btf.offset("dentry", "d_flags") == 0
    assert btf.offset("path", "mnt") == 0
    with pytest.raises(BtfError, match="no member"):
        btf.offset("dentry", "d_nope")
    with pytest.raises(BtfError, match="not in BTF"):
        btf.offset("inode", "i_ino")


def test_not_btf():
    with pytest.raises(BtfError, match="magic"):
        Btf(b"\x00" * 64)


def _percpu_btf(section_first: bool) -> Btf:
    """.data..percpu with runqueues at 0x40 and this_cpu_off at 0x8: the
    section before its VARs (7.x's pahole) or after them (6.1-6.18)."""
    names = ["int", "runqueues", "this_cpu_off", ".data..percpu"]
    _, o = build_btf([], names)
    var = lambda name: t(o[name], 14, 0, 1) + struct.pack("<I", 1)  # VAR, global
    section = lambda a, b: (t(o[".data..percpu"], 15, 2, 0x80)
                            + struct.pack("<III", a, 0x40, 8) + struct.pack("<III", b, 0x8, 8))
    intt = t(o["int"], 1, 0, 4) + struct.pack("<I", 32)
    types = [intt, section(3, 4), var("runqueues"), var("this_cpu_off")] if section_first else \
        [intt, var("runqueues"), var("this_cpu_off"), section(2, 3)]
    return Btf(build_btf(types, names)[0])


@pytest.mark.parametrize("section_first", [False, True])
def test_percpu_variables_whichever_comes_first(section_first):
    btf = _percpu_btf(section_first)
    assert btf.percpu("runqueues") == 0x40 and btf.percpu("this_cpu_off") == 0x8
    with pytest.raises(BtfError):
        btf.percpu("cached_stacks")
