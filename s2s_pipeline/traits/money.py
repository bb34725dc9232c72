"""Currency exponents and minor -> major units: one exact rounding rule for every money figure.

Stripe amounts are integers in the currency's minor unit: cents for USD,
whole yen for JPY (a zero-decimal currency), fils (thousandths) for KWD
[Stripe docs, "Supported currencies" / "Zero-decimal" and "Three-decimal
currencies", https://docs.stripe.com/currencies]. Segment traits and track
properties carry major units rounded to 2 decimals.

The rule (contract "Identify traits"; docs/traits.md "Rounding"): an amount in
minor units is rounded **once**, half to even, to the display step of its
currency -- 0.01 of the major unit, or the minor unit when that is coarser
(1 yen) -- and only then scaled to major units. The rounding is integer
arithmetic on minor units (vectorised) or Decimal (one value); the final
``steps / 100`` is one correctly rounded float division, so the float is the
nearest double to the exact 2-decimal value (it prints as that value). Binary
float rounding (``np.round(575 / 1000, 2) == 0.57``) is never used: it rounds
ties by their binary representation, not by the rule.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Iterable

import numpy as np
import pandas as pd

#: Stripe's zero-decimal currencies: the amount is already in major units.
ZERO_DECIMAL_CURRENCIES: frozenset[str] = frozenset({
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga",
    "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf",
})

#: Stripe's three-decimal currencies: amounts are thousandths (and Stripe
#: requires the last digit of a charge to be 0, so charges lose nothing at 2 decimals).
THREE_DECIMAL_CURRENCIES: frozenset[str] = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})

#: Exponent of every other currency (and of a missing currency).
DEFAULT_EXPONENT = 2

#: Decimal places money is shown with (contract: "rounded to 2 decimals").
MONEY_DECIMALS = 2


def currency_exponent(currency: str | None) -> int:
    """Decimal places of the currency's minor unit: 0, 3 for the lists above, else 2."""
    code = "" if currency is None or currency != currency else str(currency).lower()
    if code in ZERO_DECIMAL_CURRENCIES:
        return 0
    if code in THREE_DECIMAL_CURRENCIES:
        return 3
    return DEFAULT_EXPONENT


def exponents(currencies: Iterable[str | None]) -> np.ndarray:
    """Exponent per currency code (int64 array); meant for a vocabulary, not for every row."""
    return np.fromiter((currency_exponent(c) for c in currencies), dtype=np.int64)


def display_step(exponent) -> np.ndarray:
    """Minor units in one shown step of money: 10 fils for KWD (0.01), 1 cent, 1 yen (int64)."""
    return np.power(10, np.maximum(np.asarray(exponent, dtype=np.int64) - MONEY_DECIMALS, 0))


def round_half_even_div(numerators, denominators) -> np.ndarray:
    """``numerators / denominators`` rounded half to even to an integer, exactly (int64 arrays).

    Denominators must be positive. Integer ``divmod`` on the magnitudes, so no
    float ever decides a tie; the sign is applied afterwards (ties are symmetric).
    """
    num = np.asarray(numerators, dtype=np.int64)
    den = np.asarray(denominators, dtype=np.int64)
    quotient, remainder = np.divmod(np.abs(num), den)
    twice = 2 * remainder
    up = (twice > den) | ((twice == den) & (quotient % 2 == 1))
    return np.sign(num) * (quotient + up)


def major_from_minor(minor, exponent) -> np.ndarray:
    """Integer minor units -> major units by the rule (float64 out), arrays aligned."""
    exponent = np.asarray(exponent, dtype=np.int64)
    steps = round_half_even_div(minor, display_step(exponent))
    return steps / np.power(10.0, np.minimum(exponent, MONEY_DECIMALS))


def major_from_exponents(amounts, exponent) -> np.ndarray:
    """Minor units (int, or float holding integers; NaN = missing) -> major units by the rule.

    A float that is not a whole number of minor units (never produced by the
    pipeline) is rounded by its exact value, one at a time.
    """
    values = np.asarray(amounts)
    exponent = np.broadcast_to(np.asarray(exponent, dtype=np.int64), values.shape)
    if values.dtype.kind in "iu":
        return major_from_minor(values, exponent)
    values = values.astype(np.float64)
    out = np.full(values.shape, np.nan)
    whole = np.isfinite(values) & (values == np.round(values)) & (np.abs(values) < 2.0 ** 62)
    out[whole] = major_from_minor(values[whole].astype(np.int64), exponent[whole])
    odd = np.flatnonzero(np.isfinite(values) & ~whole)
    for i in odd:
        out[i] = _major_decimal(Decimal(float(values[i])), int(exponent[i]))
    return out


def minor_to_major(amounts, currencies) -> np.ndarray:
    """Minor units -> major units by the rule, one currency per amount (missing amount -> NaN).

    Vectorized: the exponent is looked up once per distinct currency (a missing
    currency counts as a 2-decimal one).
    """
    values = pd.to_numeric(pd.Series(amounts, dtype=object), errors="coerce").to_numpy(dtype=np.float64,
                                                                                      na_value=np.nan)
    codes, uniques = pd.factorize(pd.Series(currencies, dtype=object))
    exp = np.append(exponents(uniques), DEFAULT_EXPONENT)  # code -1 (missing) -> the last entry
    return major_from_exponents(values, exp[codes])


def _major_decimal(minor: Decimal, exponent: int) -> float:
    places = Decimal(1).scaleb(-min(exponent, MONEY_DECIMALS))
    return float(minor.scaleb(-exponent).quantize(places, rounding=ROUND_HALF_EVEN))


def to_major(amount: int | Decimal | str | float | None, currency: str | None) -> float | None:
    """One amount in minor units (int, or an exact Decimal such as an unrounded MRR) -> major units.

    The same rule as the vectorised functions, so a track property and a trait
    about the same money always agree.
    """
    if amount is None or (isinstance(amount, float) and amount != amount):
        return None
    value = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    return _major_decimal(value, currency_exponent(currency))


def ratio_half_even(numerators, denominators, decimals: int) -> np.ndarray:
    """``numerators / denominators`` rounded half to even to ``decimals`` places, exactly (float64 out).

    NaN where the denominator is 0 (the ratio is undefined). Integer
    arithmetic: ``numerator * 10**decimals`` divided with :func:`round_half_even_div`.
    """
    num = np.asarray(numerators, dtype=np.int64)
    den = np.asarray(denominators, dtype=np.int64)
    defined = den != 0
    scaled = round_half_even_div(num * 10 ** decimals, np.where(defined, den, 1))
    return np.where(defined, scaled / 10.0 ** decimals, np.nan)
