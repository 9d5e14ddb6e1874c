"""Towers of Hanoi, counting the moves the recursive solution makes."""


def hanoi_moves(disks: int, source: str = "A", target: str = "C", spare: str = "B") -> int:
    """Number of moves the classic recursive algorithm makes for ``disks`` disks.

    The peg names only matter for the (omitted) move log; non-positive disk
    counts need no moves.

    >>> hanoi_moves(3)
    7
    >>> hanoi_moves(5)
    31
    """
    if disks <= 0:
        return 0
    moves = hanoi_moves(disks - 1, source, spare, target)
    moves += 1
    moves += hanoi_moves(disks - 1, spare, target, source)
    return moves
