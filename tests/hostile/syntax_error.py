# expect: error
# error_type: SyntaxError
def main_solution(:
    return 1
