"""Word counts for short texts."""

import re
from collections import Counter
from typing import List, Tuple

WORD = re.compile(r"[a-z']+")


def top_words(text: str, k: int) -> List[Tuple[str, int]]:
    """The ``k`` most frequent words of ``text`` with their counts.

    Words are lower-cased; ties are broken alphabetically.

    Args:
        text: free text.
        k: how many words to report; non-positive means none.

    Returns:
        (word, count) pairs, most frequent first.

    >>> top_words("the cat and the hat and the bat", 2)
    [('the', 3), ('and', 2)]
    """
    if k <= 0:
        return []
    counts = Counter(WORD.findall(text.lower()))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return ranked[:k]
