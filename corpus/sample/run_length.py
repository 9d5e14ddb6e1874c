"""Run-length encoding of strings such as 'aaabcc' -> '3a1b2c'."""


def run_length_encode(text):
    """Encode runs of equal characters as count followed by character.

    >>> run_length_encode("aaabccdddd")
    '3a1b2c4d'
    >>> run_length_encode("")
    ''
    """
    if not text:
        return ""
    pieces = []
    current, count = text[0], 1
    for ch in text[1:]:
        if ch == current:
            count += 1
        else:
            pieces.append(f"{count}{current}")
            current, count = ch, 1
    pieces.append(f"{count}{current}")
    return "".join(pieces)


def run_length_decode(encoded):
    """Inverse of run_length_encode for alphabetic payloads."""
    out = []
    number = ""
    for ch in encoded:
        if ch.isdigit():
            number += ch
        else:
            out.append(ch * int(number or "1"))
            number = ""
    return "".join(out)
