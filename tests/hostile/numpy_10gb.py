# expect: memory
import numpy


def main_solution():
    return float(numpy.ones((1 << 30) * 10 // 8).sum())
