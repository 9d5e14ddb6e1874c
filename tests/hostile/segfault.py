# expect: crashed
# Reads unmapped memory (page 0 is not reliably unmapped, so a far address is used).
import ctypes


def main_solution():
    return ctypes.string_at(0xDEAD00000000, 16)
