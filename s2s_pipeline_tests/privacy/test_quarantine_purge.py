"""Forgetting a customer also drops the payloads the quarantine keeps of its objects."""

from s2s_pipeline.store.quarantine import QuarantineEntry

NOW = 1_790_000_000


def test_forget_drops_quarantined_payloads_of_the_customer_and_of_objects_naming_it(state_store):
    jane = {"id": "cus_q1", "object": "customer", "email": "jane@example.com", "name": "Jane Roe\x00"}
    her_charge = {"id": "ch_q1", "object": "charge", "customer": "cus_q1", "billing_details": {"name": "Jane Roe"}}
    other = {"id": "cus_q2", "object": "customer", "email": "other@example.com"}
    state_store.quarantine.set_aside([
        QuarantineEntry("customer", "cus_q1", "a NUL character the database refuses", jane, ("evt_1",)),
        QuarantineEntry("charge", "ch_q1", "a NUL character the database refuses", her_charge, ("evt_2",)),
        QuarantineEntry("customer", "cus_q2", "a NUL character the database refuses", other, ("evt_3",)),
    ], NOW)
    state_store.regulations.request([{"stripe_customer_id": "cus_q1", "reason": "request", "state": "not_regulated",
                                      "requested_at": NOW, "filing_attempts": 0}])
    out = state_store.forget_customer("cus_q1", NOW)
    assert out["quarantine_payloads_dropped"] == 2
    held = {e.object_id: e for e in state_store.quarantine.entries()}
    assert held["cus_q1"].payload is None and held["ch_q1"].payload is None
    assert "other@example.com" in held["cus_q2"].payload  # another customer's entry is untouched
    assert held["cus_q1"].reason  # the reason and ids stay, so the entry can still be retried
