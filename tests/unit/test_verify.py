"""dlrig.verify.runner: result parsing, role selection, targets, table/JSON/JUnit, and the real runner
(pytest + testinfra local://, our plugin) on this machine."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest


from dlrig.engine.preflight import effective_data
from dlrig.verify import report as R
from dlrig.verify import runner as V

# ------------------------------------------------------------------------------- parsing

ROOT = Path(__file__).resolve().parents[2]  # subprocesses run from the clone's root: they import this checkout

PLUGIN_LINES = [
    json.dumps({"module": "test_gpu", "name": "test_nvidia_smi_lists_gpus", "outcome": "failed",
                "message": "nvidia-smi exit 9: NVIDIA-SMI has failed. -> HINT: reboot: the driver was installed",
                "properties": {}, "duration": 0.2}),
    json.dumps({"module": "test_base", "name": "test_dpkg_audit_clean", "outcome": "passed", "message": "",
                "properties": {"info": "clean"}, "duration": 0.1}),
    json.dumps({"module": "test_gpu", "name": "test_bf16_matmul_where_supported", "outcome": "skipped",
                "message": "compute capability 7.5 < 8.0", "properties": {}, "duration": 0}),
    "not json at all",
    json.dumps({"module": "test_ssh", "name": "(collect)", "outcome": "error",
                "message": "ImportError: no module named x", "properties": {}}),
    json.dumps({"module": "test_gpu", "name": "test_fp16_matmul_matches_fp32", "outcome": "failed",
                "message": "wrong", "properties": {"hint": "from a property"}}),
]


def test_parse_results_splits_reason_and_hint():
    rs = V.parse_results("rig", PLUGIN_LINES)
    assert [r.check for r in rs] == ["gpu::nvidia_smi_lists_gpus", "base::dpkg_audit_clean",
                                     "gpu::bf16_matmul_where_supported", "ssh::(collect)",
                                     "gpu::fp16_matmul_matches_fp32"]
    smi = rs[0]
    assert (smi.result, smi.reason, smi.hint) == ("failed", "nvidia-smi exit 9: NVIDIA-SMI has failed.",
                                                  "reboot: the driver was installed")
    assert smi.role == "nvidia_driver" and rs[1].role == "base"
    assert rs[1].info == "clean" and rs[1].reason == ""
    assert rs[2].result == "skipped" and rs[2].reason == "compute capability 7.5 < 8.0"
    assert rs[3].result == "error"
    assert rs[4].hint == "from a property"


def test_summary_and_exit_semantics():
    rs = V.parse_results("rig", PLUGIN_LINES)
    s = R.summary(rs)
    assert s["ok"] is False and s["hosts"]["rig"] == {"passed": 1, "failed": 2, "skipped": 1, "error": 1, "ok": False}
    only_skips_and_passes = [r for r in rs if r.result in ("passed", "skipped")]
    assert R.summary(only_skips_and_passes)["ok"] is True
    assert R.summary([])["ok"] is False  # nothing ran is not a pass


def test_a_host_where_no_check_ran_fails_with_a_reason():
    only_skips = [V.CheckResult("rig", f"gpu::c{i}", "skipped", "cpu_only=True") for i in range(3)]
    s = R.summary(only_skips)
    assert s["ok"] is False and s["hosts"]["rig"]["reason"] == R.NOTHING_RAN
    passed = [V.CheckResult("rig", "base::a", "passed")]
    s = R.summary(passed, ["rig", "other"])  # 'other' returned nothing at all
    assert s["ok"] is False and s["hosts"]["other"]["reason"] == R.NOTHING_RAN and s["hosts"]["rig"]["ok"]
    assert R.summary(passed, ["rig"])["ok"] is True
    assert "other: no check ran" in R.format_table([], hosts_expected=["other"])
    assert "-> FAILED (no check ran" in R.format_table(only_skips)


@pytest.mark.parametrize("outcome", ["failed", "error"])
def test_one_failure_or_error_fails_the_host_even_with_passes(outcome):
    rs = [V.CheckResult("rig", "base::a", "passed"), V.CheckResult("rig", "base::b", outcome)]
    s = R.summary(rs)
    assert s["ok"] is False and s["hosts"]["rig"]["ok"] is False and "reason" not in s["hosts"]["rig"]
    only = R.summary([V.CheckResult("rig", "base::b", outcome)])
    assert only["hosts"]["rig"]["ok"] is False and "reason" not in only["hosts"]["rig"]  # it ran, and failed


def test_counts_of_a_host_without_results_are_zero():
    s = R.summary([], ["quiet"])
    assert s["hosts"]["quiet"] == {"passed": 0, "failed": 0, "skipped": 0, "error": 0, "ok": False,
                                   "reason": R.NOTHING_RAN}
    passed = R.summary([V.CheckResult("rig", "base::a", "passed")])
    assert "reason" not in passed["hosts"]["rig"] and passed["hosts"]["rig"]["ok"] is True


def test_verify_exits_1_when_no_check_ran(tmp_path):
    """cudnn's checks all skip on a cpu_only host: nothing verified, exit 1 with the reason."""
    res = subprocess.run([sys.executable, "-m", "dlrig", "verify", "--local", "--roles", "cudnn", "--data",
                          "cpu_only=True", "--json"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 1, res.stdout + res.stderr
    payload = json.loads(res.stdout)
    assert payload["ok"] is False and payload["hosts"]["localhost"]["reason"] == R.NOTHING_RAN
    res = subprocess.run([sys.executable, "-m", "dlrig", "verify", "--local", "--roles", "cudnn", "--data",
                          "cpu_only=True"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 1 and "no check ran" in res.stdout


def test_table_shows_check_host_result_hint_and_reason():
    rs = V.parse_results("rig", PLUGIN_LINES)
    table = R.format_table(rs)
    lines = table.splitlines()
    assert lines[0].split() == ["check", "host", "result", "hint"]
    row = next(line for line in lines if line.startswith("gpu::nvidia_smi_lists_gpus"))
    assert row.split()[1:3] == ["rig", "FAIL"] and "reboot: the driver was installed" in row
    assert "    why: nvidia-smi exit 9: NVIDIA-SMI has failed." in lines
    assert "rig: 1 passed, 2 failed, 1 skipped, 1 error(s)  -> FAILED" in lines


def test_table_folds_runs_of_identical_skips():
    rs = [V.CheckResult("rig", f"gpu::c{i}", "skipped", "cpu_only=True") for i in range(5)]
    rs.insert(0, V.CheckResult("rig", "base::a", "passed"))
    table = R.format_table(rs)
    assert "gpu::c0 (+4 more)" in table and "gpu::c1" not in table
    assert "rig: 1 passed, 0 failed, 5 skipped  -> ok" in table


def test_json_and_junit():
    rs = V.parse_results("rig", PLUGIN_LINES)
    payload = R.as_json(rs)
    assert payload["ok"] is False and len(payload["results"]) == 5
    assert payload["results"][0]["hint"] == "reboot: the driver was installed"
    root = ET.fromstring(R.junit_xml(rs))
    suite = root.find("testsuite")
    assert suite.get("name") == "rig" and suite.get("failures") == "2" and suite.get("errors") == "1"
    case = suite.find("testcase[@name='gpu::nvidia_smi_lists_gpus']")
    assert case.find("failure").get("message") == "nvidia-smi exit 9: NVIDIA-SMI has failed."
    assert "hint: reboot" in case.find("failure").text
    assert suite.find("testcase[@name='gpu::bf16_matmul_where_supported']/skipped") is not None


# ------------------------------------------------------------------------------- selection

def test_module_role():
    assert V.module_role("test_gpu") == "nvidia_driver"
    assert V.module_role("test_ssh") == "ssh"


def test_selected_roles_follow_dlrig_roles_and_cpu_only():
    s = effective_data({"dlrig_roles": ["base", "pytorch"]})
    assert V.selected_roles(s) == ["base", "pytorch"]
    assert V.selected_roles(s, only=["base"]) == ["base"]
    assert V.selected_roles(s, only=["ssh"]) == []  # not on this host
    every = V.selected_roles(effective_data({}))
    assert "base" in every and "nvidia_driver" in every  # test_gpu.py ships: its role is selected
    cpu = V.selected_roles(effective_data({"cpu_only": True}))
    assert "nvidia_driver" in cpu  # kept: its checks report "skipped: cpu_only"
    assert "cuda" not in cpu and "cudnn" not in cpu


def test_parse_role_list():
    assert V.parse_role_list("base,gpu") == ["base", "nvidia_driver"]
    assert V.parse_role_list(None) is None
    with pytest.raises(KeyError, match="unknown role"):
        V.parse_role_list("base,nope")


def test_default_python():
    assert V.default_python({}, "dlrig") == "python3"
    data = effective_data({})
    if "env_name" in data:  # the pytorch/conda roles are in this tree
        assert V.default_python(data, "dlrig") == f"/home/dlrig/miniforge3/envs/{data['env_name']}/bin/python"
        assert V.default_python({**data, "conda_prefix": "/opt/conda", "env_name": "ml"}, "x") == \
            "/opt/conda/envs/ml/bin/python"
        assert V.default_python({**data, "workstation_user": "ann"}, "root").startswith("/home/ann/")


# ------------------------------------------------------------------------------- targets

def test_ssh_target_spec_from_inventory_data(tmp_path):
    t = V.ssh_target("rig", {"ssh_hostname": "10.0.0.5", "ssh_user": "ann", "ssh_port": 2222,
                             "ssh_key": "/keys/id ed", "ssh_strict_host_key_checking": "no", "_sudo": True}, tmp_path)
    assert t.spec == (f"paramiko://ann@10.0.0.5:2222?ssh_identity_file=/keys/id%20ed"
                      f"&ssh_config={tmp_path}/ssh_config-rig")
    assert t.sudo and t.login_user == "ann" and t.display == "ann@10.0.0.5:2222"
    assert "StrictHostKeyChecking no" in Path(t.ssh_config).read_text()
    bare = V.ssh_target("box.lan", {}, tmp_path)
    assert bare.spec.startswith("paramiko://box.lan:22?ssh_config=") and not bare.sudo
    assert "StrictHostKeyChecking" not in Path(bare.ssh_config).read_text()
    assert V.ssh_target("@local", {}, tmp_path).spec == "local://"


def test_context_round_trip(tmp_path):
    ctx = V.CheckContext("rig", {"cpu_only": True, "x": {1, 2}}, ["base"], "/usr/bin/python3", "ann")
    back = V.CheckContext.load(ctx.dump(tmp_path / "c.json"))
    assert back.cpu_only and back.runs("base") and not back.runs("ssh") and back.python == "/usr/bin/python3"


# ------------------------------------------------------------------------------- the real runner

def test_plugin_records_every_outcome(tmp_path):
    """Our plugin inside a real pytest run over a throw-away test file."""
    (tmp_path / "test_demo.py").write_text(textwrap.dedent('''
        import pytest
        def test_ok(record_property):
            record_property("info", "fine")
        def test_fails():
            assert 1 == 2, "one is not two -> HINT: add one"
        def test_skips():
            pytest.skip("not here")
        @pytest.fixture
        def broken():
            raise RuntimeError("fixture broke")
        def test_errors(broken):
            pass
        def test_crashes():
            raise KeyError("boom")
        @pytest.mark.parametrize("n", [1, 2])
        def test_param(n):
            pass
    '''))
    out = tmp_path / "r.jsonl"
    env = dict(os.environ, DLRIG_VERIFY_RESULTS=str(out))
    subprocess.run([sys.executable, "-m", "pytest", str(tmp_path), "-p", "dlrig.verify.plugin", "-q",
                    "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "-c", os.devnull], env=env,
                   capture_output=True, text=True, timeout=120)
    rs = {r.check: r for r in V.parse_results("h", out.read_text().splitlines())}
    assert rs["demo::ok"].result == "passed" and rs["demo::ok"].info == "fine"
    assert (rs["demo::fails"].reason, rs["demo::fails"].hint) == ("one is not two", "add one")
    assert rs["demo::skips"].result == "skipped" and rs["demo::skips"].reason == "not here"
    assert rs["demo::errors"].result == "error" and "RuntimeError: fixture broke" in rs["demo::errors"].reason
    assert rs["demo::crashes"].result == "failed" and rs["demo::crashes"].reason == "KeyError: 'boom'"
    assert "demo::param[1]" in rs and "demo::param[2]" in rs


def test_verify_local_end_to_end(tmp_path):
    """The real CLI on this machine (testinfra local://): base checks only, JSON and JUnit."""
    junit = tmp_path / "out.xml"
    res = subprocess.run([sys.executable, "-m", "dlrig", "verify", "--local", "--roles", "base", "--json", "--junit", str(junit)],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    payload = json.loads(res.stdout)
    checks = {r["check"]: r for r in payload["results"]}
    assert set(checks) >= {"base::essential_packages_installed", "base::apt_waits_for_dpkg_lock",
                           "base::dpkg_audit_clean", "base::extra_ca_certificates_trusted"}
    assert all(c.startswith("base::") for c in checks)
    assert res.returncode == (0 if payload["ok"] else 1)
    assert checks["base::extra_ca_certificates_trusted"]["result"] == "skipped"
    ET.parse(junit)


def test_verify_local_cpu_only_torch_on_cpu(tmp_path):
    """cpu_only with this interpreter as --python: GPU checks skipped, torch checked on the CPU."""
    pytest.importorskip("torch")
    res = subprocess.run([sys.executable, "-m", "dlrig", "verify", "--local", "--roles", "gpu", "--data", "cpu_only=True",
                          "--python", sys.executable, "--json"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    checks = {r["check"]: r for r in json.loads(res.stdout)["results"]}
    assert checks["gpu::torch_imports"]["result"] == "passed"
    assert checks["gpu::nvidia_smi_lists_gpus"]["reason"] == "cpu_only=True: this rig has no GPU stack"


def test_verify_unreachable_host_one_row_exit_1(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inv = tmp_path / "inv.py"
    inv.write_text(f"hosts = [('ghost', {{'ssh_hostname': '127.0.0.1', 'ssh_port': {port}}})]\n")
    res = subprocess.run([sys.executable, "-m", "dlrig", "verify", str(inv)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 1
    assert res.stdout.splitlines()[2].split()[:3] == ["connect", "ghost", "ERROR"]
    assert "cannot connect to 127.0.0.1:" in res.stdout and "Traceback" not in res.stderr


def test_verify_usage_errors(tmp_path):
    res = subprocess.run([sys.executable, "-m", "dlrig", "verify"], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2 and "give an INVENTORY" in res.stderr
    res = subprocess.run([sys.executable, "-m", "dlrig", "verify", "--local", "--roles", "nope"], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2 and "unknown role(s) nope" in res.stderr
    res = subprocess.run([sys.executable, "-m", "dlrig", "verify", "--local", "--data", "cpu_onyl=True"], capture_output=True, text=True,
                         cwd=ROOT)
    assert res.returncode == 2 and "did you mean 'cpu_only'" in res.stderr
