"""Kernel functions called from BCC-compiled programs: the placeholder calls
rewritten before loading (tracer/bcc.py), and when the plan asks for them."""

import struct
from types import SimpleNamespace

from bpftrace_leak import layout
from bpftrace_leak.kernel.facts import KernelFacts
from bpftrace_leak.tracer.bcc import rewrite_kfunc_calls
from bpftrace_leak.tracer.plan import Plan, _regs_flags

CAST = layout.ENUMS["kfunc_call"]["KFUNC_RDONLY_CAST"]


def insn(code, dst=0, src=0, off=0, imm=0) -> bytes:
    return struct.pack("<BBhi", code, dst | src << 4, off, imm)


def test_only_helper_calls_of_a_placeholder_number_become_kfunc_calls():
    prog = bytearray(insn(0xB7, dst=2, imm=162)           # r2 = 162
                     + insn(0x85, imm=CAST)               # call 30001: the placeholder
                     + insn(0x85, imm=158)                # call bpf_get_current_task_btf: a helper
                     + insn(0x85, src=1, imm=CAST)        # a BPF-to-BPF call whose offset happens to match
                     + insn(0x18, dst=1, imm=0) + insn(0, imm=CAST)  # ld_imm64 whose high half matches
                     + insn(0x95))                        # exit
    assert rewrite_kfunc_calls(prog, {CAST: 64919}) == 1
    words = [struct.unpack_from("<BBhi", prog, i) for i in range(0, len(prog), 8)]
    assert words[1] == (0x85, 2 << 4, 0, 64919)  # src_reg BPF_PSEUDO_KFUNC_CALL, imm the BTF id
    assert words[2] == (0x85, 0, 0, 158) and words[3] == (0x85, 1 << 4, 0, CAST) and words[5] == (0, 0, 0, CAST)
    assert rewrite_kfunc_calls(prog, {CAST: 64919}) == 0  # done once


def _facts(**kw):
    base = dict(offsets={"task_struct.stack": 32, "pt_regs.orig_ax": 120}, kfuncs={"bpf_rdonly_cast": 64919},
                types={"pt_regs": (162, 168)}, page_size=4096)
    base.update(kw)
    return KernelFacts(**base)


def test_the_registers_are_read_without_a_helper_only_where_the_kernel_has_the_kfunc():
    p = Plan()
    assert _regs_flags(p, SimpleNamespace(allocs=True), _facts()) == ["-DPT_REGS_BTF_ID=162", "-DPT_REGS_SIZE=168"]
    assert p.kfunc_calls == {CAST: 64919}
    for facts in (_facts(kfuncs={}), _facts(types={}), _facts(offsets={"pt_regs.orig_ax": 120})):
        p = Plan()  # 6.1 (no bpf_rdonly_cast), or BTF without the struct or the member
        assert _regs_flags(p, SimpleNamespace(allocs=True), facts) == [] and p.kfunc_calls == {}
    assert _regs_flags(Plan(), SimpleNamespace(allocs=False), _facts()) == []
