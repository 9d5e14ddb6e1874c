# expect: crashed
# A clean exit code without a result message is not success.
import os


def main_solution():
    os._exit(0)
