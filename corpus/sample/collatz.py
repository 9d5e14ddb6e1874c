"""The Collatz (3n + 1) sequence."""


def collatz_steps(n: int) -> int:
    """Number of steps for ``n`` to reach 1 under the 3n + 1 map.

    Non-positive numbers never get there; for them the answer is -1.

    >>> collatz_steps(6)
    8
    >>> collatz_steps(27)
    111
    """
    if n < 1:
        return -1
    steps = 0
    while n != 1:
        if n % 2 == 0:
            n //= 2
        else:
            n = 3 * n + 1
        steps += 1
    return steps
