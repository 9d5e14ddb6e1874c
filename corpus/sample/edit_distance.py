"""Levenshtein distance between two words."""


def levenshtein(a: str, b: str) -> int:
    """Minimum number of single-character insertions, deletions or
    substitutions that turn ``a`` into ``b``.

    >>> levenshtein("kitten", "sitting")
    3
    >>> levenshtein("flaw", "lawn")
    2
    """
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost))
        previous = current
    return previous[-1]
