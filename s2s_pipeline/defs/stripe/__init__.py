"""Stripe extraction: the daily-partitioned backfill, the change feed and their partitions."""
