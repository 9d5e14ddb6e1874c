# expect: crashed
import os

os._exit(0)


def main_solution():
    return 1
