"""Loopback stand-ins for the outside world: Stripe, Segment's tracking API and the Profiles API.

Used by the tests, the benchmarks and ``make demo``; they listen on 127.0.0.1 only.
"""
