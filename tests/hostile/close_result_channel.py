# expect: crashed
# Closes every fd, the result pipe included: nothing can be reported, so no verdict but crashed.
import os


def main_solution():
    os.closerange(0, 1 << 16)
    return 1
