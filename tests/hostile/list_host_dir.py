# expect: error
# error_type: PermissionError
import os


def main_solution():
    return len(os.listdir("/etc"))
