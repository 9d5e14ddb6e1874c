"""Benchmark decontamination by shared word n-grams (13-grams by default, as is common practice).

A text is contaminated when any run of ``n`` consecutive words (lowercased, words = ``\\w+``)
also occurs in a benchmark text. Each n-gram is kept as a 64-bit blake2b hash in one sorted
array (8 bytes per distinct n-gram, no per-item Python objects), so large benchmark sets fit in
little memory and the same inputs give the same result in every process.
"""

from __future__ import annotations

import hashlib
import json
import re
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

_WORD = re.compile(r"\w+")
# Raw hashes are merged into the sorted set every this many, bounding build memory.
_MERGE_EVERY = 4_000_000
# At most this many bad lines are kept with their location; all are counted.
_BAD_LINES_KEPT = 100


def words(text: str) -> list[str]:
    """The words of ``text`` as the n-grams see them."""
    return _WORD.findall(text.lower())


def ngram_hashes(text: str, n: int) -> Iterator[int]:
    """64-bit hashes of every word n-gram of ``text`` (none when it has fewer than n words)."""
    tokens = words(text)
    for start in range(len(tokens) - n + 1):
        gram = " ".join(tokens[start : start + n]).encode("utf-8")
        yield int.from_bytes(hashlib.blake2b(gram, digest_size=8).digest(), "little")


class Decontaminator:
    """The n-gram set of a benchmark; answers whether a text shares an n-gram with it."""

    def __init__(self, hashes: array, n: int, summary: dict[str, Any]) -> None:
        self._hashes = hashes  # sorted, distinct, typecode 'Q'
        self.n = n
        self.summary = {**summary, "n": n, "ngrams": len(hashes)}

    @classmethod
    def from_files(
        cls, paths: Sequence[str | Path], field: str = "text", n: int = 13
    ) -> "Decontaminator":
        """Read benchmark JSONL files, one text in ``field`` per line.

        Blank lines are skipped; lines that are not JSON objects with a string ``field`` are
        skipped and recorded in ``summary['bad_lines']`` (count) and
        ``summary['bad_line_examples']`` (first 100, as "path:line: reason"). A missing file
        raises FileNotFoundError.
        """
        _check_n(n)
        builder = _Builder(n)
        bad: list[str] = []
        counts = {"lines": 0, "bad_lines": 0}
        for path in paths:
            for lineno, text, reason in _read_jsonl_field(Path(path), field):
                counts["lines"] += 1
                if reason is not None:
                    counts["bad_lines"] += 1
                    if len(bad) < _BAD_LINES_KEPT:
                        bad.append(f"{path}:{lineno}: {reason}")
                    continue
                builder.add(text)
        summary = {
            "files": [str(p) for p in paths],
            "field": field,
            **counts,
            "bad_line_examples": bad,
            "texts": builder.texts,
            "short_texts": builder.short_texts,
        }
        return cls(builder.finish(), n, summary)

    @classmethod
    def from_texts(cls, texts: Iterable[str], n: int = 13) -> "Decontaminator":
        """Build from benchmark texts already in memory."""
        _check_n(n)
        builder = _Builder(n)
        for text in texts:
            builder.add(text)
        summary = {"texts": builder.texts, "short_texts": builder.short_texts}
        return cls(builder.finish(), n, summary)

    def __len__(self) -> int:
        return len(self._hashes)

    def contaminated(self, text: str) -> bool:
        """True when ``text`` shares at least one word n-gram with the benchmark."""
        hashes, size = self._hashes, len(self._hashes)
        if not size:
            return False
        for h in ngram_hashes(text, self.n):
            i = bisect_left(hashes, h)
            if i < size and hashes[i] == h:
                return True
        return False

    def contaminated_any(self, texts: Iterable[str | None]) -> bool:
        """True when any of ``texts`` (None entries ignored) is contaminated.

        Texts are checked one by one, so no n-gram spans two of them.
        """
        return any(text is not None and self.contaminated(text) for text in texts)


class _Builder:
    """Collects n-gram hashes and keeps them as one sorted array of distinct values."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.texts = 0
        self.short_texts = 0
        self._sorted = pa.array([], type=pa.uint64())
        self._pending = array("Q")

    def add(self, text: str) -> None:
        self.texts += 1
        before = len(self._pending)
        self._pending.extend(ngram_hashes(text, self.n))
        if len(self._pending) == before:
            self.short_texts += 1
        if len(self._pending) >= _MERGE_EVERY:
            self._merge()

    def finish(self) -> array:
        self._merge()
        out = array("Q")
        if len(self._sorted):
            data = self._sorted.buffers()[1]
            offset = self._sorted.offset * 8
            out.frombytes(memoryview(data)[offset : offset + len(self._sorted) * 8])
        return out

    def _merge(self) -> None:
        if not self._pending:
            return
        pending = pa.Array.from_buffers(
            pa.uint64(), len(self._pending), [None, pa.py_buffer(self._pending.tobytes())]
        )
        merged = pc.unique(pa.concat_arrays([self._sorted, pending]))
        self._sorted = pc.take(merged, pc.sort_indices(merged))
        self._pending = array("Q")


def _read_jsonl_field(path: Path, field: str) -> Iterator[tuple[int, str, str | None]]:
    """(line number, text, None) per good line; (line number, '', reason) per bad line."""
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                yield lineno, "", "not UTF-8"
                continue
            except json.JSONDecodeError as exc:
                yield lineno, "", f"not JSON ({exc.msg})"
                continue
            if not isinstance(record, dict):
                yield lineno, "", "not a JSON object"
            elif field not in record:
                yield lineno, "", f"no field {field!r}"
            elif not isinstance(record[field], str):
                yield lineno, "", f"field {field!r} is not a string"
            else:
                yield lineno, record[field], None


def _check_n(n: int) -> None:
    if n < 1:
        raise ValueError(f"n-gram length must be at least 1, not {n}")
