"""Longest common subsequence of two strings, reconstructed from the DP table."""


def longest_common_subsequence(first, second):
    """Return one longest common subsequence of the two strings.

    When several exist, the walk prefers dropping a character of ``first``.

    >>> longest_common_subsequence("ABCBDAB", "BDCABA")
    'BDAB'
    >>> longest_common_subsequence("abc", "xyz")
    ''
    """
    rows, cols = len(first), len(second)
    table = [[0] * (cols + 1) for _ in range(rows + 1)]
    for i in range(rows - 1, -1, -1):
        for j in range(cols - 1, -1, -1):
            if first[i] == second[j]:
                table[i][j] = table[i + 1][j + 1] + 1
            else:
                table[i][j] = max(table[i + 1][j], table[i][j + 1])
    out = []
    i = j = 0
    while i < rows and j < cols:
        if first[i] == second[j]:
            out.append(first[i])
            i += 1
            j += 1
        elif table[i + 1][j] >= table[i][j + 1]:
            i += 1
        else:
            j += 1
    return "".join(out)
