# expect: timeout
# An infinite loop inside one C call: no Python signal handler ever runs.
def main_solution():
    return sum(range(10**12))
