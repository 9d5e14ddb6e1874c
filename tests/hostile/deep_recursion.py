# expect: error
# error_type: RecursionError
def descend(n):
    return descend(n + 1) + 1


def main_solution():
    return descend(0)
