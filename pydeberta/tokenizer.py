"""DeBERTa-v2/v3 tokenizers: sentencepiece's ids, transformers' calling conventions.

The checkpoints (He et al., DeBERTa, ICLR 2021; DeBERTaV3, ICLR 2023) were trained on the ids of a
sentencepiece unigram model (Kudo & Richardson, EMNLP 2018). Pipeline for one text, shared by
both classes (transformers 4.x's slow ``DebertaV2Tokenizer``):

1. Split on the text of added tokens (``[CLS] [SEP] [PAD] [UNK] [MASK]`` and any others,
   longest match first; ``pretokenize.py``). Each becomes its id; every chunk between them is
   encoded on its own, so the chunk after a special token starts a new ``▁`` word:
   ``"hello[MASK]world"`` and ``"hello [MASK] world"`` both give ``▁hello [MASK] ▁world``.
2. Per chunk (``pretokenize.py``): ``do_lower_case`` lower-cases it character by character (as
   transformers does: no final-sigma rule); ``split_by_punct`` cuts it into runs of
   non-punctuation and single punctuation characters, each encoded on its own (so each gets its
   own ``▁``).
3. sentencepiece encodes each string with the model's own normaliser (nmt_nfkc: NFKC plus
   ZWSP/NBSP/full-width rules), strips and collapses whitespace, adds the dummy-prefix ``▁`` and
   runs the unigram Viterbi. A character outside the vocabulary becomes its UTF-8 byte pieces
   (byte fallback, ``<0xE9>``), as the model was trained; models without byte fallback give
   the unknown id. ``sp_model_kwargs`` (``enable_sampling``, ``nbest_size``, ``alpha``) turn on
   subword sampling.
4. ``encoding.py`` adds ``[CLS]``/``[SEP]``, truncates, pads and collects the columns.

Worked example with the v3 vocabulary::

    "The [MASK] sat on the mat."
    -> "The "  [MASK]  " sat on the mat."                       step 1
    -> ▁The   [MASK]  ▁sat ▁on ▁the ▁mat .                       step 3
    -> [1, 279, 128000, 3208, 277, 262, 8358, 260, 2]            step 4: [CLS] ... [SEP]

(sentencepiece alone, without step 1, reads ``[MASK]`` as text: ``▁[ MAS K ]``.)

``DebertaV2Tokenizer`` runs step 3 one string at a time. ``DebertaV2TokenizerFast`` hands all
strings of a batch to sentencepiece's multi-threaded C++ batch encoder in one call, and can
return character offsets; everything else is shared, so both give the same ids on every input.

Offsets (``DebertaV2TokenizerFast``) follow transformers' fast tokenizers: ``(0, 0)`` for
special tokens; a piece spans the original characters of its normalised text, so the span of
``▁world`` in ``"hello world"`` is (5, 11) with the space its ``▁`` stands for (the last one of a
run), and every piece of a character that normalisation expanded (``㍿`` -> ``株 式 会 社``) or
byte fallback split (``龘`` -> three byte pieces) points at that character. Where transformers'
own alignment is erratic (characters the normaliser deletes, zero-width characters at the start
of a chunk, ``[UNK]`` followed by whitespace), sentencepiece's alignment is kept (see ``offsets.py``).
"""

import functools
import json
import os
import re

import sentencepiece

from . import pretokenize
from .checkpoint import read_json_object
from .encoding import (
    COLUMNS,
    PADDING_SIDES,
    VERY_LARGE_INTEGER,
    Encoding,
    TokenSequence,
    collate,
    pad,
    resolve_lengths,
    truncation_windows,
)
from .errors import CheckpointError
from .hub import resolve_model_folder
from .offsets import SPIECE_UNDERLINE, OffsetAligner, check_offsets_support, shift_spans
from .saving import atomic_files

VOCAB_FILE = "spm.model"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
ADDED_TOKENS_FILE = "added_tokens.json"
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# tokenizer_config.json entries that describe the file, not the tokenizer (transformers drops them too)
_CONFIG_NOISE = ("tokenizer_class", "tokenizer_file", "init_inputs", "name_or_path", "vocab_file",
                 "special_tokens_map_file", "auto_map")
_TOKEN_FLAGS = ("lstrip", "normalized", "rstrip", "single_word", "special")  # transformers' AddedToken fields


_SURROGATE = re.compile("[\ud800-\udfff]")
# sentencepiece's sampling options; the processor's other keywords (out_type, add_bos ...) would
# change what every call returns.
_SP_MODEL_KWARGS = {"enable_sampling": (bool,), "nbest_size": (int,), "alpha": (int, float)}


def check_text(value, name):
    """``value`` if it is a str sentencepiece can encode; else ``TypeError`` (not a str) or
    ``ValueError`` (a lone surrogate such as ``"\\ud800"``, which UTF-8 cannot encode) naming
    ``name``. Every text, word and token the tokenizers take goes through here.

    >>> check_text("caf\\u00e9", "text")
    'café'
    >>> check_text(b"cafe", "text")
    Traceback (most recent call last):
    TypeError: text must be a str; got bytes b'cafe'
    """
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str; got {type(value).__name__} {value!r:.40}")
    if not value.isascii():
        surrogate = _SURROGATE.search(value)
        if surrogate:
            raise ValueError(f"{name} holds a lone surrogate {surrogate.group()!r} at index {surrogate.start()}, "
                             f"which is no Unicode character (text decoded with errors='surrogateescape'?)")
    return value


