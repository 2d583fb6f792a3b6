"""The files for running kleaktrace serve in production: the alert rules
(checked and unit-tested by promtool on a synthetic leak, a flat cache and a
young session) and the systemd unit (systemd-analyze verify)."""

import os
import shutil
import subprocess

import pytest

DEPLOY = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "deploy")
promtool = pytest.mark.skipif(not shutil.which("promtool"), reason="no promtool: ./setup --tests installs prometheus")


@promtool
def test_alert_rules_are_valid_and_fire_as_documented():
    for args in (["check", "rules", "kleaktrace.rules.yml"], ["test", "rules", "kleaktrace.rules.test.yml"]):
        res = subprocess.run(["promtool", *args], cwd=DEPLOY, capture_output=True, text=True)
        assert res.returncode == 0, res.stdout + res.stderr


@promtool
def test_rule_tests_can_fail(tmp_path):
    """The rule tests notice a rule that fires too early."""
    for name in ("kleaktrace.rules.yml", "kleaktrace.rules.test.yml"):
        shutil.copy(os.path.join(DEPLOY, name), tmp_path)
    rules = tmp_path / "kleaktrace.rules.yml"
    rules.write_text(rules.read_text().replace("for: 3h", "for: 1h"))
    res = subprocess.run(["promtool", "test", "rules", "kleaktrace.rules.test.yml"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert res.returncode != 0


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="no systemd-analyze")
def test_systemd_unit_verifies_cleanly():
    if not os.access("/usr/local/bin/kleaktrace", os.X_OK):
        pytest.skip("./setup links /usr/local/bin/kleaktrace, the unit's ExecStart")
    res = subprocess.run(["systemd-analyze", "verify", os.path.join(DEPLOY, "kleaktrace.service")],
                         capture_output=True, text=True)
    assert res.returncode == 0 and not res.stderr.strip(), res.stderr
