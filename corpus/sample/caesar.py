"""Caesar cipher that leaves punctuation and digits alone."""

import string

LOWER = string.ascii_lowercase
UPPER = string.ascii_uppercase


def caesar_shift(text: str, shift: int) -> str:
    """Shift every letter of ``text`` by ``shift`` places, wrapping around the alphabet.

    Case is preserved; other characters pass through unchanged.

    >>> caesar_shift("Hello, World!", 3)
    'Khoor, Zruog!'
    >>> caesar_shift("abc", -1)
    'zab'
    """
    out = []
    for ch in text:
        if ch in LOWER:
            out.append(LOWER[(LOWER.index(ch) + shift) % 26])
        elif ch in UPPER:
            out.append(UPPER[(UPPER.index(ch) + shift) % 26])
        else:
            out.append(ch)
    return "".join(out)
