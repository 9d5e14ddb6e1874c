"""Summarise a CSV export of monthly sales."""

import csv


def summarize_sales(path: str) -> dict:
    """Total and best month from a CSV file with 'month' and 'amount' columns."""
    totals = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            totals[row["month"]] = totals.get(row["month"], 0.0) + float(row["amount"])
    best = max(totals, key=totals.get) if totals else None
    return {"total": round(sum(totals.values()), 2), "best_month": best}


if __name__ == "__main__":
    import sys

    print(summarize_sales(sys.argv[1]))
