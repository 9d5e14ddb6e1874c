"""Binary tree measurements."""

from dataclasses import dataclass
from typing import Optional


@dataclass
class TreeNode:
    value: int
    left: Optional["TreeNode"] = None
    right: Optional["TreeNode"] = None


def height(node: Optional[TreeNode]) -> int:
    """Number of nodes on the longest root-to-leaf path."""
    if node is None:
        return 0
    return 1 + max(height(node.left), height(node.right))


def is_balanced_tree(node: Optional[TreeNode]) -> bool:
    """True when no node's subtrees differ in height by more than one."""
    if node is None:
        return True
    if abs(height(node.left) - height(node.right)) > 1:
        return False
    return is_balanced_tree(node.left) and is_balanced_tree(node.right)
