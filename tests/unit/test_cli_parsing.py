import click
import pytest

from bpftrace_leak.cli import Duration


@pytest.mark.parametrize("text,unit,seconds", [
    ("500ms", "s", 0.5), ("30s", "s", 30), ("5m", "s", 300), ("8h", "s", 28800),
    ("1000", "ms", 1.0), ("2", "s", 2), ("1.5s", "ms", 1.5),
])
def test_duration(text, unit, seconds):
    assert Duration(unit).convert(text, None, None) == pytest.approx(seconds)


def test_bad_duration():
    with pytest.raises(click.BadParameter):
        Duration().convert("soon", None, None)
