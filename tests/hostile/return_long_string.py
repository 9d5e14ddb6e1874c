# expect: size_limit
def main_solution():
    return "y" * 150
