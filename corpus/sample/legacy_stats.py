"""Old statistics helpers, never ported from Python 2."""


def mean(values):
    total = 0
    for v in values:
        total += v
    return float(total) / len(values)


def report(values):
    print "mean: %.2f" % mean(values)
