"""Conversion of integers to Roman numerals."""

NUMERALS = [
    (1000, "M"), (900, "CM"), (500, "D"), (400, "CD"),
    (100, "C"), (90, "XC"), (50, "L"), (40, "XL"),
    (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I"),
]


def to_roman(number: int) -> str:
    """Roman numeral for ``number`` (1..3999); an empty string outside that range.

    >>> to_roman(1994)
    'MCMXCIV'
    >>> to_roman(58)
    'LVIII'
    """
    if not 0 < number < 4000:
        return ""
    parts = []
    for value, symbol in NUMERALS:
        count, number = divmod(number, value)
        parts.append(symbol * count)
    return "".join(parts)
