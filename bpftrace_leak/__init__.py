"""kleaktrace: find kernel memory leaks on a running system with BPF."""

__version__ = "0.1.0"