def _flag(value, name):
    """``value`` if it is a bool (a JSON true/false); ``TypeError`` naming ``name`` otherwise."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False; got {type(value).__name__} {value!r:.40}")
    return value


def _token_content(value, name):
    """The text of a special/added token given as str, dict (``{"content": ...}``) or AddedToken;
    None stays None (a special token that is not set)."""
    if value is None:
        return None
    content = value if isinstance(value, str) else value.get("content") if isinstance(value, dict) \
        else getattr(value, "content", None)
    if not isinstance(content, str):
        raise TypeError(f"{name} must be a str (or a dict/AddedToken with a 'content' str); "
                        f"got {type(value).__name__} {value!r:.60}")
    if not content:
        raise ValueError(f"{name} must not be empty (an empty token would match between every two characters)")
    return check_text(content, name)


def _token_index(key, name):
    """An added token's id from an ``added_tokens_decoder`` key (an int, or its digits in JSON)."""
    if isinstance(key, str) and key.isdecimal():
        return int(key)
    if isinstance(key, int) and not isinstance(key, bool) and key >= 0:
        return key
    raise ValueError(f"{name} keys must be token ids (integers >= 0); got {key!r:.40}")


def _model_max_length(value):
    """``model_max_length`` as an int >= 1 (None: no limit, transformers' 1e30)."""
    if value is None:
        return VERY_LARGE_INTEGER
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 1e30 written as a float
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"model_max_length must be an int >= 1 or None; got {type(value).__name__} {value!r:.40}")
    return value


def _check_sp_model_kwargs(sp_model_kwargs):
    """``sp_model_kwargs`` as a dict of sentencepiece's sampling options, each of its kind."""
    if not isinstance(sp_model_kwargs, dict):
        raise TypeError(f"sp_model_kwargs must be a dict; got {type(sp_model_kwargs).__name__}")
    for key, value in sp_model_kwargs.items():
        if key not in _SP_MODEL_KWARGS:
            raise TypeError(f"sp_model_kwargs takes {', '.join(_SP_MODEL_KWARGS)}; got {key!r:.40}")
        kinds = _SP_MODEL_KWARGS[key]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise TypeError(f"sp_model_kwargs[{key!r}] must be of type {' or '.join(kind.__name__ for kind in kinds)}; "
                            f"got {type(value).__name__} {value!r:.40}")
    return dict(sp_model_kwargs)


def _read_json(path):
    """The JSON object in the file at ``path``, or None if there is no such file;
    :class:`~pydeberta.errors.CheckpointError` naming the file if it holds anything else."""
    return read_json_object(path) if os.path.isfile(path) else None


def _load_sentencepiece(vocab_file, sp_model_kwargs):
    """A SentencePieceProcessor for ``vocab_file``; clear errors for bad paths and files."""
    if not isinstance(vocab_file, (str, os.PathLike)):
        raise TypeError("vocab_file must be a path to a sentencepiece model (spm.model); "
                        f"got {type(vocab_file).__name__}")
    path = os.fspath(vocab_file)
    if not os.path.isfile(path):
        raise ValueError(f"vocab_file: no sentencepiece model file at {path!r}")
    processor = sentencepiece.SentencePieceProcessor(**sp_model_kwargs)
    try:
        processor.Load(path)
    except (OSError, RuntimeError) as exc:
        raise ValueError(f"vocab_file: {path!r} is not a readable sentencepiece model ({exc})") from None
    unk_id = processor.unk_id()
    if not (0 <= unk_id < processor.get_piece_size() and processor.is_unknown(unk_id)):
        raise ValueError(f"vocab_file: {path!r} has no unknown piece (<unk>/[UNK] of type UNKNOWN); a "
                         f"sentencepiece model needs one for the characters outside its vocabulary")
    return processor


def _token_id_list(token_ids, name):
    """A list of Python ints from an int, a sequence of ints or a 1-D array."""
    if hasattr(token_ids, "tolist"):
        token_ids = token_ids.tolist()
    if isinstance(token_ids, int) and not isinstance(token_ids, bool):
        return [token_ids]
    if isinstance(token_ids, (list, tuple)):
        for i, token_id in enumerate(token_ids):
            if isinstance(token_id, bool) or not isinstance(token_id, int):
                raise TypeError(f"{name}[{i}] must be an int token id; got {type(token_id).__name__} {token_id!r}")
        return list(token_ids)
    raise TypeError(f"{name} must be an int, a list of ints or a 1-D array; got {type(token_ids).__name__}")


def _text_inputs(value, name, is_split_into_words):
    """``(batched, inputs)`` for ``text``/``text_pair``: a str or a batch of str; with
    ``is_split_into_words`` a list of words or a batch of such lists."""
    if value is None:
        raise ValueError(f"{name} is required (a str or a list of str); got None")
    if not is_split_into_words:
        if isinstance(value, str):
            return False, [check_text(value, name)]
        if isinstance(value, (list, tuple)):
            return True, [check_text(item, f"{name}[{i}]") for i, item in enumerate(value)]
        raise TypeError(f"{name} must be a str or a list/tuple of str (a batch); got {type(value).__name__}")
    if isinstance(value, (list, tuple)):
        if all(isinstance(word, str) for word in value):
            return False, [[check_text(word, f"{name}[{j}]") for j, word in enumerate(value)]]
        for i, words in enumerate(value):
            if not isinstance(words, (list, tuple)) or not all(isinstance(word, str) for word in words):
                raise TypeError(f"with is_split_into_words=True, {name} must be a list of str or a batch of "
                                f"lists of str; {name}[{i}] is {type(words).__name__} {words!r:.40}")
        return True, [[check_text(word, f"{name}[{i}][{j}]") for j, word in enumerate(words)]
                      for i, words in enumerate(value)]
    raise TypeError(f"with is_split_into_words=True, {name} must be a list of str (words); got {type(value).__name__}")


