"""Count lines, words and characters of standard input, like a tiny wc."""

import sys

lines = words = chars = 0
for line in sys.stdin:
    lines += 1
    words += len(line.split())
    chars += len(line)

print(f"{lines:8d}{words:8d}{chars:8d}")
