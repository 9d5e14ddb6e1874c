# expect: timeout
def main_solution():
    n = 0
    while True:
        n += 1
