"""Grouping words that are anagrams of each other."""

from collections import defaultdict


def group_anagrams(words: list[str]) -> list[list[str]]:
    """Group words by their sorted letters.

    Each group is sorted, and groups are ordered by their first word.

    >>> group_anagrams(["eat", "tea", "tan", "ate", "nat", "bat"])
    [['ate', 'eat', 'tea'], ['bat'], ['nat', 'tan']]
    """
    groups = defaultdict(list)
    for word in words:
        groups["".join(sorted(word))].append(word)
    return sorted(sorted(group) for group in groups.values())
