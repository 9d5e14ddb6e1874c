"""Least common multiple of a list of integers."""

from functools import reduce


def gcd(a: int, b: int) -> int:
    """Greatest common divisor by Euclid's algorithm (always non-negative)."""
    a, b = abs(a), abs(b)
    while b:
        a, b = b, a % b
    return a


def lcm_of_list(numbers: list[int]) -> int:
    """Least common multiple of all numbers; zero if any number is zero, 1 for no numbers.

    >>> lcm_of_list([4, 6, 10])
    60
    >>> lcm_of_list([])
    1
    """
    def lcm(a, b):
        if a == 0 or b == 0:
            return 0
        return abs(a * b) // gcd(a, b)

    return reduce(lcm, numbers, 1)
