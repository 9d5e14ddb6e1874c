# expect: memory
def main_solution():
    return len(bytearray(10 * 1024**3))
