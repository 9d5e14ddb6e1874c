"""Dice rolling for tabletop games."""

import random


def roll(dice: int, sides: int = 6) -> int:
    """Total of rolling ``dice`` dice with ``sides`` sides each."""
    return sum(random.randint(1, max(sides, 1)) for _ in range(max(dice, 0)))
