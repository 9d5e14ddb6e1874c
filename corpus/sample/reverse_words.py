"""Small sentence manipulations."""


def reverse_words(sentence: str, capitalize: bool = False) -> str:
    """Reverse the order of the words in a sentence, collapsing extra spaces.

    :param sentence: words separated by whitespace.
    :param capitalize: upper-case the first letter of the result.
    :returns: the words in reverse order joined by single spaces.

    >>> reverse_words("the sky is  blue")
    'blue is sky the'
    >>> reverse_words("hello world", capitalize=True)
    'World hello'
    """
    words = sentence.split()
    result = " ".join(reversed(words))
    if capitalize and result:
        result = result[0].upper() + result[1:]
    return result
