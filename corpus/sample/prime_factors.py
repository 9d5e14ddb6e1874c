"""Prime factorisation by trial division."""


def prime_factors(n: int) -> list[int]:
    """Prime factors of ``n`` in ascending order, with multiplicity.

    Numbers below 2 have no prime factors.

    >>> prime_factors(360)
    [2, 2, 2, 3, 3, 5]
    >>> prime_factors(97)
    [97]
    """
    factors = []
    divisor = 2
    while divisor * divisor <= n:
        while n % divisor == 0:
            factors.append(divisor)
            n //= divisor
        divisor += 1 if divisor == 2 else 2
    if n > 1:
        factors.append(n)
    return factors
