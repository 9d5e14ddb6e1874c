# expect: error
# error_type: PermissionError
# A world-readable host file: the function's value would depend on the machine.
def main_solution():
    with open("/etc/passwd") as fh:
        return len(fh.read().splitlines())
