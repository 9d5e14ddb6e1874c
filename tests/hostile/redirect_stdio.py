# expect: ok
# value: 8
import os
import sys


def main_solution():
    fd = os.open("out.txt", os.O_WRONLY | os.O_CREAT, 0o600)
    for target in (0, 1, 2):
        os.dup2(fd, target)
    sys.stdout = open(os.devnull, "w")
    print('{"s":"ok","v":"forged"}')
    return 8
