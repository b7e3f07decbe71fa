"""Character offsets of sentencepiece pieces, in transformers' fast tokenizers' convention.

sentencepiece (Kudo & Richardson, EMNLP 2018) normalises a string before it segments it, and its
normaliser reports where each normalised character starts in the original string.
:class:`OffsetAligner` turns that alignment into one ``(begin, end)`` span of original
characters per piece, as transformers' fast tokenizers give them; :func:`shift_spans` moves the
spans of one pre-tokenized string (``pretokenize.py``) into the text it was cut from.
"""

import re

import sentencepiece

__all__ = ["SPIECE_UNDERLINE", "OffsetAligner", "check_offsets_support", "shift_spans"]

SPIECE_UNDERLINE = "\u2581"
# offsets need the normaliser's alignment, normalize(..., with_offsets=True): sentencepiece >= 0.2.0
_OFFSETS_MIN_VERSION = (0, 2, 0)


def check_offsets_support():
    """Return None if the installed sentencepiece can align offsets (>= 0.2.0); raise
    RuntimeError naming the installed version otherwise."""
    version = tuple(int(part) for part in re.findall(r"\d+", sentencepiece.__version__)[:3])
    if version < _OFFSETS_MIN_VERSION:
        raise RuntimeError(f"return_offsets_mapping needs sentencepiece >= 0.2.0; found {sentencepiece.__version__}")


def shift_spans(spans, start, index_map):
    """Move spans in a pre-tokenized string into the text the string was cut from.

    Args:
        spans: ``[(begin, end)]`` in the string.
        start: position in the text of the string's first character.
        index_map: None if ``string[k]`` came from ``text[start + k]``; else the map of
            ``pretokenize.lower_case`` (``string[k]`` came from ``text[start + index_map[k]]``).

    Returns:
        The spans in the text, a new list (or ``spans`` itself when ``start`` is 0 and there is
        no ``index_map``). A span ends after the text character its last string character came
        from, so the two characters of ``"İ".lower()`` map back to the one ``"İ"``:

    >>> shift_spans([(0, 2), (2, 3)], 10, None)
    [(10, 12), (12, 13)]
    >>> shift_spans([(0, 1), (1, 2), (2, 3)], 10, [0, 0, 1, 2])
    [(10, 11), (10, 11), (11, 12)]
    """
    if index_map is not None:
        return [(start + index_map[b], start + (index_map[e - 1] + 1 if e > b else index_map[b])) for b, e in spans]
    if start:
        return [(start + b, start + e) for b, e in spans]
    return spans


