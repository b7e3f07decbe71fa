"""What happens to a text before sentencepiece sees it (transformers 4.x's slow DeBERTa-v2 tokenizer).

1. :func:`segments` cuts the text at the added tokens (``[CLS] [SEP] [PAD] [UNK] [MASK]`` and any
   others, longest match first, see :func:`added_token_pattern`). Each added token becomes its
   id; every chunk between them is encoded on its own, so the chunk after an added token starts
   a new ``▁`` word.
2. Per chunk, ``do_lower_case`` lower-cases character by character (:func:`lower_case`: no
   final-sigma rule), and ``split_by_punct`` cuts it into runs of non-punctuation and single
   punctuation characters (:func:`split_on_punctuation`), each encoded on its own.

Every string handed to sentencepiece keeps the position of its characters in the text, so that
character offsets can be mapped back (see ``offsets.py``).
"""

import re
import unicodedata

__all__ = ["added_token_pattern", "is_punctuation", "lower_case", "segments", "split_on_punctuation"]


def is_punctuation(char):
    """True if ``char`` is punctuation to transformers' ``_is_punctuation``: an ASCII character
    that is neither a letter, a digit, whitespace nor a control character, or any character of
    Unicode category P*.

    >>> [is_punctuation(char) for char in "a,$ ¿·"]
    [False, True, True, False, True, True]
    """
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def split_on_punctuation(text):
    """Cut ``text`` into maximal runs of non-punctuation and single punctuation characters.

    Returns ``[(start, run)]`` in text order, ``run == text[start:start + len(run)]``; the runs
    concatenate to ``text`` (an empty text gives ``[]``).

    >>> split_on_punctuation("don't stop!")
    [(0, 'don'), (3, "'"), (4, 't stop'), (10, '!')]
    """
    runs, start = [], 0
    for i, char in enumerate(text):
        if is_punctuation(char):
            if start < i:
                runs.append((start, text[start:i]))
            runs.append((i, char))
            start = i + 1
    if start < len(text):
        runs.append((start, text[start:]))
    return runs


def lower_case(text):
    r"""Lower-case ``text`` character by character, as transformers' ``do_lower_case`` does.

    Returns ``(lowered, index_map)``. ``index_map`` is None when ``lowered`` has the length of
    ``text`` (then ``lowered[k]`` came from ``text[k]``); otherwise ``index_map[k]`` is the
    position in ``text`` of the character that gave ``lowered[k]``, plus one final entry
    ``len(text)``. Only characters such as ``"İ"``, whose lower case is two characters, change
    the length. Unlike ``str.lower``, a word-final ``"Σ"`` becomes ``"σ"``, not ``"ς"``.

    >>> lower_case("ΣΑΣ")
    ('σασ', None)
    >>> print(ascii(lower_case("İx")))
    ('i\u0307x', [0, 0, 1, 2])
    """
    chars = [char.lower() for char in text]
    lowered = "".join(chars)
    if len(lowered) == len(text):
        return lowered, None
    index_map = [i for i, low in enumerate(chars) for _ in low] + [len(text)]
    return lowered, index_map


def added_token_pattern(tokens):
    """A compiled regular expression matching any of the strings ``tokens``, longest first (so
    ``"[MASK]"`` wins over a token ``"[MASK"``); None when ``tokens`` is empty.

    >>> added_token_pattern(["[MASK", "[MASK]"]).findall("a[MASK]b[MASK")
    ['[MASK]', '[MASK']
    """
    by_length = sorted(tokens, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, by_length))) if by_length else None


def segments(text, pattern, token_ids, do_lower_case=False, split_by_punct=False):
    r"""Cut ``text`` into the strings sentencepiece encodes and the added tokens found in it.

    Args:
        text: the str to cut.
        pattern: :func:`added_token_pattern` of the added tokens, or None for none.
        token_ids: ``{token: id}`` for every token ``pattern`` matches.
        do_lower_case: lower-case the strings between added tokens (:func:`lower_case`).
        split_by_punct: cut those strings further with :func:`split_on_punctuation`.

    Returns:
        ``[(start, string, token_id, index_map)]`` in text order. ``token_id`` is the added
        token's id, or None for a string sentencepiece encodes. ``string[k]`` came from
        ``text[start + k]``, or from ``text[start + index_map[k]]`` when lower-casing changed
        the length (``index_map`` as in :func:`lower_case`, else None). Empty strings between
        added tokens are left out; whitespace is kept (sentencepiece strips it).

    >>> pattern = added_token_pattern(["[MASK]"])
    >>> segments("Hi [MASK]!", pattern, {"[MASK]": 5})
    [(0, 'Hi ', None, None), (3, '[MASK]', 5, None), (9, '!', None, None)]
    >>> for segment in segments("Hİ, you", None, {}, do_lower_case=True, split_by_punct=True):
    ...     print(ascii(segment))
    (0, 'hi\u0307', None, [0, 1, 1, 2])
    (2, ',', None, [0, 1])
    (3, ' you', None, [0, 1, 2, 3, 4])
    """
    found, position = [], 0
    if pattern is not None:
        for match in pattern.finditer(text):
            found += _chunk_segments(text, position, match.start(), do_lower_case, split_by_punct)
            found.append((match.start(), match.group(), token_ids[match.group()], None))
            position = match.end()
    found += _chunk_segments(text, position, len(text), do_lower_case, split_by_punct)
    return found


def _chunk_segments(text, start, stop, do_lower_case, split_by_punct):
    """The :func:`segments` of the chunk ``text[start:stop]``, which holds no added token:
    ``[]`` if it is empty, else the chunk (lower-cased if asked) or its punctuation runs."""
    if start >= stop:
        return []
    chunk = text[start:stop]
    index_map = None
    if do_lower_case:
        chunk, index_map = lower_case(chunk)
    if not split_by_punct:
        return [(start, chunk, None, index_map)]
    if index_map is None:
        return [(start + local, run, None, None) for local, run in split_on_punctuation(chunk)]
    return [(start + index_map[local], run, None,
             [index_map[local + k] - index_map[local] for k in range(len(run) + 1)])
            for local, run in split_on_punctuation(chunk)]
