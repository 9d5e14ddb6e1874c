# expect: not_json
def main_solution():
    return {1, 2, 3}