class _SpecialToken:
    """A read-only special-token attribute: ``tokenizer.cls_token`` or, with ``as_id``, ``cls_token_id``."""

    def __init__(self, name, as_id=False):
        """``name``: a key of :data:`SPECIAL_TOKEN_NAMES`; ``as_id``: read the token's id, not its text."""
        self.name, self.as_id = name, as_id

    def __get__(self, tokenizer, owner=None):
        """The token (or its id; None if the token is not set) of ``tokenizer``; the descriptor
        itself when read from the class."""
        if tokenizer is None:
            return self
        token = tokenizer._special_tokens[self.name]
        if self.as_id and token is not None:
            return tokenizer.convert_tokens_to_ids(token)
        return token


class _DebertaV2TokenizerBase:
    """Everything the slow and fast tokenizers share; they differ only in ``_encode_strings``."""

    model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    is_fast = False
    pad_token_type_id = 0

    bos_token = _SpecialToken("bos_token")
    eos_token = _SpecialToken("eos_token")
    unk_token = _SpecialToken("unk_token")
    sep_token = _SpecialToken("sep_token")
    pad_token = _SpecialToken("pad_token")
    cls_token = _SpecialToken("cls_token")
    mask_token = _SpecialToken("mask_token")
    bos_token_id = _SpecialToken("bos_token", as_id=True)
    eos_token_id = _SpecialToken("eos_token", as_id=True)
    unk_token_id = _SpecialToken("unk_token", as_id=True)
    sep_token_id = _SpecialToken("sep_token", as_id=True)
    pad_token_id = _SpecialToken("pad_token", as_id=True)
    cls_token_id = _SpecialToken("cls_token", as_id=True)
    mask_token_id = _SpecialToken("mask_token", as_id=True)

    def __init__(self, vocab_file, do_lower_case=False, split_by_punct=False, bos_token="[CLS]",
                 eos_token="[SEP]", unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                 cls_token="[CLS]", mask_token="[MASK]", sp_model_kwargs=None, **kwargs):
        """Load ``vocab_file`` (spm.model) and set up special and added tokens.

        Keyword arguments understood besides the named ones: ``model_max_length`` (default: no
        limit, 1e30), ``padding_side`` ("right"/"left"), ``clean_up_tokenization_spaces``
        (default False), ``additional_special_tokens``, ``added_tokens_decoder`` (id -> token,
        as in tokenizer_config.json). Other keys are kept in ``init_kwargs`` and written back
        by :meth:`save_pretrained`.
        """
        self.sp_model_kwargs = _check_sp_model_kwargs({} if sp_model_kwargs is None else sp_model_kwargs)
        self._sp = _load_sentencepiece(vocab_file, self.sp_model_kwargs)
        self.vocab_file = os.fspath(vocab_file)
        self.do_lower_case = _flag(do_lower_case, "do_lower_case")
        self.split_by_punct = _flag(split_by_punct, "split_by_punct")
        self.name_or_path = kwargs.pop("name_or_path", "")
        self.model_max_length = _model_max_length(kwargs.pop("model_max_length", None))
        self.padding_side = kwargs.pop("padding_side", "right")
        if self.padding_side not in PADDING_SIDES:
            raise ValueError(f"padding_side must be one of {PADDING_SIDES}; got {self.padding_side!r:.40}")
        self.clean_up_tokenization_spaces = _flag(kwargs.pop("clean_up_tokenization_spaces", False),
                                                  "clean_up_tokenization_spaces")
        added_tokens_decoder = kwargs.pop("added_tokens_decoder", None) or {}
        if not isinstance(added_tokens_decoder, dict):
            raise TypeError(f"added_tokens_decoder must be a dict {{id: token}}; "
                            f"got {type(added_tokens_decoder).__name__}")
        additional = kwargs.pop("additional_special_tokens", None) or []
        if not isinstance(additional, (list, tuple)):
            raise TypeError(f"additional_special_tokens must be a list of tokens; got {type(additional).__name__}")
        kwargs.pop("extra_special_tokens", None)
        self.init_kwargs = kwargs
        named = dict(zip(SPECIAL_TOKEN_NAMES, (bos_token, eos_token, unk_token, sep_token, pad_token,
                                               cls_token, mask_token)))
        self._special_tokens = {name: _token_content(value, name) for name, value in named.items()}
        self.additional_special_tokens = [_token_content(token, "additional_special_tokens") for token in additional]
        self._init_added_tokens(added_tokens_decoder)
        # byte per id: 1 if the piece begins a word ("▁..."), for word_ids()
        self._word_start = bytes(piece.startswith(SPIECE_UNDERLINE) for piece in self._piece_list())

    @functools.cached_property
    def _aligner(self):
        """The :class:`~pydeberta.offsets.OffsetAligner` of the sentencepiece model, built on the
        first call that asks for offsets."""
        return OffsetAligner(self._sp)

    # ------------------------------------------------------------------ vocabulary

    def _init_added_tokens(self, added_tokens_decoder):
        """Tokens split out of the text before sentencepiece: ``added_tokens_decoder`` entries,
        then every special token not yet among them, at its sentencepiece id if it is a piece
        (``[CLS]`` = 1 in v3) or else at the next free id (``[MASK]`` = 128000), as transformers."""
        self._added_token_props = {}
        self._added_tokens = {}
        indexed = {_token_index(key, "added_tokens_decoder"): token for key, token in added_tokens_decoder.items()}
        for index, token in sorted(indexed.items()):
            content = _token_content(token, f"added_tokens_decoder[{index}]")
            self._added_tokens[content] = index
            if isinstance(token, dict):
                self._added_token_props[content] = {key: value for key, value in token.items() if key in _TOKEN_FLAGS}
        next_id = len(self)
        for token in self.all_special_tokens:
            if token in self._added_tokens:
                continue
            if self._is_piece(token):
                self._added_tokens[token] = self._sp.piece_to_id(token)
            else:
                self._added_tokens[token] = next_id
                next_id += 1
        self._added_ids = {index: content for content, index in self._added_tokens.items()}
        self._split_pattern = pretokenize.added_token_pattern(self._added_tokens)

    def _is_piece(self, text):
        """True if ``text`` is a piece of the sentencepiece vocabulary."""
        return self._sp.id_to_piece(self._sp.piece_to_id(text)) == text

    @property
    def vocab_size(self):
        """Number of sentencepiece pieces (128000 for v3), without added tokens."""
        return self._sp.get_piece_size()

    def __len__(self):
        """Size of the vocabulary with added tokens (128001 for v3: ``[MASK]``), i.e. the
        number of keys of :meth:`get_vocab`."""
        return self.vocab_size + sum(1 for content in self._added_tokens if not self._is_piece(content))

    def _piece_list(self):
        """Every sentencepiece piece, in id order."""
        return self._sp.id_to_piece(list(range(self.vocab_size)))

    def get_vocab(self):
        """``{token: id}`` for all sentencepiece pieces and added tokens."""
        vocab = {piece: index for index, piece in enumerate(self._piece_list())}
        vocab.update(self._added_tokens)
        return vocab

    def get_added_vocab(self):
        """``{token: id}`` of the added tokens (the special tokens among them)."""
        return dict(self._added_tokens)

    @property
    def all_special_tokens(self):
        """Special token strings, without repeats: ``['[CLS]', '[SEP]', '[UNK]', '[PAD]', '[MASK]']``."""
        tokens = [self._special_tokens[name] for name in SPECIAL_TOKEN_NAMES] + self.additional_special_tokens
        return list(dict.fromkeys(token for token in tokens if token is not None))

    @property
    def all_special_ids(self):
        """Ids of :attr:`all_special_tokens`."""
        return self.convert_tokens_to_ids(self.all_special_tokens)

    @property
    def special_tokens_map(self):
        """``{"bos_token": "[CLS]", ...}`` for the special tokens that are set."""
        mapping = {name: token for name, token in self._special_tokens.items() if token is not None}
        if self.additional_special_tokens:
            mapping["additional_special_tokens"] = list(self.additional_special_tokens)
        return mapping

    def convert_tokens_to_ids(self, tokens):
        """Token string(s) to id(s); strings that are no piece give sentencepiece's unknown id."""
        if tokens is None:
            return None
        if isinstance(tokens, str):
            return self._token_to_id(tokens)
        if not isinstance(tokens, (list, tuple)):
            raise TypeError(f"tokens must be a str or a list of str; got {type(tokens).__name__}")
        return [self._token_to_id(token) for token in tokens]

    def _token_to_id(self, token):
        """The id of the str ``token``: an added token's id, else sentencepiece's (its unknown id
        for a string that is no piece); TypeError for anything but a str."""
        index = self._added_tokens.get(check_text(token, "tokens"))
        return self._sp.piece_to_id(token) if index is None else index

    def convert_ids_to_tokens(self, ids, skip_special_tokens=False):
        """Id(s) to token string(s): added tokens by name, pieces as stored (``<0xE9>`` for
        bytes), ids beyond the vocabulary as ``unk_token``. ``skip_special_tokens`` drops the
        ids of special tokens from a list."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        if isinstance(ids, int) and not isinstance(ids, bool):
            return self._id_to_token(ids)
        ids = _token_id_list(ids, "ids")
        skip = set(self.all_special_ids) if skip_special_tokens else ()
        return [self._id_to_token(index) for index in ids if index not in skip]

    def _id_to_token(self, index):
        """The token of the int id ``index`` (>= 0, else ValueError): an added token, a piece, or
        ``unk_token`` past the vocabulary."""
        if index < 0:
            raise ValueError(f"token ids must be >= 0; got {index}")
        token = self._added_ids.get(index)
        if token is not None:
            return token
        return self._sp.id_to_piece(index) if index < self.vocab_size else self.unk_token

    # ------------------------------------------------------------------ text -> tokens

    def _segments(self, text):
        """``pretokenize.segments`` of ``text`` with this tokenizer's added tokens and flags:
        ``[(start, string, token_id, index_map)]``, ``token_id`` None for a string that
        sentencepiece encodes."""
        return pretokenize.segments(text, self._split_pattern, self._added_tokens,
                                    do_lower_case=self.do_lower_case, split_by_punct=self.split_by_punct)

    def tokenize(self, text, pair=None, add_special_tokens=False):
        """Token strings of ``text`` (and ``pair``): sentencepiece pieces, added tokens verbatim.

        As in transformers' slow tokenizer, a character outside a vocabulary without byte
        fallback appears as itself (its id is the unknown id).
        """
        check_text(text, "text")
        if pair is not None:
            check_text(pair, "pair")
        tokens = self._tokenize_one(text)
        if add_special_tokens:
            tokens = [self.cls_token] + tokens + [self.sep_token]
        if pair is not None:
            tokens += self._tokenize_one(pair) + ([self.sep_token] if add_special_tokens else [])
        return tokens

    def _tokenize_one(self, text):
        """The token strings of one text, without special tokens: pieces and added tokens."""
        tokens = []
        for _, string, token_id, _ in self._segments(text):
            tokens.extend(self._sp.encode(string, out_type=str) if token_id is None else [string])
        return tokens

    def _encode_strings(self, strings):
        """Sentencepiece ids of each string (one list per string)."""
        raise NotImplementedError

    def _encode_texts(self, texts, is_split_into_words=False, with_offsets=False):
        """``TokenSequence`` (ids, offsets, word ids) of each text or list of words.

        All strings of all texts go to :meth:`_encode_strings` in one call.
        """
        if with_offsets:
            check_offsets_support()
        # per input, one list of segments per word (a raw text is a single "word")
        plans = [[self._segments(" " + word) for word in text] if is_split_into_words else [self._segments(text)]
                 for text in texts]
        strings = [string for groups in plans for segments in groups
                   for _, string, token_id, _ in segments if token_id is None]
        encoded = iter(self._encode_strings(strings))
        return [self._sequence(groups, encoded, is_split_into_words, with_offsets) for groups in plans]

    def _sequence(self, groups, encoded, is_split_into_words, with_offsets):
        """The TokenSequence of one input from its segments, taking the ids of its strings from
        the iterator ``encoded``."""
        if not with_offsets and len(groups) == 1 and len(groups[0]) == 1 and groups[0][0][2] is None:
            ids = next(encoded)  # the common case: one plain string, no copy
            return TokenSequence(ids, None, [0] * len(ids) if is_split_into_words else None, (0,), self._word_start)
        ids, offsets, starts, words = [], [] if with_offsets else None, [], []
        for word_index, segments in enumerate(groups):
            word_offsets = []
            for start, string, token_id, index_map in segments:
                starts.append(len(ids))
                if token_id is not None:
                    ids.append(token_id)
                    word_offsets.append((start, start + len(string)))
                    continue
                string_ids = next(encoded)
                if with_offsets:
                    string_ids, spans = self._aligner.spans(string_ids, string)
                    word_offsets.extend(shift_spans(spans, start, index_map))
                ids.extend(string_ids)
            if with_offsets:  # a pre-split word was encoded as " " + word: shift back by one
                offsets.extend([(max(b - 1, 0), max(e - 1, 0)) for b, e in word_offsets]
                               if is_split_into_words else word_offsets)
            words.extend([word_index] * (len(ids) - len(words)))
        return TokenSequence(ids, offsets, words if is_split_into_words else None, starts, self._word_start)

    # ------------------------------------------------------------------ tokens -> model inputs

    def num_special_tokens_to_add(self, pair=False):
        """2 for ``[CLS] A [SEP]``, 3 for ``[CLS] A [SEP] B [SEP]``."""
        return 3 if pair else 2

    def _template(self, token_ids_0, token_ids_1=None):
        """The :class:`Encoding` of ``[CLS] A [SEP] (B [SEP])`` for two id lists."""
        a = TokenSequence(_token_id_list(token_ids_0, "token_ids_0"))
        b = None if token_ids_1 is None else TokenSequence(_token_id_list(token_ids_1, "token_ids_1"))
        return Encoding(a, (0, len(a)), b, (0, len(b)) if b is not None else None,
                        cls_id=self.cls_token_id, sep_id=self.sep_token_id)

    def build_inputs_with_special_tokens(self, token_ids_0, token_ids_1=None):
        """``[CLS] A [SEP]`` or ``[CLS] A [SEP] B [SEP]`` as ids."""
        return self._template(token_ids_0, token_ids_1).ids

    def create_token_type_ids_from_sequences(self, token_ids_0, token_ids_1=None):
        """0 for ``[CLS] A [SEP]``, 1 for ``B [SEP]``."""
        return self._template(token_ids_0, token_ids_1).type_ids

    def get_special_tokens_mask(self, token_ids_0, token_ids_1=None, already_has_special_tokens=False):
        """1 where the template puts a special token; with ``already_has_special_tokens`` 1 on
        every id of a special token in ``token_ids_0``."""
        if already_has_special_tokens:
            if token_ids_1 is not None:
                raise ValueError("token_ids_1 must be None when already_has_special_tokens=True")
            special = set(self.all_special_ids)
            return [1 if token_id in special else 0 for token_id in _token_id_list(token_ids_0, "token_ids_0")]
        return self._template(token_ids_0, token_ids_1).special_tokens_mask

    def __call__(self, text=None, text_pair=None, add_special_tokens=True, padding=False, truncation=None,
                 max_length=None, stride=0, is_split_into_words=False, pad_to_multiple_of=None,
                 padding_side=None, return_tensors=None, return_token_type_ids=None,
                 return_attention_mask=None, return_overflowing_tokens=False,
                 return_special_tokens_mask=False, return_offsets_mapping=False, return_length=False,
                 verbose=True):
        """Tokenize one text, a pair, or a batch of either, into model inputs.

        Args:
            text: a str, or a list of str (a batch); with ``is_split_into_words`` a list of
                words, or a list of such lists.
            text_pair: the second sequences, shaped like ``text``.
            add_special_tokens: add ``[CLS]``/``[SEP]``.
            padding: False/"do_not_pad", True/"longest", or "max_length".
            truncation: False/"do_not_truncate", True/"longest_first", "only_first", "only_second".
            max_length: row length limit (with special tokens); alone it turns on truncation.
            stride: overlap between overflow windows.
            pad_to_multiple_of, padding_side: padding details ("right" by default).
            return_tensors: None for lists, "np" for int64 NumPy arrays.
            return_token_type_ids, return_attention_mask: default True.
            return_overflowing_tokens: keep the truncated tokens as extra rows (windows), with
                ``overflow_to_sample_mapping``.
            return_special_tokens_mask, return_length: extra columns; ``length`` counts the
                tokens before padding.
            return_offsets_mapping: character spans (``DebertaV2TokenizerFast`` only).
            verbose: False silences the warnings about ignored lengths.
        Returns:
            BatchEncoding with ``input_ids``, ``token_type_ids``, ``attention_mask`` and the
            requested extra columns; ``word_ids(i)`` and ``sequence_ids(i)`` per row.
        """
        batched, texts = _text_inputs(text, "text", is_split_into_words)
        pair = text_pair is not None
        if pair:
            pair_batched, pairs = _text_inputs(text_pair, "text_pair", is_split_into_words)
            if pair_batched != batched or len(pairs) != len(texts):
                raise ValueError(f"text_pair must match text: got {len(pairs)} text_pair (batch: {pair_batched}) "
                                 f"for {len(texts)} text (batch: {batched})")
        if return_tensors not in (None, "np"):
            raise ValueError("return_tensors must be None or 'np' (pydeberta has no torch/tf tensors); "
                             f"got {return_tensors!r}")
        padding_side = self.padding_side if padding_side is None else padding_side
        if padding_side not in PADDING_SIDES:
            raise ValueError(f"padding_side must be one of {PADDING_SIDES}; got {padding_side!r}")
        if return_offsets_mapping and not self.is_fast:
            raise NotImplementedError("return_offsets_mapping is not available with DebertaV2Tokenizer "
                                      "(as in transformers' slow tokenizers); use DebertaV2TokenizerFast")
        num_special = self.num_special_tokens_to_add(pair) if add_special_tokens else 0
        padding, truncation, max_length = resolve_lengths(
            padding, truncation, max_length, model_max_length=self.model_max_length,
            num_special_tokens=num_special, stride=stride, pad_to_multiple_of=pad_to_multiple_of, verbose=verbose)

        sequences = self._encode_texts(texts + (pairs if pair else []), is_split_into_words, return_offsets_mapping)
        firsts, seconds = sequences[:len(texts)], (sequences[len(texts):] if pair else [None] * len(texts))
        rows, sample_of_row = [], []
        cls_id, sep_id = self.cls_token_id, self.sep_token_id
        for index, (a, b) in enumerate(zip(firsts, seconds)):
            windows = truncation_windows(len(a), None if b is None else len(b), strategy=truncation,
                                         max_length=max_length, num_special_tokens=num_special,
                                         stride=stride, overflow=return_overflowing_tokens)
            for a_span, b_span in windows:
                rows.append(Encoding(a, a_span, b, b_span, cls_id=cls_id, sep_id=sep_id,
                                     add_special_tokens=add_special_tokens))
                sample_of_row.append(index)
        pad(rows, strategy=padding, max_length=max_length, pad_id=self.pad_token_id,
            pad_to_multiple_of=pad_to_multiple_of, side=padding_side)

        wanted = {
            "input_ids": True,
            "token_type_ids": return_token_type_ids is not False,
            "attention_mask": return_attention_mask is not False,
            "special_tokens_mask": return_special_tokens_mask,
            "offset_mapping": return_offsets_mapping,
            "length": return_length,
        }
        return collate(rows, columns=[name for name in COLUMNS if wanted[name]],
                       batched=batched or return_overflowing_tokens, return_tensors=return_tensors,
                       overflow_mapping=sample_of_row if return_overflowing_tokens else None,
                       n_sequences=2 if pair else 1)

    def encode(self, text, text_pair=None, add_special_tokens=True, padding=False, truncation=None,
               max_length=None, stride=0, is_split_into_words=False, pad_to_multiple_of=None,
               padding_side=None, return_tensors=None):
        """The ``input_ids`` of one text (or pair); arguments as in :meth:`__call__`."""
        batched, _ = _text_inputs(text, "text", is_split_into_words)
        if batched:
            raise TypeError("encode takes one text (or one list of words); call the tokenizer for batches")
        return self(text, text_pair, add_special_tokens=add_special_tokens, padding=padding, truncation=truncation,
                    max_length=max_length, stride=stride, is_split_into_words=is_split_into_words,
                    pad_to_multiple_of=pad_to_multiple_of, padding_side=padding_side,
                    return_tensors=return_tensors)["input_ids"]

    # ------------------------------------------------------------------ ids -> text

    def convert_tokens_to_string(self, tokens):
        """Join tokens into text: runs of pieces are decoded by sentencepiece; a special token is
        appended verbatim, after a space unless the previous token was special; then stripped
        (transformers 4.x's ``SPMTokenizer.decode``)."""
        special = set(self.all_special_tokens)
        text, pieces, previous_special = "", [], False
        for token in tokens:
            if token in special:
                text += ("" if previous_special else " ") + self._sp.decode_pieces(pieces) + token
                pieces, previous_special = [], True
            else:
                pieces.append(token)
                previous_special = False
        return (text + self._sp.decode_pieces(pieces)).strip()

    def decode(self, token_ids, skip_special_tokens=False, clean_up_tokenization_spaces=None,
               spaces_between_special_tokens=True):
        """Text of ``token_ids`` (an int, a list of ints or a 1-D array), as transformers 4.x's
        slow tokenizer: added tokens that are not special are joined with spaces
        (``spaces_between_special_tokens``), everything else goes through
        :meth:`convert_tokens_to_string`; ``clean_up_tokenization_spaces`` (default: the
        tokenizer's, False) removes spaces before punctuation."""
        tokens = self.convert_ids_to_tokens(_token_id_list(token_ids, "token_ids"), skip_special_tokens)
        special = set(self.all_special_tokens)
        plain_added = (set(self._added_tokens) - special) | {
            token for token in self.additional_special_tokens if self._token_to_id(token) >= self.vocab_size}
        texts, run = [], []
        for token in tokens:
            if skip_special_tokens and token in special:  # also "[UNK]" read from an id past the vocabulary
                continue
            if token in plain_added:
                if run and self.convert_tokens_to_string(run):
                    texts.append(self.convert_tokens_to_string(run))
                texts.append(token)
                run = []
            else:
                run.append(token)
        if run:
            texts.append(self.convert_tokens_to_string(run))
        text = (" " if spaces_between_special_tokens else "").join(texts)
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
        return clean_up_tokenization(text) if clean_up_tokenization_spaces else text

    def batch_decode(self, sequences, skip_special_tokens=False, clean_up_tokenization_spaces=None,
                     spaces_between_special_tokens=True):
        """:meth:`decode` of each sequence (a list of id lists or a 2-D array)."""
        if hasattr(sequences, "tolist"):
            sequences = sequences.tolist()
        if not isinstance(sequences, (list, tuple)):
            raise TypeError(f"sequences must be a list of id lists or a 2-D array; got {type(sequences).__name__}")
        return [self.decode(ids, skip_special_tokens, clean_up_tokenization_spaces, spaces_between_special_tokens)
                for ids in sequences]

    # ------------------------------------------------------------------ files

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *, revision=None, cache_dir=None,
                        local_files_only=None, **kwargs):
        """Load from the folder holding ``spm.model`` and, where present,
        ``tokenizer_config.json``, ``special_tokens_map.json`` and ``added_tokens.json`` (as
        transformers 4.x reads them: ``added_tokens_decoder`` in the config wins over the two
        other files). ``tokenizer.json`` is not read: the sentencepiece model is the source of
        the ids.

        Args:
            pretrained_model_name_or_path: str or os.PathLike, resolved as models resolve it
                (:func:`pydeberta.hub.resolve_model_folder`): a bundled name such as
                ``"pydeberta/tiny"``, a folder, a file inside one, or a Hugging Face Hub id.
            revision, cache_dir, local_files_only: passed to ``resolve_model_folder`` for Hub ids.
            **kwargs: override the config (e.g. ``do_lower_case=True``).

        Raises:
            TypeError: ``pretrained_model_name_or_path`` is not a str or os.PathLike.
            FileNotFoundError: it names nothing (from ``resolve_model_folder``).
            ValueError: the folder holds no readable ``spm.model``, or a setting is out of range.
            TypeError: a setting of the wrong kind (the message names it).
            CheckpointError: a JSON file is not UTF-8 JSON holding an object (the message names it).
        """
        if not isinstance(pretrained_model_name_or_path, (str, os.PathLike)):
            raise TypeError("pretrained_model_name_or_path must be a str or os.PathLike (a folder, a bundled "
                            f"name or a Hub id); got {type(pretrained_model_name_or_path).__name__}")
        folder = os.fspath(resolve_model_folder(pretrained_model_name_or_path, revision=revision,
                                                cache_dir=cache_dir, local_files_only=local_files_only))
        config = _read_json(os.path.join(folder, TOKENIZER_CONFIG_FILE)) or {}
        for key in _CONFIG_NOISE:
            config.pop(key, None)
        if "added_tokens_decoder" not in config:
            special_map = _read_json(os.path.join(folder, SPECIAL_TOKENS_MAP_FILE)) or {}
            for key, value in special_map.items():
                if not kwargs.get(key):
                    config[key] = value
            added_path = os.path.join(folder, ADDED_TOKENS_FILE)
            added = _read_json(added_path) or {}
            for token, index in added.items():
                if isinstance(index, bool) or not isinstance(index, int) or index < 0:
                    raise CheckpointError(f"{added_path} must map tokens to ids (integers >= 0); {token!r:.40} "
                                          f"maps to {index!r:.40}")
            config["added_tokens_decoder"] = {index: {"content": token} for token, index in added.items()}
        config.update(kwargs)
        config["name_or_path"] = folder
        return cls(os.path.join(folder, VOCAB_FILE), **config)

    def save_vocabulary(self, save_directory, filename_prefix=None):
        """Write the sentencepiece model as ``[prefix-]spm.model``; returns ``(path,)``."""
        name = VOCAB_FILE if filename_prefix is None else f"{filename_prefix}-{VOCAB_FILE}"
        path = os.path.join(os.fspath(save_directory), name)
        with open(path, "wb") as handle:
            handle.write(self._sp.serialized_model_proto())
        return (path,)

    def save_pretrained(self, save_directory):
        """Write ``tokenizer_config.json``, ``special_tokens_map.json``, ``spm.model`` and
        ``added_tokens.json`` (tokens beyond the sentencepiece vocabulary) in transformers 4.x's
        layout, readable by both transformers and :meth:`from_pretrained`. Returns the paths."""
        if not isinstance(save_directory, (str, os.PathLike)):
            raise TypeError(f"save_directory must be a folder path; got {type(save_directory).__name__}")
        folder = os.fspath(save_directory)
        if os.path.isfile(folder):
            raise ValueError(f"save_directory: {folder!r} is a file, not a folder")
        config = dict(self.init_kwargs)
        config.update(self.special_tokens_map)
        config.update({
            "added_tokens_decoder": {str(index): self._added_token_entry(content)
                                     for content, index in sorted(self._added_tokens.items(), key=lambda kv: kv[1])},
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
            "do_lower_case": self.do_lower_case,
            "model_max_length": self.model_max_length,
            "padding_side": self.padding_side,
            "sp_model_kwargs": self.sp_model_kwargs,
            "split_by_punct": self.split_by_punct,
            "tokenizer_class": "DebertaV2Tokenizer",
        })
        beyond_vocab = {content: index for content, index in self._added_tokens.items() if index >= self.vocab_size}
        files = {TOKENIZER_CONFIG_FILE: config, SPECIAL_TOKENS_MAP_FILE: self.special_tokens_map}
        if beyond_vocab:
            files[ADDED_TOKENS_FILE] = beyond_vocab
        with atomic_files(folder) as target:  # all or nothing: a failure leaves the folder as it was
            for name, content in files.items():
                with open(target(name), "w", encoding="utf-8") as handle:
                    json.dump(content, handle, indent=2, sort_keys=True, ensure_ascii=False)
                    handle.write("\n")
            with open(target(VOCAB_FILE), "wb") as handle:
                handle.write(self._sp.serialized_model_proto())
        names = [TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE, VOCAB_FILE] + ([ADDED_TOKENS_FILE] if beyond_vocab else [])
        return tuple(os.path.join(folder, name) for name in names)

    def _added_token_entry(self, content):
        """tokenizer_config.json entry of an added token (transformers' AddedToken fields)."""
        entry = {"content": content, "lstrip": False, "normalized": content == self.unk_token,
                 "rstrip": False, "single_word": False, "special": content in self.all_special_tokens}
        entry.update(self._added_token_props.get(content, {}))
        return entry

    def __repr__(self):
        """Class name, source, vocabulary size, lengths, flags and special tokens."""
        return (f"{type(self).__name__}(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size}, "
                f"model_max_length={self.model_max_length}, do_lower_case={self.do_lower_case}, "
                f"split_by_punct={self.split_by_punct}, special_tokens={self.special_tokens_map})")


