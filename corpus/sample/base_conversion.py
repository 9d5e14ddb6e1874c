"""Writing integers in an arbitrary base between 2 and 36."""

DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def to_base(number: int, base: int) -> str:
    """Representation of ``number`` in ``base`` (clamped to 2..36), with a '-' sign if negative.

    >>> to_base(255, 16)
    'ff'
    >>> to_base(-10, 2)
    '-1010'
    >>> to_base(0, 7)
    '0'
    """
    base = max(2, min(base, 36))
    if number == 0:
        return "0"
    sign = "-" if number < 0 else ""
    number = abs(number)
    digits = []
    while number:
        number, remainder = divmod(number, base)
        digits.append(DIGITS[remainder])
    return sign + "".join(reversed(digits))
