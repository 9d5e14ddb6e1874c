# expect: error
# error_type: PermissionError
# The program's top level runs under the same rules as its calls.
with open("/etc/hostname") as fh:
    HOST = fh.read().strip()


def main_solution():
    return HOST
