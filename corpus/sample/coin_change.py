"""Minimum number of coins for an amount (unbounded coin supply)."""

INFINITY = float("inf")


def min_coins(coins: list[int], amount: int) -> int:
    """Fewest coins adding up to ``amount``, or -1 if it cannot be made.

    Coins with a non-positive denomination are ignored.

    >>> min_coins([1, 2, 5], 11)
    3
    >>> min_coins([2], 3)
    -1
    """
    if amount < 0:
        return -1
    usable = sorted({c for c in coins if c > 0})
    table = [0] + [INFINITY] * amount
    for total in range(1, amount + 1):
        for coin in usable:
            if coin > total:
                break
            if table[total - coin] + 1 < table[total]:
                table[total] = table[total - coin] + 1
    return -1 if table[amount] == INFINITY else int(table[amount])
