# expect: error
# error_type: PermissionError
def main_solution():
    with open("/tmp/codeio-sandbox-escape-probe", "w") as fh:
        fh.write("escaped")
    return "written"
