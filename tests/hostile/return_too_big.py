# expect: size_limit
def main_solution():
    return {"rows": list(range(500))}
