"""bench/ablation.py's variants still apply to the probes as they are: each
replaces one line that must be in its file exactly once (the script stops on
a line no longer found, but only when someone runs it)."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import ablation  # noqa: E402


@pytest.mark.parametrize("name", [n for n, a in ablation.ABLATIONS.items() if a])
def test_each_ablation_replaces_one_line_of_the_probes(name, tmp_path):
    file, line, instead = ablation.ABLATIONS[name]
    with open(os.path.join(ROOT, "bpftrace_leak", "probes", file)) as f:
        probes = f.read()
    assert probes.count(line) == 1, (name, line)
    tree = ablation.variant_tree(str(tmp_path), ablation.ABLATIONS[name])
    with open(os.path.join(tree, "bpftrace_leak", "probes", file)) as f:
        assert f.read() == probes.replace(line, instead)
