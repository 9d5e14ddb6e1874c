# expect: timeout
# The program's top level never finishes: every call gets the verdict.
while True:
    pass


def main_solution():
    return 1
