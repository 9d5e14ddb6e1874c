"""Square roots by Newton's method, the way it was done before math.sqrt."""


def newton_sqrt(value: float, tolerance: float = 1e-9) -> float:
    """Approximate the square root of a non-negative ``value``.

    Iterates x <- (x + value / x) / 2 until successive guesses differ by less
    than ``tolerance`` or 60 iterations have passed. The answer is rounded to
    6 decimals; negative input gives -1.0.

    >>> newton_sqrt(2.0)
    1.414214
    >>> newton_sqrt(0.25)
    0.5
    """
    if value < 0:
        return -1.0
    if value == 0:
        return 0.0
    guess = value if value > 1 else 1.0
    for _ in range(60):
        better = (guess + value / guess) / 2
        if abs(better - guess) < tolerance:
            guess = better
            break
        guess = better
    return round(guess, 6)
