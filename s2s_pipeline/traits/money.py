"""Currency exponents and minor -> major unit conversion (vectorized).

Stripe amounts are integers in the currency's minor unit: cents for USD,
whole yen for JPY (a zero-decimal currency) [Stripe docs, "Supported
currencies"]. Segment traits carry major units rounded to 2 decimals.
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
#: requires the last digit to be 0, so 2 decimals of the major unit lose nothing).
THREE_DECIMAL_CURRENCIES: frozenset[str] = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})

#: Exponent of every other currency (and of a missing currency).
DEFAULT_EXPONENT = 2


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


def major_from_exponents(amounts: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """``amounts / 10**exponent`` rounded to 2 decimals; arrays aligned, float64 out (NaN stays NaN)."""
    scale = np.power(10.0, np.asarray(exponent, dtype=np.float64))
    return np.round(np.asarray(amounts, dtype=np.float64) / scale, 2)


def minor_to_major(amounts, currencies) -> np.ndarray:
    """Minor units -> major units rounded to 2 decimals, one currency per amount.

    Vectorized: the exponent is looked up once per distinct currency (a missing
    currency counts as a 2-decimal one). Missing amounts give NaN.
    """
    values = pd.to_numeric(pd.Series(amounts), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    codes, uniques = pd.factorize(pd.Series(currencies, dtype=object))
    exp = np.append(exponents(uniques), DEFAULT_EXPONENT)  # code -1 (missing) -> the last entry
    return major_from_exponents(values, exp[codes])


def to_major(amount: int | float | None, currency: str | None) -> float | None:
    """Minor units -> major units of the currency, rounded half-even to 2 decimals."""
    if amount is None:
        return None
    value = Decimal(str(amount)).scaleb(-currency_exponent(currency))
    return float(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))

