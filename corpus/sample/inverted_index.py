"""Building an inverted index from tagged documents."""


def invert_index(tags: dict[str, list[str]]) -> dict[str, list[str]]:
    """Turn a document -> tags mapping into a tag -> documents mapping.

    Document lists are sorted and free of duplicates.

    >>> invert_index({"doc1": ["red", "blue"], "doc2": ["blue"], "doc3": []})
    {'blue': ['doc1', 'doc2'], 'red': ['doc1']}
    """
    index = {}
    for document, labels in tags.items():
        for label in labels:
            index.setdefault(label, set()).add(document)
    return {label: sorted(docs) for label, docs in sorted(index.items())}
