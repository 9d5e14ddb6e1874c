# expect: error
# error_type: SystemExit
import sys


def main_solution():
    sys.exit(0)
