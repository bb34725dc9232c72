"""The one rounding rule of money (contract "Identify traits": major units, 2 decimals, half-even, exact)."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import numpy as np
import pytest

from s2s_pipeline.traits.money import (
    exponents,
    major_from_exponents,
    major_from_minor,
    minor_to_major,
    ratio_half_even,
    round_half_even_div,
    to_major,
)


def exact_major(minor: int, exponent: int) -> float:
    """The rule spelled out with Decimal: minor / 10**exponent, half-even to 0.01 (or to 1 for JPY)."""
    places = Decimal(1).scaleb(-min(exponent, 2))
    return float(Decimal(minor).scaleb(-exponent).quantize(places, rounding=ROUND_HALF_EVEN))


class TestMajorUnits:
    @pytest.mark.parametrize("minor, currency, major", [
        (5000, "usd", 50.0),      # 5000 / 100
        (3000, "jpy", 3000.0),    # zero-decimal: 3000 / 1
        (5120, "kwd", 5.12),      # 5120 / 1000 = 5.120
        (575, "kwd", 0.58),       # 0.575: the tie goes to the even 0.58 (binary float said 0.57)
        (565, "kwd", 0.56),       # 0.565: the tie goes to the even 0.56
        (1005, "kwd", 1.0),       # 1.005 -> 1.00 (even)
        (1015, "kwd", 1.02),      # 1.015 -> 1.02 (even)
        (574, "kwd", 0.57),       # 0.574 -> 0.57, below the half
        (-575, "kwd", -0.58),     # symmetric for money going out
        (1, "usd", 0.01),
        (0, "kwd", 0.0),
    ])
    def test_hand_computed(self, minor, currency, major):
        assert to_major(minor, currency) == major
        assert minor_to_major([minor], [currency]).tolist() == [major]

    def test_kwd_6900_a_year_is_0_58_a_month_in_both_paths(self):
        # 6.900 KWD a year = 6900 fils / 12 = 575 fils a month = 0.575 KWD -> 0.58 (half-even, 7 is odd)
        assert major_from_exponents(np.array([575]), np.array([3])).tolist() == [0.58]
        assert to_major(575, "kwd") == 0.58

    def test_vectorised_and_scalar_paths_agree_everywhere(self):
        rng = np.random.default_rng(7)
        minor = np.concatenate([rng.integers(-10**9, 10**9, 20_000), np.arange(-2000, 2000)])
        for currency, exponent in (("kwd", 3), ("usd", 2), ("jpy", 0)):
            vector = major_from_minor(minor, np.full(len(minor), exponent))
            assert vector.tolist() == [exact_major(int(v), exponent) for v in minor], currency
            assert vector.tolist() == [to_major(int(v), currency) for v in minor], currency

    def test_missing_amounts_stay_missing(self):
        out = minor_to_major([5000, None, np.nan], ["usd", "usd", "kwd"])
        assert out[0] == 50.0 and np.isnan(out[1]) and np.isnan(out[2])
        assert to_major(None, "usd") is None

    def test_decimal_minor_amounts_round_once(self):
        # an exact MRR of 574.999 fils rounds straight to 0.57 KWD, never 575 -> 0.58
        assert to_major(Decimal("574.999"), "kwd") == 0.57
        assert to_major(Decimal("150.5"), "usd") == 1.50  # 1.505 -> 1.50 (even)

    def test_exponents_of_a_vocabulary(self):
        assert exponents(["usd", "jpy", "kwd", None]).tolist() == [2, 0, 3, 2]


class TestExactDivision:
    def test_half_even_integer_division(self):
        # 5/2 = 2.5 -> 2; 7/2 = 3.5 -> 4; -5/2 = -2.5 -> -2; 10/4 = 2.5 -> 2; 11/4 = 2.75 -> 3
        assert round_half_even_div(np.array([5, 7, -5, 10, 11, 0]), np.array([2, 2, 2, 4, 4, 3])).tolist() == \
            [2, 4, -2, 2, 3, 0]

    def test_refund_rate_ties_on_a_200_dollar_capture(self):
        # captured 20000 cents; every odd refund r gives r/20000 = x.xxxx5 exactly: 10,000 ties.
        refunded = np.arange(1, 20000, 2)
        captured = np.full(len(refunded), 20000)
        expected = [float((Decimal(int(r)) / Decimal(20000)).quantize(Decimal("0.0001"), ROUND_HALF_EVEN))
                    for r in refunded]
        assert ratio_half_even(refunded, captured, 4).tolist() == expected

    def test_ratio_hand_computed_and_undefined_without_denominator(self):
        # 1/3 = 0.33333 -> 0.3333; 2/3 = 0.66666 -> 0.6667; 1/8 = 0.125 -> 0.125; 0/5 = 0; x/0 undefined
        out = ratio_half_even(np.array([1, 2, 1, 0, 4]), np.array([3, 3, 8, 5, 0]), 4)
        assert out[:4].tolist() == [0.3333, 0.6667, 0.125, 0.0]
        assert np.isnan(out[4])
