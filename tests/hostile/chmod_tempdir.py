# expect: ok
# value: done
# Leaves a tree it made unremovable by mode bits; the sandbox still removes it.
import os


def main_solution():
    os.makedirs("a/b/c")
    with open("a/b/c/f", "w") as fh:
        fh.write("x")
    for path in ("a/b/c", "a/b", "a"):
        os.chmod(path, 0)
    os.chmod(".", 0o500)
    return "done"
