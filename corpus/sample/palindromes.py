"""Palindrome utilities."""


def _expand(s, left, right):
    while left >= 0 and right < len(s) and s[left] == s[right]:
        left -= 1
        right += 1
    return left + 1, right


def longest_palindrome(s: str) -> str:
    """Longest palindromic substring of ``s`` (the first one if several tie).

    Uses expansion around each centre, O(n^2) time and O(1) space.

    >>> longest_palindrome("babad")
    'bab'
    >>> longest_palindrome("cbbd")
    'bb'
    """
    best_start, best_end = 0, 0
    for centre in range(len(s)):
        for left, right in (_expand(s, centre, centre), _expand(s, centre, centre + 1)):
            if right - left > best_end - best_start:
                best_start, best_end = left, right
    return s[best_start:best_end]