def clean_up_tokenization(text):
    """transformers' ``clean_up_tokenization``: drop spaces before punctuation and English clitics."""
    return (text.replace(" .", ".").replace(" ?", "?").replace(" !", "!").replace(" ,", ",")
            .replace(" ' ", "'").replace(" n't", "n't").replace(" 'm", "'m").replace(" 's", "'s")
            .replace(" 've", "'ve").replace(" 're", "'re"))


class DebertaV2Tokenizer(_DebertaV2TokenizerBase):
    """DeBERTa-v2/v3 tokenizer: sentencepiece one string at a time (transformers' slow tokenizer).

    ``DebertaV2Tokenizer(vocab_file, do_lower_case=False, split_by_punct=False, ...,
    sp_model_kwargs=None)`` or ``DebertaV2Tokenizer.from_pretrained(folder)``; see the module
    docstring for the pipeline. Offsets are not available (use DebertaV2TokenizerFast).
    """

    is_fast = False

    def _encode_strings(self, strings):
        """One sentencepiece call per string."""
        encode = self._sp.encode
        return [encode(string) for string in strings]


class DebertaV2TokenizerFast(_DebertaV2TokenizerBase):
    """DeBERTa-v2/v3 tokenizer that encodes a whole batch in sentencepiece's C++ code.

    Same constructor, files and ids as :class:`DebertaV2Tokenizer`; all strings of a call go to
    sentencepiece's multi-threaded batch encoder at once, and ``return_offsets_mapping=True``
    gives character offsets (needs sentencepiece >= 0.2.0).

    Attributes:
        num_threads: sentencepiece worker threads per batch; -1 (default) uses every core.
    """

    is_fast = True
    num_threads = -1

    def _encode_strings(self, strings):
        """One multi-threaded sentencepiece call for all strings."""
        if len(strings) == 1:
            return [self._sp.encode(strings[0])]
        return self._sp.encode(strings, num_threads=self.num_threads)
