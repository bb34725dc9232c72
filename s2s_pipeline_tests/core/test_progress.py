"""The throttled progress reporter: what a person watching a long run reads, and how often."""

from s2s_pipeline.core.progress import DEFAULT_EVERY_SECONDS, ProgressReporter


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def reporter(clock: FakeClock, verb: str = "listed", **kwargs) -> tuple[ProgressReporter, list[str]]:
    lines: list[str] = []
    return ProgressReporter(lines.append, verb, clock=clock, **kwargs), lines


def test_given_counts_within_the_interval_when_advanced_then_no_line_until_the_interval_passes():
    clock = FakeClock()
    progress, lines = reporter(clock, every_seconds=10)
    progress.advance("stripe_charges", 100)
    clock.now += 9.9
    progress.advance("stripe_charges", 100)
    assert lines == []
    clock.now += 0.1
    progress.advance("stripe_charges", 100)
    # 200 objects since the kind was first seen, 10 seconds ago.
    assert lines == ["stripe_charges: 300 listed, 20/s, left: unknown"]


def test_given_a_known_share_done_when_reported_then_the_line_estimates_objects_and_time_left():
    clock = FakeClock()
    progress, lines = reporter(clock, every_seconds=10)
    progress.advance("stripe_charges", 400, fraction_done=0.1)
    clock.now += 20
    # 2,000 more in 20 s (100/s); a quarter of the range covered: 3 x 2,400 = 7,200 left, 72 s at 100/s.
    progress.advance("stripe_charges", 2000, fraction_done=0.25)
    assert lines == ["stripe_charges: 2,400 listed, 100/s, about 7,200 left (~1m 12s)"]


def test_given_several_kinds_when_reported_then_each_kind_is_throttled_on_its_own():
    clock = FakeClock()
    progress, lines = reporter(clock, every_seconds=10)
    progress.advance("stripe_charges", 100)
    clock.now += 5
    progress.advance("stripe_invoices", 50)
    clock.now += 5
    progress.advance("stripe_charges", 100)  # charges due (10 s), invoices not (5 s)
    progress.advance("stripe_invoices", 50)
    assert [line.split(":")[0] for line in lines] == ["stripe_charges"]
    clock.now += 5
    progress.advance("stripe_invoices", 1)
    assert [line.split(":")[0] for line in lines] == ["stripe_charges", "stripe_invoices"]
    clock.now += 5
    progress.advance("stripe_charges", 1)
    assert [line.split(":")[0] for line in lines] == ["stripe_charges", "stripe_invoices", "stripe_charges"]


def test_given_a_total_when_reported_then_the_line_reads_n_of_total():
    clock = FakeClock()
    progress, lines = reporter(clock, "acknowledged")
    progress.update("identify", 0, total=10_000)
    clock.now += DEFAULT_EVERY_SECONDS
    progress.update("identify", 4_000, total=10_000)
    progress.finish()
    assert lines == ["identify: 4,000 of 10,000 acknowledged", "identify: 4,000 of 10,000 acknowledged, done"]


def test_when_finished_then_every_kind_gets_a_final_line_timed_to_its_last_count():
    clock = FakeClock()
    progress, lines = reporter(clock, every_seconds=100)
    progress.advance("stripe_customers", 30)
    progress.advance("stripe_prices", 3)
    clock.now += 65
    progress.advance("stripe_customers", 7)
    clock.now += 30
    progress.finish()
    assert lines == ["stripe_customers: 37 listed in 1m 05s, done", "stripe_prices: 3 listed in 0s, done"]


def test_without_a_sink_nothing_is_reported_and_nothing_fails():
    progress = ProgressReporter(None, "listed")
    progress.advance("stripe_charges", 100, fraction_done=0.5)
    progress.update("identify", 1, total=2)
    progress.finish()


def test_a_slow_rate_keeps_a_decimal_and_long_estimates_read_in_hours():
    clock = FakeClock()
    progress, lines = reporter(clock, every_seconds=10)
    progress.advance("stripe_disputes", 1, fraction_done=0.0001)
    clock.now += 20
    progress.advance("stripe_disputes", 50, fraction_done=0.001)
    # 50 in 20 s = 2.5/s; 51 x 999 = 50,949 left, 20,380 s = 5 h 39 m.
    assert lines == ["stripe_disputes: 51 listed, 2.5/s, about 50,949 left (~5h 39m)"]


def test_a_count_recorded_without_a_line_shows_only_in_the_final_line():
    clock = FakeClock()
    progress, lines = reporter(clock, "acknowledged")
    progress.update("group", 0, total=5)
    clock.now += DEFAULT_EVERY_SECONDS
    progress.update("group", 5, total=5, emit=False)
    progress.finish()
    assert lines == ["group: 5 of 5 acknowledged, done"]
