# expect: ok
# value: 7
import os


def main_solution():
    for fd in (0, 1, 2):
        os.close(fd)
    print("nobody hears this")  # noqa: T201
    return 7
