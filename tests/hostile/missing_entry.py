# expect: error
# error_type: NameError
def solution():
    return 1
