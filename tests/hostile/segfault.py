# expect: crashed
import ctypes


def main_solution():
    return ctypes.string_at(0, 16)
