"""Segment delivery: profiles, track events, payment history and the failed-payment alert path."""
