# expect: ok
# value: 1024
# limits: cpu_seconds=5.0
# A gigabyte on stdout and stderr goes nowhere (Limits.stdio_bytes = 0 discards it).
import os


def main_solution():
    chunk = b"x" * (1 << 20)
    for i in range(1024):
        os.write(1 + i % 2, chunk)
    return 1024
