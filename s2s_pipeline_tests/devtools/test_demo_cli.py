"""`make demo` end to end (the `s2s-demo` command), on a small account: three nightly runs succeed.

Run as a separate process, as a user runs it (Dagster's in-process execution would otherwise leave
its logging configuration to the tests that follow).
"""

import os
import subprocess
import sys

import pytest


@pytest.mark.timeout(240)
def test_the_demo_runs_its_three_nightly_runs(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "S2S_DATABASE_URL")}
    proc = subprocess.run([sys.executable, "-m", "s2s_devtools.demo.cli", "--customers", "60",
                           "--dir", str(tmp_path / "demo")], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=230)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = proc.stdout
    assert "customer_traits (incremental" in out  # the later runs recompute only what changed
    run2 = out[out.index("Run 2"):out.index("Run 3")]
    assert "0 identify, 0 group calls sent" in run2 and "the sink received 0 messages" in run2  # nothing changed
    run3 = out[out.index("Run 3"):]
    assert "Subscription Upgraded" in run3 and "Payment Failed" in run3  # the simulated day reaches Segment
