# expect: size_limit
# Makes every container look small to a size check that trusts builtins.
import builtins


def main_solution():
    builtins.len = lambda obj: 0
    builtins.isinstance = lambda obj, kinds: False
    builtins.type = lambda obj: int
    return list(range(1000))
