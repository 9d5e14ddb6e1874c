"""Lexicographic next permutation, as in C++'s std::next_permutation."""


def next_permutation(digits: list[int]) -> list[int]:
    """The next greater arrangement of ``digits``, or the smallest one after the last.

    >>> next_permutation([1, 2, 3])
    [1, 3, 2]
    >>> next_permutation([3, 2, 1])
    [1, 2, 3]
    >>> next_permutation([1, 1, 5])
    [1, 5, 1]
    """
    result = list(digits)
    i = len(result) - 2
    while i >= 0 and result[i] >= result[i + 1]:
        i -= 1
    if i >= 0:
        j = len(result) - 1
        while result[j] <= result[i]:
            j -= 1
        result[i], result[j] = result[j], result[i]
    result[i + 1:] = reversed(result[i + 1:])
    return result
