"""Checking that brackets in an expression are balanced."""

PAIRS = {")": "(", "]": "[", "}": "{"}


def is_balanced(expression: str) -> bool:
    """True when every bracket in ``expression`` is closed in the right order.

    Characters other than ()[]{} are ignored.

    >>> is_balanced("{[()()]}")
    True
    >>> is_balanced("([)]")
    False
    >>> is_balanced("(a+b)*[c]")
    True
    """
    stack = []
    for ch in expression:
        if ch in "([{":
            stack.append(ch)
        elif ch in PAIRS:
            if not stack or stack.pop() != PAIRS[ch]:
                return False
    return not stack
