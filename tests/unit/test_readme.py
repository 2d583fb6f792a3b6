"""The README's two opening commands are what a newcomer runs, and CI runs the second."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_ci_runs_the_readme_test_command():
    readme = open(os.path.join(ROOT, "README.md")).read()
    block = re.search(r"```sh\n(.*?)```", readme, re.S).group(1).splitlines()
    demo, tests = (line.split("#")[0].strip() for line in block[:2])
    assert demo == "./setup && .venv/bin/kleaktrace demo"
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    command = re.search(r"exec sh -c '(.*)'", ci).group(1)
    assert command == tests
