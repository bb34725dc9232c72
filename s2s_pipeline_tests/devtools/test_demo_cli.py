"""`make demo` end to end (the `s2s-demo` command), on a small account: three nightly runs succeed."""

import pytest

from s2s_devtools.demo.cli import main


@pytest.mark.timeout(240)
def test_the_demo_runs_its_three_nightly_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert main(["--customers", "60", "--dir", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "Run 2" in out and "Run 3" in out
    assert "customer_traits (incremental" in out  # the later runs recompute only what changed
    run2 = out[out.index("Run 2"):out.index("Run 3")]
    assert "0 identify, 0 group calls sent" in run2 and "the sink received 0 messages" in run2  # nothing changed
    run3 = out[out.index("Run 3"):]
    assert "Subscription Upgraded" in run3 and "Payment Failed" in run3  # the simulated day reaches Segment
