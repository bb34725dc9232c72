"""``s2s-privacy export`` and ``forget``: what the store holds, the audit, the deletion path, unknown ids."""

import io
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest

from s2s_pipeline.privacy.cli import main
from s2s_pipeline.privacy.deletion import client_for
from s2s_pipeline.store.state_store import StateStore
from s2s_pipeline.stripe.normalize import to_rows
from s2s_pipeline_tests.privacy.helpers import findings
from s2s_pipeline_tests.privacy.public_api_standin import PublicApiStandIn

REPO = Path(__file__).resolve().parents[2]
CUSTOMER = {"id": "cus_dsr", "object": "customer", "email": "dsr.person@example.com", "name": "Dana Subject",
            "metadata": {"segment_user_id": "user_dsr_1", "company_name": "Subject Works"}, "created": 100,
            "currency": "usd"}
SECRETS = {"dsr.person@example.com", "Dana Subject", "user_dsr_1", "Subject Works"}


@pytest.fixture
def store_url(state_url):
    """A store that has mirrored, identified and sent a customer (one identify and one track in the audit)."""
    store = StateStore.from_url(state_url)
    store.mirror.apply(to_rows(CUSTOMER, 100))
    store.identities.record_resolved(pd.DataFrame([{
        "stripe_customer_id": "cus_dsr", "user_id": "user_dsr_1", "source": "metadata", "email_key": None,
        "profiles_checked_at": None, "changed": True}]), 100)
    store.pushed_traits.record([{"stripe_customer_id": "cus_dsr", "user_id": "user_dsr_1",
                                 "trait_email": "dsr.person@example.com", "trait_name": "Dana Subject",
                                 "trait_mrr": 42.0, "identify_message_id": "mid_1", "identify_pushed_at": 100}])
    store.delivery_audit.append([
        {"message_id": "mid_1", "call_type": "identify", "event": None, "stripe_customer_id": "cus_dsr",
         "trait_names": ["email", "mrr", "name"], "property_names": [], "integrations": None, "run_id": "run_a",
         "acknowledged_at": 101},
        {"message_id": "mid_2", "call_type": "track", "event": "Order Completed", "stripe_customer_id": "cus_dsr",
         "trait_names": [], "property_names": ["order_id", "revenue"], "integrations": {"All": False, "Mixpanel": True},
         "run_id": "run_b", "acknowledged_at": 102}])
    store.dispose()
    return state_url


def run(url, *argv, **env):
    out, err = io.StringIO(), io.StringIO()
    papi = env.pop("papi", None)
    environ = {"S2S_DATABASE_URL": url, **env}
    factory = (lambda s: client_for(s, sleep=lambda _: None)) if papi else None
    code = main(list(argv), out=out, err=err, environ=environ, client_factory=factory)
    return code, out.getvalue(), err.getvalue()


def test_export_prints_what_the_store_holds_and_the_calls_sent(store_url):
    code, out, err = run(store_url, "export", "cus_dsr")
    assert code == 0, err
    export = json.loads(out)
    assert export["customer"]["email"] == "dsr.person@example.com" and export["customer"]["raw_payload_kept"]
    assert export["segment_identity"]["user_id"] == "user_dsr_1"
    assert export["pushed_traits"]["trait_mrr"] == 42.0
    assert [(c["message_id"], c["call_type"], c["event"]) for c in export["calls_sent"]] == [
        ("mid_1", "identify", None), ("mid_2", "track", "Order Completed")]
    assert export["calls_sent"][1]["property_names"] == ["order_id", "revenue"]
    assert export["calls_sent"][1]["integrations"] == {"All": False, "Mixpanel": True}
    assert "raw" not in export["customer"]


def test_unknown_customer_exits_non_zero_with_a_clear_message(store_url):
    for command in ("export", "forget"):
        code, out, err = run(store_url, command, "cus_nobody")
        assert code == 2 and out == ""
        assert "unknown customer 'cus_nobody'" in err


def test_forget_files_the_regulation_then_purges(store_url):
    with PublicApiStandIn() as papi:
        papi.fail_next(500)
        code, out, err = run(store_url, "forget", "cus_dsr", papi=papi, SEGMENT_PUBLIC_API_TOKEN=papi.token,
                             SEGMENT_PUBLIC_API_HOST=papi.base_url)
        assert code == 0, err
        assert papi.subjects() == ["user_dsr_1"] and len(papi.regulations) == 1
    result = json.loads(out)
    assert result["customers_purged"] == 1 and result["regulation"]["state"] == "filed"
    store = StateStore.from_url(store_url)
    try:
        assert findings(store, SECRETS) == []
        assert store.suppressed_customer_ids() == {"cus_dsr"}  # Stripe still has it; nothing is sent about it
    finally:
        store.dispose()
    # The access request after the deletion: ids and names of what was sent, no personal values.
    code, out, _ = run(store_url, "export", "cus_dsr")
    assert code == 0 and not [s for s in SECRETS if s in out]
    export = json.loads(out)
    assert export["pushed_traits"] is None and export["segment_identity"] is None
    assert len(export["calls_sent"]) == 2 and export["regulation"]["regulate_id"]


def test_forget_without_a_token_purges_at_once(store_url):
    code, out, err = run(store_url, "forget", "cus_dsr")
    assert code == 0, err
    assert json.loads(out)["regulation"]["state"] == "not_regulated"


def test_forget_whose_filing_fails_exits_1_and_keeps_the_customer_out_of_segment(store_url):
    with PublicApiStandIn() as papi:
        papi.fail_next(503, times=20)
        code, _, err = run(store_url, "forget", "cus_dsr", papi=papi, SEGMENT_PUBLIC_API_TOKEN=papi.token,
                           SEGMENT_PUBLIC_API_HOST=papi.base_url)
    assert code == 1 and "not filed yet" in err and "nightly run files it" in err
    store = StateStore.from_url(store_url)
    try:
        assert store.suppressed_customer_ids() == {"cus_dsr"}
        assert store.regulations.record_for("cus_dsr")["state"] == "awaiting_filing"
    finally:
        store.dispose()


def test_the_console_script_is_declared_and_runs(tmp_path):
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["s2s-privacy"] == "s2s_pipeline.privacy.cli:main"
    proc = subprocess.run([sys.executable, "-m", "s2s_pipeline.privacy.cli", "export", "cus_nobody"],
                          capture_output=True, text=True, timeout=120,
                          env={"S2S_DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}", "PATH": "",
                               "PYTHONPATH": ":".join(sys.path)})
    assert proc.returncode == 2 and "unknown customer" in proc.stderr