class OffsetAligner:
    """Character spans of the pieces of strings encoded by one SentencePieceProcessor.

    Built once per processor: it holds, per piece id, how many normalised characters the piece
    covers, and caches which characters the normaliser reads as whitespace.

    >>> import sentencepiece
    >>> from pydeberta.hub import resolve_model_folder
    >>> sp = sentencepiece.SentencePieceProcessor(
    ...     model_file=str(resolve_model_folder("pydeberta/tiny") / "spm.model"))
    >>> text = "The  naïve ﬁsh"
    >>> ids, spans = OffsetAligner(sp).spans(sp.encode(text), text)
    >>> for piece, (begin, end) in zip(sp.id_to_piece(ids), spans):
    ...     print(f"{piece:7} {begin:2} {end:2}  {text[begin:end]!r}")
    ▁The     0  3  'The'
    ▁        4  5  ' '
    na       5  7  'na'
    <0xC3>   7  8  'ï'
    <0xAF>   7  8  'ï'
    ve       8 10  've'
    ▁fish   10 14  ' ﬁsh'

    The space before ``naïve`` is the second of its run, both bytes of ``ï`` point at ``ï``, and
    ``▁fish`` spans the space it stands for and the ligature ``ﬁ`` it was normalised from.
    """

    def __init__(self, processor):
        """Read the piece table of ``processor`` (a loaded SentencePieceProcessor)."""
        self._sp = processor
        pieces = processor.id_to_piece(list(range(processor.get_piece_size())))
        # per id: normalised characters the piece covers; a byte-fallback piece covers its
        # character if it holds the UTF-8 lead byte, nothing otherwise
        self._piece_chars = [len(piece) for piece in pieces]
        for byte in range(256):
            index = processor.piece_to_id(f"<0x{byte:02X}>")
            if processor.is_byte(index):
                self._piece_chars[index] = 0 if 0x80 <= byte < 0xC0 else 1
        self._space_cache = {}  # char -> is it whitespace to the normaliser

    def is_space(self, char):
        """True if sentencepiece's normaliser reads the character ``char`` as whitespace (space,
        tab, NBSP, ZWSP, ideographic space, ...): alone it normalises to nothing, and between
        two letters it separates them like a space. Cached per character.

        >>> import sentencepiece
        >>> from pydeberta.hub import resolve_model_folder
        >>> aligner = OffsetAligner(sentencepiece.SentencePieceProcessor(
        ...     model_file=str(resolve_model_folder("pydeberta/tiny") / "spm.model")))
        >>> [aligner.is_space(char) for char in " \\t\\u00a0\\u200bx\\u200d"]
        [True, True, True, True, False, False]
        """
        result = self._space_cache.get(char)
        if result is None:
            normalize = self._sp.normalize
            result = self._space_cache[char] = normalize(char) == "" and normalize("a" + char + "a") == normalize("a a")
        return result

    def spans(self, ids, string):
        """Character spans in ``string`` of its pieces ``ids`` (what the processor encoded it to),
        in transformers' fast tokenizers' convention: a piece spans the original characters of
        its normalised text.

        The normaliser says where each normalised character starts in ``string``; pieces cover
        the normalised text in order (a byte-fallback piece covers its character if it holds the
        UTF-8 lead byte, nothing otherwise). Then:

        * a piece ending inside an expanded character (``㍿`` -> ``株式会社``, ``ﬁ`` -> ``fi``)
          reaches to that character's end, so every piece of ``㍿`` points at ``㍿``; the
          dummy-prefix ``▁`` alone points at the first character;
        * a ``▁`` between words stands for one whitespace character, the last of the run before
          the word (CR LF counts as one); whitespace at the start of a string is dropped
          ("  hello" -> ``▁hello`` (2, 7), also after an added token);
        * characters NFKC composed (``k`` + U+0323 -> ``ḳ``) or deleted (control characters)
          belong to the normalised character before them.

        Returns ``(ids, spans)``: ``spans`` is ``[(begin, end)]``, one per id. The ids are those
        given, re-read from the pieces when an unknown piece (whose length the id does not tell)
        is among them.
        """
        sp = self._sp
        unknown = sp.unk_id()
        if unknown in ids:  # its length varies: read the pieces, whose unknown ones are the raw text
            pieces = sp.encode(string, out_type=str)
            ids = [sp.piece_to_id(piece) for piece in pieces]
            lengths = [len(piece) if token_id == unknown else self._piece_chars[token_id]
                       for token_id, piece in zip(ids, pieces)]
        else:
            lengths = [self._piece_chars[token_id] for token_id in ids]
        normalized, origin = sp.normalize(string, with_offsets=True)
        size = len(normalized)
        spans, position = [], 0
        for length in lengths:
            if length == 0:  # a UTF-8 continuation byte: same character as the byte before
                spans.append(spans[-1])
                continue
            first, position = position, position + length
            begin, end = origin[first], origin[position]
            if end == origin[position - 1]:  # ends inside an expanded character: take all of it
                j = position
                while j < size and origin[j + 1] == end:
                    j += 1
                end = origin[j + 1] if j < size else end
            if normalized[first] == SPIECE_UNDERLINE and origin[first + 1] - begin > 1:
                while True:  # whitespace before a word: keep the last character of the run (or CR LF)
                    step = 2 if string[begin:begin + 2] == "\r\n" else 1
                    if begin + step >= origin[first + 1] or not self.is_space(string[begin + step]):
                        break
                    begin += step
            spans.append((begin, end))
        return ids, spans
