"""Train pydeberta's bundled small model, ``pydeberta/tiny``, from text that Debian ships.

The recipe, one step per ``--step`` (run them in this order, or ``--step all``)::

    corpus  English text from three Debian packages (installed with apt if missing):
              python3.11-doc  the Python 3.11 documentation's reST sources     PSF License 2.0
              bible-kjv       the King James Bible (dumped with ``bible -f``)   public domain
              fortunes        the fortune cookie files (UTF-8 ``*.u8``; no      public domain /
                              art, ascii-art or translate-me)                   see its copyright
            reST markup is stripped roughly (directives, code, tables and prompts dropped; roles,
            literals and links reduced to their text). One paragraph, verse or cookie per line,
            exact duplicates dropped. Lines are grouped into blocks of 20 consecutive lines of one
            document; a seeded shuffle of the blocks puts 2% of them in ``heldout.txt`` and the
            rest in ``train.txt``.
    vocab   sentencepiece unigram, 8000 pieces, byte fallback, nmt_nfkc, DeBERTa's layout
            [PAD]=0 [CLS]=1 [SEP]=2 [UNK]=3, then [MASK]=8000 as an added token (written with
            pydeberta's tokenizer, read identically by transformers' DebertaV2Tokenizer).
    train   tokenise with pydeberta's DebertaV2TokenizerFast, pack into 128-token rows
            ([CLS] + 126 tokens + [SEP]), and pre-train a DeBERTa-v3-style masked LM with
            transformers + torch (training tool only): 4 layers, hidden 256, 4 heads, FFN 1024,
            relative attention with 64 log buckets, shared c2p|p2c position projections,
            layer-normed relative embeddings, no absolute positions, ``legacy=False`` head.
            MLM 15% (80% [MASK] / 10% random / 10% kept), AdamW (lr 1e-3, betas 0.9/0.98,
            weight decay 0.01), linear warmup then linear decay, batch 32 x 128, one torch thread.
            The LM head runs on the masked positions only. Loss is logged to ``train_log.csv``;
            checkpoints go to the work folder.
    export  float16 ``model.safetensors`` + ``config.json`` + tokenizer files into the package
            folder ``pydeberta/models/tiny``, plus ``training_curve.csv``/``.png``.
    eval    with transformers on the exported folder (pydeberta's NumPy forward measured too slow on
            the loaded shared machine for the whole split; tests/test_bundled.py re-scores the sample with pydeberta)
            and with --before on the previous model too: mask 15% of the held-out tokens (all [MASK], seeded), top-1
            and top-5 accuracy of the original token, against the baseline that always predicts
            the most frequent training tokens. Writes ``eval_results.json`` and
            ``heldout_sample.txt`` (about 300 held-out lines, which tests/test_bundled.py
            re-scores): the first lines of every held-out block, so that all sources appear).

Everything is seeded (``--seed``, default 0). Intermediate files live in ``--work``
(default /tmp/pydeberta_tiny), never in the repository.

Usage::

    nice -n 10 python tools/train_tiny.py --step corpus
    nice -n 10 python tools/train_tiny.py --step vocab
    nice -n 10 python tools/train_tiny.py --step train --steps 1400 --minutes 52
    nice -n 10 python tools/train_tiny.py --step export
    nice -n 10 python tools/train_tiny.py --step eval
"""

from __future__ import annotations

import argparse
import csv
import glob
import gzip
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PACKAGE_FOLDER = REPO / "pydeberta" / "models" / "tiny"
DEFAULT_WORK = Path("/tmp/pydeberta_tiny")

SOURCES = {
    "python3.11-doc": ("Python 3.11 documentation, reST sources (/usr/share/doc/python3.11/html/_sources)",
                       "PSF License Agreement for Python 3.11 (see /usr/share/doc/python3.11-doc/copyright)"),
    "bible-kjv": ("King James Version of the Bible, via bible-kjv-text (/usr/lib/bible.data, dumped with `bible -f`)",
                  "public domain (see /usr/share/doc/bible-kjv/copyright)"),
    "fortunes": ("fortune cookie files (/usr/share/games/fortunes/*.u8, without art, ascii-art, translate-me)",
                 "public domain / freely redistributable (see /usr/share/doc/fortunes/copyright)"),
    "dict-gcide": ("GNU Collaborative International Dictionary of English 0.48 (/usr/share/dictd/gcide.dict.dz): "
                   "definitions, usage examples, notes and quotations, markup stripped",
                   "GPL-2+ (see /usr/share/doc/dict-gcide/copyright)"),
    "wordnet-base": ("WordNet 3.0 glosses (/usr/share/wordnet/data.*): each definition and each quoted example "
                     "sentence as a line",
                     "WordNet 3.0 licence, BSD-like (see /usr/share/doc/wordnet-base/copyright)"),
}
FIRST_SOURCES = ("python3.11-doc", "bible-kjv", "fortunes")   # the corpus of the first model (held-out split kept)

BLOCK_LINES = 20          # lines per held-out/train block
HELDOUT_FRACTION = 0.02
SEQ_LEN = 128             # tokens per row, [CLS] and [SEP] included
MASK_PROB = 0.15
WORD_MASK_PROB = 0.15     # whole words replaced by "[MASK]" in the text, for the word-masked rows
WORD_ROWS_FRACTION = 0.4  # share of each training batch taken from the word-masked rows
_MASKABLE_WORD = re.compile(r"(?<!\S)[A-Za-z]+(?![\w'’-])")   # a word after a space (or at the start)
TOKENIZER_FILES = ("spm.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
SAMPLE_LINES = 300        # about this many held-out lines shipped for the test: the first of every block


# ------------------------------------------------------------------------------------------------
# 1. corpus
# ------------------------------------------------------------------------------------------------

def ensure_packages(packages):
    """apt-get install the Debian packages not yet installed (needs root and a package mirror)."""
    missing = [name for name in packages
               if subprocess.run(["dpkg", "-s", name], capture_output=True).returncode != 0]
    if missing:
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


_ROLE = re.compile(r":[\w:+.-]+:`~?!?([^`<]*?)\s*(?:<[^>]*>)?`")   # :func:`~a.b <t>` -> a.b
_LINK = re.compile(r"`([^`<]+?)\s*<[^>]*>`__?")                      # `text <url>`_ -> text
_REF = re.compile(r"`([^`]+)`__?")                                   # `name`_ -> name
_LITERAL = re.compile(r"``(.+?)``")
_EMPHASIS = re.compile(r"\*\*?([^*\s][^*]*?)\*\*?")
_BULLET = re.compile(r"^(?:[-*+]|#\.|\d+\.|\(?[a-z]\))\s+")
_UNDERLINE = re.compile(r"^([=\-~^*#+\"'`:.])\1{2,}\s*$")
_PROSE_DIRECTIVES = {"note", "warning", "seealso", "versionadded", "versionchanged", "deprecated",
                     "important", "tip", "attention", "caution", "hint", "impl-detail", "admonition"}


def rest_inline(text):
    """Reduce reST inline markup to its text: roles, links, references, literals, emphasis."""
    text = _ROLE.sub(lambda m: m.group(1).split(".")[-1] if m.group(0).count("~") else m.group(1), text)
    text = _LINK.sub(r"\1", text)
    text = _REF.sub(r"\1", text)
    text = _LITERAL.sub(r"\1", text)
    text = _EMPHASIS.sub(r"\1", text)
    text = text.replace("\\", "")
    if text.endswith("::"):
        text = text[:-1]
    return re.sub(r"\s+", " ", text).strip()


def rest_to_lines(source):
    """Rough reST -> prose: one line per paragraph, list item or title; code, tables, directives
    (except admonitions such as ``.. note::``), doctest prompts and literal blocks dropped."""
    lines = []
    paragraphs = re.split(r"\n\s*\n", source)
    skip_deeper_than = None        # indentation of a directive or "::" whose body is dropped
    for paragraph in paragraphs:
        raw = paragraph.rstrip().split("\n")
        raw = [line for line in raw if line.strip()]
        if not raw:
            continue
        indent = len(raw[0]) - len(raw[0].lstrip())
        if skip_deeper_than is not None:
            if indent > skip_deeper_than:
                continue
            skip_deeper_than = None
        first = raw[0].strip()
        if first.startswith(".."):
            name = re.match(r"\.\.\s+([\w:-]+)::", first)
            if not (name and name.group(1) in _PROSE_DIRECTIVES):
                skip_deeper_than = indent
                continue
            rest = first[name.end():].strip()
            raw = ([" " * indent + rest] if rest else []) + raw[1:]
            if not raw:
                continue
        if first.startswith((">>>", "+-", "|", "$ ", "%")) or first.startswith("==="):
            continue
        items, current = [], []
        for line in raw:
            stripped = line.strip()
            if _UNDERLINE.match(stripped):
                continue
            if _BULLET.match(stripped) and current:
                items.append(current)
                current = []
            current.append(_BULLET.sub("", stripped) if not current else stripped)
        if current:
            items.append(current)
        for item in items:
            text = rest_inline(" ".join(item))
            if len(text.split()) >= 3 and sum(c.isalpha() for c in text) >= 0.6 * len(text):
                lines.append(text)
        if paragraph.rstrip().endswith("::"):
            skip_deeper_than = indent
    return lines


def python_doc_documents():
    """(name, lines) per reST source file of the Python documentation, in sorted path order."""
    root = "/usr/share/doc/python3.11/html/_sources"
    for path in sorted(glob.glob(f"{root}/**/*.txt", recursive=True)):
        with open(path, encoding="utf-8", errors="replace") as handle:
            yield os.path.relpath(path, root), rest_to_lines(handle.read())


def bible_documents():
    """(book+chapter, verses) for the whole King James Bible, via the ``bible`` program."""
    out = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True,
                         check=True).stdout
    chapters = {}
    for line in out.splitlines():
        match = re.match(r"^(\d?[A-Za-z]+)(\d+):(\d+)\s+(.*\S)", line)
        if match:
            chapters.setdefault(f"{match.group(1)}{match.group(2)}", []).append(match.group(4))
    return list(chapters.items())


def fortune_documents():
    """(file, cookies) per fortune file; one cookie per line, attributions kept."""
    for path in sorted(glob.glob("/usr/share/games/fortunes/*.u8")):
        name = os.path.basename(path)[:-3]
        if name in {"art", "ascii-art", "translate-me"}:
            continue
        with open(path, encoding="utf-8", errors="replace") as handle:
            cookies = handle.read().split("\n%\n")
        lines = []
        for cookie in cookies:
            text = re.sub(r"\s+", " ", cookie.replace("%", " ")).strip()
            if len(text.split()) >= 3 and sum(c.isalpha() for c in text) >= 0.6 * len(text):
                lines.append(text)
        yield name, lines


_GCIDE_ACCENT = re.compile(r"\[(?:=|\.|\"|,)?([A-Za-z])(?:\^|~|`|'|,|=|\.|um|ac|ring|cir|ced|til)?\]")
_GCIDE_LIGATURE = re.compile(r"\[(ae|oe|AE|OE)\]")
_GCIDE_BRACKET = re.compile(r"\[[^\[\]]*\]")
_GCIDE_HEADWORD = re.compile(r"^\S[^\n]*?\\[^\\\n]*\\")
_GCIDE_LABEL = re.compile(r"\((?:[A-Z][A-Za-z]*\.?\s*(?:&\s*)?)+\)")
_GCIDE_AUTHOR = re.compile(r"\s*--\s?[A-Z][\w.'&,]*(?:\s+[A-Z][\w.'&,]*)*\.?(?=\s|$)")
_GCIDE_SENSE = re.compile(r"^(?:\d+\.\s+|\([a-z]\)\s+)+")


def gcide_text(text):
    """GCIDE markup -> plain text: accents ([a^], [aum], [=e]) to their letter, ligatures spelled out,
    every other [...] (etymologies, labels such as [Obs.], sources such as [1913 Webster]) dropped,
    {cross references} kept as words, subject labels such as (Zool.) and --Author attributions dropped."""
    text = _GCIDE_LIGATURE.sub(lambda m: m.group(1), text)
    text = _GCIDE_ACCENT.sub(lambda m: m.group(1), text)
    previous = None
    while previous != text:                     # nested brackets: innermost first
        previous, text = text, _GCIDE_BRACKET.sub(" ", text)
    text = text.replace("{", "").replace("}", "")
    return text


def gcide_documents():
    """(first two letters of the headword, lines) from the GCIDE dictd file: one line per definition,
    note or quotation paragraph; headword lines, synonym lists and the per-letter licence headers
    dropped. Entries keep their dictionary order."""
    with gzip.open("/usr/share/dictd/gcide.dict.dz") as handle:
        data = handle.read().decode("utf-8", errors="replace")
    documents = {}
    document = None
    in_header = True
    for paragraph in re.split(r"\n[ \t]*\n", data):
        if not paragraph.strip():
            continue
        if "Begin file" in paragraph or paragraph.startswith("00-database"):
            in_header = True
            continue
        if not paragraph[0].isspace():
            if not _GCIDE_HEADWORD.match(paragraph):
                continue                        # licence and header prose at the top of each letter
            in_header = False
            document = re.sub(r"[^a-z]", "", paragraph.split("\\", 1)[0].lower())[:2] or "other"
            paragraph = gcide_text(paragraph)
            paragraph = paragraph.split("\n", 1)[1] if "\n" in paragraph else ""
        elif in_header:
            continue
        else:
            paragraph = gcide_text(paragraph)
        text = re.sub(r"\s+", " ", paragraph).strip()
        if not text or text.startswith(("Syn:", "Syn.", "See ", "Note: See")):
            continue
        text = _GCIDE_LABEL.sub(" ", text)
        text = _GCIDE_AUTHOR.sub("", text)
        text = re.sub(r"^Note:\s*", "", text)
        text = _GCIDE_SENSE.sub("", text.strip())
        text = text.replace(" -- ", "; ").replace("--", "; ")
        text = re.sub(r";(\s*;)+", ";", text)
        text = re.sub(r"\s+([,;.:])", r"\1", re.sub(r"\s+", " ", text)).strip(" ;,")
        if ("\\" in text or "[" in text or "]" in text or len(text.split()) < 3
                or sum(c.isalpha() for c in text) < 0.6 * len(text)):
            continue
        documents.setdefault(document, []).append(text)
    return sorted(documents.items())


def wordnet_documents():
    """(part of speech + lexicographer file, lines) from WordNet's data files: per synset its
    definition, then each quoted example sentence, as separate lines."""
    documents = {}
    for pos in ("noun", "verb", "adj", "adv"):
        with open(f"/usr/share/wordnet/data.{pos}", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith(" ") or " | " not in line:
                    continue
                lexfile = line.split(" ", 2)[1]
                gloss = line.split(" | ", 1)[1].strip()
                examples = re.findall(r'"([^"]+)"', gloss)
                definition = re.sub(r'"[^"]*"', "", gloss)
                definition = re.sub(r"\s*;\s*(?=;|$)", "", definition).strip(" ;")
                out = []
                for text in [definition] + examples:
                    text = re.sub(r"\s+", " ", text).strip(" ;")
                    if len(text.split()) < 3:
                        continue
                    text = text[0].upper() + text[1:]
                    if text[-1] not in ".!?":
                        text += "."
                    out.append(text)
                documents.setdefault(f"{pos}.{lexfile}", []).extend(out)
    return sorted(documents.items())


def build_corpus(work, seed):
    """Write ``train.txt``, ``heldout.txt`` (one line of text per line, blocks separated by a blank
    line), ``heldout_<source>.txt`` per source, and ``corpus.json`` (sources, licences, counts) into
    ``work``.

    The held-out split: the blocks of the first model's three sources are shuffled and split
    exactly as for that model (same seed, same 2%), so that neither model has trained on a
    held-out line; the blocks of the sources added later get their own seeded shuffle and 2%."""
    ensure_packages(list(SOURCES))
    seen = set()
    blocks = []                    # (source, document, lines)
    counts = {}
    readers = {"python3.11-doc": python_doc_documents, "bible-kjv": bible_documents,
               "fortunes": fortune_documents, "dict-gcide": gcide_documents, "wordnet-base": wordnet_documents}
    for source, read in readers.items():
        stats = counts.setdefault(source, {"documents": 0, "lines": 0, "duplicates": 0, "characters": 0})
        for name, lines in read():
            kept = []
            for line in lines:
                key = line.lower()
                if key in seen:
                    stats["duplicates"] += 1
                    continue
                seen.add(key)
                kept.append(line)
            if not kept:
                continue
            stats["documents"] += 1
            stats["lines"] += len(kept)
            stats["characters"] += sum(len(line) + 1 for line in kept)
            for start in range(0, len(kept), BLOCK_LINES):
                blocks.append((source, name, kept[start:start + BLOCK_LINES]))
    heldout = []
    for group, group_seed in ((FIRST_SOURCES, seed), (tuple(s for s in SOURCES if s not in FIRST_SOURCES), seed + 1)):
        members = [i for i, block in enumerate(blocks) if block[0] in group]
        order = list(range(len(members)))
        random.Random(group_seed).shuffle(order)
        heldout += [members[i] for i in order[:max(1, round(HELDOUT_FRACTION * len(members)))]]
    heldout = sorted(heldout)
    held = set(heldout)
    train = [i for i in range(len(blocks)) if i not in held]
    random.Random(seed).shuffle(train)      # shuffled, so that rows mix the sources
    work.mkdir(parents=True, exist_ok=True)
    for filename, indices in (("train.txt", train), ("heldout.txt", heldout)):
        with open(work / filename, "w", encoding="utf-8") as handle:
            for index in indices:
                handle.write("\n".join(blocks[index][2]) + "\n\n")
    for source in SOURCES:
        with open(work / f"heldout_{source}.txt", "w", encoding="utf-8") as handle:
            for index in heldout:
                if blocks[index][0] == source:
                    handle.write("\n".join(blocks[index][2]) + "\n\n")
    summary = {
        "sources": {name: {"what": what, "licence": licence, **counts[name],
                           "heldout_blocks": sum(blocks[i][0] == name for i in heldout)}
                    for name, (what, licence) in SOURCES.items()},
        "blocks": len(blocks), "heldout_blocks": len(heldout), "block_lines": BLOCK_LINES, "seed": seed,
        "train_characters": os.path.getsize(work / "train.txt"),
        "heldout_characters": os.path.getsize(work / "heldout.txt"),
    }
    (work / "corpus.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


def read_lines(path):
    """The non-empty lines of a corpus file."""
    with open(path, encoding="utf-8") as handle:
        return [line.rstrip("\n") for line in handle if line.strip()]


# ------------------------------------------------------------------------------------------------
# 2. vocabulary
# ------------------------------------------------------------------------------------------------

def build_vocab(work, vocab_size, seed):
    """Train the sentencepiece unigram model on train.txt and save the tokenizer (spm.model,
    tokenizer_config.json, special_tokens_map.json, added_tokens.json) in ``work/tokenizer``."""
    import sentencepiece as spm

    from pydeberta import DebertaV2Tokenizer

    prefix = work / "spm"
    spm.set_random_generator_seed(seed)
    spm.SentencePieceTrainer.train(
        input=str(work / "train.txt"), model_prefix=str(prefix), model_type="unigram",
        vocab_size=vocab_size, character_coverage=0.9999, byte_fallback=True,
        normalization_rule_name="nmt_nfkc", max_sentence_length=16384,
        input_sentence_size=2_000_000, shuffle_input_sentence=True, seed_sentencepiece_size=1_000_000,
        pad_id=0, bos_id=1, eos_id=2, unk_id=3,
        pad_piece="[PAD]", bos_piece="[CLS]", eos_piece="[SEP]", unk_piece="[UNK]",
        num_threads=1, minloglevel=1,
    )
    tokenizer = DebertaV2Tokenizer(str(prefix) + ".model")
    tokenizer.save_pretrained(work / "tokenizer")
    print(f"vocabulary: {tokenizer.vocab_size} pieces, [MASK] = {tokenizer.mask_token_id}, len = {len(tokenizer)}")


def copy_tokenizer(source, destination):
    """Keep an existing vocabulary: copy a model folder's tokenizer files (byte-identical)."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (Path(source) / name).exists():
            shutil.copy(Path(source) / name, destination / name)
    print(f"tokenizer files copied from {source}")


def load_tokenizer(folder):
    """pydeberta's fast tokenizer from a folder."""
    from pydeberta import DebertaV2TokenizerFast
    return DebertaV2TokenizerFast.from_pretrained(str(folder))


def pack_rows(tokenizer, lines, seq_len=SEQ_LEN):
    """Token ids of ``lines`` back to back, cut into rows of ``seq_len``: [CLS] + seq_len-2 ids + [SEP].
    The last, partial row is dropped. Returns int64 (N, seq_len)."""
    ids = []
    for start in range(0, len(lines), 1000):
        for row in tokenizer(lines[start:start + 1000], add_special_tokens=False)["input_ids"]:
            ids.extend(row)
    body = seq_len - 2
    n = len(ids) // body
    ids = np.asarray(ids[:n * body], dtype=np.int64).reshape(n, body)
    cls = np.full((n, 1), tokenizer.cls_token_id, dtype=np.int64)
    sep = np.full((n, 1), tokenizer.sep_token_id, dtype=np.int64)
    return np.concatenate([cls, ids, sep], axis=1)


def mask_words(line, rng, tokenizer, first_piece, prob=WORD_MASK_PROB):
    """Replace whole words of ``line`` by the literal text ``[MASK]`` (each maskable word with
    probability ``prob``; words that follow a space or start the line and are not glued to an
    apostrophe, hyphen or letter, and whose first piece is not the lone ``▁``: such a target
    taught the model to answer an empty word). Returns (masked text, the words in order)."""
    words = []
    lone = tokenizer.convert_tokens_to_ids("\u2581")

    def replace(match):
        if rng.random() < prob and first_piece(match.group(0)) != lone:
            words.append(match.group(0))
            return tokenizer.mask_token
        return match.group(0)

    return _MASKABLE_WORD.sub(replace, line), words


def pack_word_masked_rows(tokenizer, lines, seed, seq_len=SEQ_LEN, prob=WORD_MASK_PROB):
    """Mask whole words at the text level (``mask_words``), tokenize the masked text exactly as the
    fill-mask pipeline does (so ``[MASK].`` gives ``[MASK] ▁ .``), and pack like ``pack_rows``.
    The target of each ``[MASK]`` is the first piece of its word with a leading ``▁`` (what the
    pipeline's single-token answer is scored against); other positions get -100. Returns
    (ids, targets), both int64 (N, seq_len)."""
    rng = random.Random(seed)
    first = {}

    def first_piece(word):
        if word not in first:
            first[word] = tokenizer(word, add_special_tokens=False)["input_ids"][0]
        return first[word]

    ids, targets = [], []
    mask_id = tokenizer.mask_token_id
    for start in range(0, len(lines), 1000):
        masked, words = zip(*(mask_words(line, rng, tokenizer, first_piece, prob) for line in lines[start:start + 1000]))
        for row, line_words in zip(tokenizer(list(masked), add_special_tokens=False)["input_ids"], words):
            positions = [i for i, token in enumerate(row) if token == mask_id]
            row_targets = [-100] * len(row)
            if len(positions) == len(line_words):
                for i, word in zip(positions, line_words):
                    row_targets[i] = first_piece(word)
            ids.extend(row)
            targets.extend(row_targets)
    body = seq_len - 2
    n = len(ids) // body
    ids = np.asarray(ids[:n * body], dtype=np.int64).reshape(n, body)
    targets = np.asarray(targets[:n * body], dtype=np.int64).reshape(n, body)
    edge = np.full((n, 1), -100, dtype=np.int64)
    cls = np.full((n, 1), tokenizer.cls_token_id, dtype=np.int64)
    sep = np.full((n, 1), tokenizer.sep_token_id, dtype=np.int64)
    return np.concatenate([cls, ids, sep], axis=1), np.concatenate([edge, targets, edge], axis=1)


def tokenize_corpus(work, seed=0):
    """``train_ids.npy`` and ``heldout_ids.npy`` (rows of SEQ_LEN), and the word-masked rows
    ``{train,heldout}_words_ids.npy`` / ``_words_targets.npy``, in ``work``; cached."""
    tokenizer = load_tokenizer(work / "tokenizer")
    for name in ("train", "heldout"):
        path = work / f"{name}_ids.npy"
        if not path.exists():
            t0 = time.time()
            rows = pack_rows(tokenizer, read_lines(work / f"{name}.txt"))
            np.save(path, rows)
            print(f"{name}: {rows.shape[0]} rows x {SEQ_LEN} tokens ({time.time() - t0:.0f} s)", flush=True)
        path = work / f"{name}_words_ids.npy"
        if not path.exists():
            t0 = time.time()
            rows, targets = pack_word_masked_rows(tokenizer, read_lines(work / f"{name}.txt"),
                                                  seed + (0 if name == "train" else 1))
            np.save(work / f"{name}_words_targets.npy", targets)
            np.save(path, rows)
            print(f"{name} (word-masked): {rows.shape[0]} rows, {(targets >= 0).sum()} masked words "
                  f"({time.time() - t0:.0f} s)", flush=True)
    return (np.load(work / "train_ids.npy"), np.load(work / "heldout_ids.npy"),
            np.load(work / "train_words_ids.npy"), np.load(work / "train_words_targets.npy"),
            np.load(work / "heldout_words_ids.npy"), np.load(work / "heldout_words_targets.npy"))


# ------------------------------------------------------------------------------------------------
# 3. pre-training (transformers + torch as the training tool)
# ------------------------------------------------------------------------------------------------

def model_config(tokenizer, layers):
    """The DeBERTa-v3-style configuration (transformers' DebertaV2Config)."""
    from transformers import DebertaV2Config

    vocab = -(-len(tokenizer) // 64) * 64          # room for [MASK], rounded up to a multiple of 64
    return DebertaV2Config(
        vocab_size=vocab, hidden_size=256, num_hidden_layers=layers, num_attention_heads=4,
        intermediate_size=1024, hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
        max_position_embeddings=512, type_vocab_size=0, initializer_range=0.02, layer_norm_eps=1e-7,
        relative_attention=True, max_relative_positions=-1, position_buckets=64, norm_rel_ebd="layer_norm",
        share_att_key=True, pos_att_type=["p2c", "c2p"], position_biased_input=False,
        pad_token_id=tokenizer.pad_token_id, legacy=False, tie_word_embeddings=False,
    )


def mask_for_training(ids, mask_id, vocab_low, vocab_high, generator):
    """BERT masking: 15% of the non-special positions are chosen; of those 80% -> [MASK], 10% -> a
    random piece, 10% kept. Returns (inputs, chosen positions as a bool tensor)."""
    import torch

    special = ids < vocab_low
    chosen = (torch.rand(ids.shape, generator=generator) < MASK_PROB) & ~special
    roll = torch.rand(ids.shape, generator=generator)
    inputs = ids.clone()
    inputs[chosen & (roll < 0.8)] = mask_id
    random_pos = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs[random_pos] = torch.randint(vocab_low, vocab_high, (int(random_pos.sum()),), generator=generator)
    return inputs, chosen


def mlm_loss(model, inputs, targets, chosen):
    """Cross-entropy of the LM head on the chosen positions only (the head is the costly part).
    ``targets`` holds the token to predict at each chosen position (the original token, or for a
    word-masked row the first piece of the masked word)."""
    import torch.nn.functional as F

    hidden = model.deberta(input_ids=inputs).last_hidden_state              # (B, Q, C)
    logits = model.lm_predictions(hidden[chosen], model.deberta.embeddings.word_embeddings)   # (M, V)
    loss = F.cross_entropy(logits.float(), targets[chosen])
    correct = (logits.argmax(-1) == targets[chosen]).float().mean()
    return loss, correct


def lr_factor(step, elapsed, steps, warmup, budget):
    """Learning-rate multiplier: linear warmup over ``warmup`` steps, then linear decay to 0 at
    ``steps`` steps or, with a time ``budget`` (seconds), at ``budget`` seconds of training."""
    decay = (1 - elapsed / budget) if budget else (steps - step) / max(1, steps - warmup)
    return max(0.0, min((step + 1) / warmup, decay))


def load_initial_weights(model, folder):
    """Copy an exported model's weights (``folder/model.safetensors``, float16) into ``model``,
    widened to float32: the warm start."""
    import torch
    from safetensors.torch import load_file

    state = {key: value.to(torch.float32) for key, value in load_file(str(folder / "model.safetensors")).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [key for key in missing if "position_ids" not in key]:
        raise ValueError(f"weights of {folder} do not fit: missing {missing}, unexpected {unexpected}")


def train(work, steps, batch_size, lr, layers, seed, eval_every, save_every, minutes=None, init=None,
          warmup=None):
    """Pre-train the masked LM for ``steps`` steps, or until ``minutes`` of training when given
    (the learning rate then decays in wall-clock time, so the run ends at a low rate whatever the
    machine's load); log to ``train_log.csv``; checkpoint to ``work/checkpoint.pt`` (resumed from
    if present). ``init``: a model folder to warm-start from (its tokenizer must be the work
    folder's). Each batch takes ``WORD_ROWS_FRACTION`` of its rows from the word-masked rows (text-level
    whole-word [MASK], all positions scored are [MASK]) and the rest from the plain rows with
    token-level 80/10/10 masking."""
    import torch
    from transformers import DebertaV2ForMaskedLM

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    tokenizer = load_tokenizer(work / "tokenizer")
    train_ids, heldout_ids, word_ids, word_targets, heldout_word_ids, heldout_word_targets = tokenize_corpus(work, seed)
    config = model_config(tokenizer, layers)
    model = DebertaV2ForMaskedLM(config)
    if init is not None:
        load_initial_weights(model, Path(init))
        print(f"warm start from {init}", flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f} M parameters; {train_ids.shape[0]} training rows", flush=True)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "LayerNorm" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "LayerNorm" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98), eps=1e-6)
    warmup = warmup or max(1, steps // 20)
    budget = minutes * 60 if minutes else None
    generator = torch.Generator().manual_seed(seed)
    eval_generator_seed = seed + 1
    start, elapsed0 = 0, 0.0
    checkpoint = work / "checkpoint.pt"
    log_path = work / "train_log.csv"
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        start, elapsed0 = state["step"], state["elapsed"]
        print(f"resumed at step {start}", flush=True)
        with open(log_path, newline="") as handle:
            rows = [row for row in csv.reader(handle)]
        with open(log_path, "w", newline="") as handle:      # drop rows logged after the checkpoint
            csv.writer(handle).writerows([rows[0]] + [row for row in rows[1:] if int(row[0]) <= start])
    else:
        with open(log_path, "w", newline="") as handle:
            csv.writer(handle).writerow(["step", "elapsed_s", "lr", "train_loss", "train_acc", "heldout_loss",
                                         "heldout_acc", "heldout_word_loss", "heldout_word_acc"])
    spread = np.linspace(0, heldout_ids.shape[0] - 1, 64).astype(int)          # 64 rows from all sources
    eval_rows = torch.from_numpy(heldout_ids[spread])
    spread = np.linspace(0, heldout_word_ids.shape[0] - 1, 64).astype(int)
    eval_word_rows = torch.from_numpy(heldout_word_ids[spread])
    eval_word_targets = torch.from_numpy(heldout_word_targets[spread])
    n_word = round(WORD_ROWS_FRACTION * batch_size)
    n_plain = batch_size - n_word
    n_word_rows = word_ids.shape[0]
    mask_id, vocab_low, vocab_high = tokenizer.mask_token_id, 4, tokenizer.vocab_size
    n_rows = train_ids.shape[0]
    rng = np.random.default_rng(seed)
    permutation = rng.permutation(n_rows)
    t0 = time.time() - elapsed0
    running = []
    model.train()
    for step in range(start, steps):
        factor = lr_factor(step, time.time() - t0, steps, warmup, budget)
        for group in optimizer.param_groups:
            group["lr"] = lr * factor
        epoch, offset = divmod(step * n_plain, n_rows)
        if offset + n_plain > n_rows:
            offset = 0
        order = permutation if epoch == 0 else np.random.default_rng(seed + epoch).permutation(n_rows)
        batch = torch.from_numpy(train_ids[order[offset:offset + n_plain]])
        inputs, chosen = mask_for_training(batch, mask_id, vocab_low, vocab_high, generator)
        targets = batch
        if n_word:
            epoch, offset = divmod(step * n_word, n_word_rows)
            if offset + n_word > n_word_rows:
                offset = 0
            order = np.random.default_rng(seed + 1000 + epoch).permutation(n_word_rows)
            picked = order[offset:offset + n_word]
            word_targets_batch = torch.from_numpy(word_targets[picked])
            inputs = torch.cat([inputs, torch.from_numpy(word_ids[picked])])
            chosen = torch.cat([chosen, word_targets_batch >= 0])
            targets = torch.cat([targets, word_targets_batch.clamp(min=0)])
        loss, correct = mlm_loss(model, inputs, targets, chosen)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        running.append((loss.item(), correct.item()))
        done = step + 1
        last = done == steps or (budget is not None and time.time() - t0 >= budget)
        if done % eval_every == 0 or last:
            model.eval()
            with torch.no_grad():
                g = torch.Generator().manual_seed(eval_generator_seed)
                e_inputs, e_chosen = mask_for_training(eval_rows, mask_id, vocab_low, vocab_high, g)
                e_loss, e_correct = mlm_loss(model, e_inputs, eval_rows, e_chosen)
                w_chosen = eval_word_targets >= 0
                w_loss, w_correct = mlm_loss(model, eval_word_rows, eval_word_targets.clamp(min=0), w_chosen)
            model.train()
            t_loss, t_acc = np.mean(running, axis=0)
            running = []
            row = [done, round(time.time() - t0, 1), f"{lr * factor:.3g}", f"{t_loss:.4f}",
                   f"{t_acc:.4f}", f"{e_loss.item():.4f}", f"{e_correct.item():.4f}",
                   f"{w_loss.item():.4f}", f"{w_correct.item():.4f}"]
            with open(log_path, "a", newline="") as handle:
                csv.writer(handle).writerow(row)
            print(" ".join(map(str, row)), flush=True)
        if done % save_every == 0 or last:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "generator": generator.get_state(), "minutes": minutes, "init": str(init) if init else None,
                        "warmup": warmup, "lr": lr, "word_rows": n_word,
                        "step": done, "elapsed": time.time() - t0, "config": config.to_dict()},
                       str(checkpoint) + ".tmp")
            os.replace(str(checkpoint) + ".tmp", checkpoint)
        if last:
            break


# ------------------------------------------------------------------------------------------------
# 4. export
# ------------------------------------------------------------------------------------------------

def export(work, out):
    """Write the packaged folder: float16 model.safetensors, config.json, tokenizer files, and
    the training curve (csv + png)."""
    import torch
    from transformers import DebertaV2Config, DebertaV2ForMaskedLM

    state = torch.load(work / "checkpoint.pt", weights_only=False)
    config = DebertaV2Config.from_dict(state["config"])
    model = DebertaV2ForMaskedLM(config)
    model.load_state_dict(state["model"])
    model = model.half().eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    os.chmod(out / "model.safetensors", 0o644)
    for name in TOKENIZER_FILES:
        if (work / "tokenizer" / name).exists():
            shutil.copy(work / "tokenizer" / name, out / name)
    shutil.copy(work / "train_log.csv", out / "training_curve.csv")
    plot_curve(out / "training_curve.csv", out / "training_curve.png")
    print(f"exported step {state['step']} to {out}")


def plot_curve(csv_path, png_path):
    """Training and held-out MLM loss against step, if matplotlib is installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no training_curve.png")
        return
    with open(csv_path) as handle:
        rows = list(csv.DictReader(handle))
    steps = [int(r["step"]) for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3), dpi=100)
    ax.plot(steps, [float(r["train_loss"]) for r in rows], label="train (running mean)")
    ax.plot(steps, [float(r["heldout_loss"]) for r in rows], label="held-out (64 rows)")
    if rows and "heldout_word_loss" in rows[0]:
        ax.plot(steps, [float(r["heldout_word_loss"]) for r in rows], label="held-out, words masked in the text")
    ax.set_xlabel("step (batch 32 x 128 tokens)")
    ax.set_ylabel("MLM loss (nats)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path)


# ------------------------------------------------------------------------------------------------
# 5. evaluation with pydeberta
# ------------------------------------------------------------------------------------------------

def masked_accuracy(model, tokenizer, rows, baseline_ids, seed=0, batch_size=16):
    """Mask 15% of the non-special tokens of ``rows`` (all [MASK], ``np.random.default_rng(seed)``)
    and score pydeberta's predictions. Returns dict with masked count, top-1/top-5 accuracy of the
    model and of the baseline (``baseline_ids``: most frequent training tokens, most frequent first)."""
    rng = np.random.default_rng(seed)
    chosen = (rng.random(rows.shape) < MASK_PROB) & (rows >= 4) & (rows < tokenizer.vocab_size)
    inputs = np.where(chosen, tokenizer.mask_token_id, rows)
    top1 = top5 = 0
    for start in range(0, rows.shape[0], batch_size):
        sel = chosen[start:start + batch_size]
        picked = _masked_logits(model, inputs[start:start + batch_size], sel)      # (M, V)
        target = rows[start:start + batch_size][sel]
        best = np.argpartition(-picked, 5, axis=-1)[:, :5]
        top1 += int((picked.argmax(-1) == target).sum())
        top5 += int((best == target[:, None]).any(-1).sum())
    target = rows[chosen]
    n = int(chosen.sum())
    return {"masked_tokens": n, "top1": top1 / n, "top5": top5 / n,
            "baseline_top1": float(np.mean(target == baseline_ids[0])),
            "baseline_top5": float(np.isin(target, baseline_ids[:5]).mean())}


# The probe set: everyday sentences (and a few in the style of each source) with the word(s) that
# count as right. Fixed before the second model's results were seen; an answer counts only if a
# predicted piece is the whole word (case-insensitive), so words the vocabulary splits can only be
# hit through their alternatives.
PROBES = [
    ("The capital of France is [MASK].", ["Paris"]),
    ("I drink coffee every [MASK].", ["morning", "day", "night", "evening"]),
    ("The sun rises in the [MASK].", ["east", "morning"]),
    ("She opened the [MASK] and walked into the room.", ["door"]),
    ("A dog is an [MASK].", ["animal"]),
    ("We drink [MASK] when we are thirsty.", ["water"]),
    ("He wrote a letter to his [MASK].", ["friend", "mother", "father", "wife", "brother", "son", "sister"]),
    ("The cat sat on the [MASK].", ["mat", "floor", "chair", "bed", "table", "ground"]),
    ("We eat breakfast in the [MASK].", ["morning", "kitchen"]),
    ("There are seven days in a [MASK].", ["week"]),
    ("Snow is [MASK] and cold.", ["white", "wet"]),
    ("The opposite of hot is [MASK].", ["cold"]),
    ("Birds can [MASK].", ["fly", "sing"]),
    ("It is dark at [MASK].", ["night"]),
    ("A knife is used to [MASK] bread.", ["cut", "slice"]),
    ("The children went to [MASK] in the morning.", ["school", "church", "bed"]),
    ("Beautiful is better than [MASK].", ["ugly"]),
    ("Please close the [MASK] when you leave.", ["door", "window"]),
    ("An apple is a kind of [MASK].", ["fruit"]),
    ("The king and the [MASK] lived in a castle.", ["queen"]),
    ("The [MASK] barked at the stranger.", ["dog", "dogs"]),
    ("Honesty is the best [MASK].", ["policy"]),
    ("Never put off till tomorrow what you can do [MASK].", ["today"]),
    ("In the beginning God created the heaven and the [MASK].", ["earth"]),
    ("The LORD is my [MASK]; I shall not want.", ["shepherd"]),
    ("And God said, Let there be [MASK]: and there was light.", ["light"]),
    ("The [MASK] statement is used to leave a loop early.", ["break"]),
    ("Use a [MASK] to store key and value pairs.", ["dictionary", "dict", "mapping"]),
    ("A function is defined with the [MASK] keyword.", ["def"]),
    ("The [MASK] is a large animal with a long trunk.", ["elephant"]),
]


def probe(folder):
    """The fill-mask pipeline's top 5 on every probe sentence: list of dicts (sentence, expected,
    top5 [(word, score)], hit1, hit5)."""
    from pydeberta import pipeline

    fill = pipeline("fill-mask", model=str(folder))
    results = []
    for sentence, expected in PROBES:
        top = [(p["token_str"].strip(), round(float(p["score"]), 4)) for p in fill(sentence)]
        wanted = {word.lower() for word in expected}
        hits = [word.lower() in wanted for word, _ in top]
        results.append({"sentence": sentence, "expected": expected, "top5": top,
                        "hit1": hits[0], "hit5": any(hits)})
    return results


def word_masked_accuracy(model, rows, targets, batch_size=16):
    """Top-1 / top-5 of the masked words' first pieces on word-masked rows (text-level [MASK])."""
    top1 = top5 = 0
    for start in range(0, rows.shape[0], batch_size):
        sel = targets[start:start + batch_size] >= 0
        picked = _masked_logits(model, rows[start:start + batch_size], sel)
        target = targets[start:start + batch_size][sel]
        best = np.argpartition(-picked, 5, axis=-1)[:, :5]
        top1 += int((picked.argmax(-1) == target).sum())
        top5 += int((best == target[:, None]).any(-1).sum())
    n = int((targets >= 0).sum())
    return {"masked_words": n, "top1": top1 / n, "top5": top5 / n}


class TorchMaskedLM:
    """transformers' DebertaV2ForMaskedLM on an exported folder (float16 widened to float32), one
    torch thread, called like pydeberta's model (numpy ids in, ``.logits`` numpy out). The bulk
    held-out scoring uses it: measured once on the loaded shared machine, pydeberta's NumPy forward
    took 8.3 s of CPU time per 16 rows against 0.9 s here (one measurement under heavy load, not a
    benchmark), which put ~5,000 rows per model out of a session's reach. tests/test_bundled.py
    checks that pydeberta's logits equal transformers' on this folder and re-scores the shipped
    sample with pydeberta against these figures."""

    def __init__(self, folder):
        import torch
        from transformers import DebertaV2ForMaskedLM

        torch.set_num_threads(1)
        self.model = DebertaV2ForMaskedLM.from_pretrained(str(folder), dtype=torch.float32).eval()

    def __call__(self, input_ids):
        import torch

        with torch.no_grad():
            logits = self.model(input_ids=torch.from_numpy(np.asarray(input_ids))).logits.numpy()
        return type("Output", (), {"logits": logits})

    def masked_logits(self, input_ids, selected):
        """Logits at the ``selected`` positions only, (M, V): the LM head is a third of the work."""
        import torch

        with torch.no_grad():
            hidden = self.model.deberta(input_ids=torch.from_numpy(np.asarray(input_ids))).last_hidden_state
            return self.model.lm_predictions(hidden[torch.from_numpy(selected)],
                                             self.model.deberta.embeddings.word_embeddings).numpy()


def _masked_logits(model, input_ids, selected):
    """(M, V) logits at the selected positions, with the model's shortcut when it has one."""
    if hasattr(model, "masked_logits"):
        return model.masked_logits(input_ids, selected)
    return model(input_ids=input_ids).logits[selected]


def score_folder(work, folder, tokenizer, baseline_ids, seed):
    """Held-out figures of one exported folder: token-level (per source, and pooled over the
    sources: each source's held-out lines packed and masked on their own), word-level (text-level
    [MASK]) and the probe set. Cached in ``work`` by the weights' SHA-256 (the eval is slow on a
    shared machine and the previous model's figures do not change)."""
    import hashlib

    digest = hashlib.sha256((Path(folder) / "model.safetensors").read_bytes()).hexdigest()[:16]
    cache = work / f"scores_{digest}.json"
    model = TorchMaskedLM(folder)
    if cache.exists():
        return model, json.loads(cache.read_text())
    figures = {"heldout_by_source": {}}
    for source in SOURCES:
        lines = read_lines(work / f"heldout_{source}.txt")
        figures["heldout_by_source"][source] = {
            "lines": len(lines), **masked_accuracy(model, tokenizer, pack_rows(tokenizer, lines), baseline_ids, seed)}
    parts = figures["heldout_by_source"].values()
    n = sum(part["masked_tokens"] for part in parts)
    figures["heldout"] = {"lines": sum(part["lines"] for part in parts), "masked_tokens": n,
                          **{key: sum(part[key] * part["masked_tokens"] for part in parts) / n
                             for key in ("top1", "top5", "baseline_top1", "baseline_top5")}}
    figures["heldout_words"] = word_masked_accuracy(model, np.load(work / "heldout_words_ids.npy"),
                                                    np.load(work / "heldout_words_targets.npy"))
    probes = probe(folder)
    figures["probes"] = {"hit1": sum(p["hit1"] for p in probes), "hit5": sum(p["hit5"] for p in probes),
                         "n": len(probes), "sentences": probes}
    cache.write_text(json.dumps(figures) + "\n")
    return model, figures


def evaluate(work, out, seed, before=None):
    """Held-out accuracy of the exported folder with pydeberta, and of the ``before`` folder (the
    previous model) on the same split; writes eval_results.json and heldout_sample.txt into ``out``."""
    tokenizer = load_tokenizer(out)
    train_ids = np.load(work / "train_ids.npy")
    counts = np.bincount(train_ids[:, 1:-1].ravel(), minlength=tokenizer.vocab_size)
    counts[:4] = 0
    baseline_ids = np.argsort(-counts, kind="stable")[:5]
    model, figures = score_folder(work, out, tokenizer, baseline_ids, seed)
    blocks = (work / "heldout.txt").read_text(encoding="utf-8").strip("\n").split("\n\n")
    per_block = -(-SAMPLE_LINES // len(blocks))             # ceil
    sample_lines = [line for block in blocks for line in block.split("\n")[:per_block]]
    (out / "heldout_sample.txt").write_text("\n".join(sample_lines) + "\n", encoding="utf-8")
    sample = masked_accuracy(model, tokenizer, pack_rows(tokenizer, sample_lines), baseline_ids, seed)
    results = {
        "protocol": f"rows of {SEQ_LEN} tokens ([CLS] + {SEQ_LEN - 2} + [SEP]) packed from the held-out lines "
                    "(per source; the heldout figures pool the sources); "
                    f"{MASK_PROB:.0%} of non-special tokens replaced by [MASK] with numpy default_rng({seed}); "
                    "top-k accuracy of the original token; scored with transformers (float32, one torch thread) "
                    "on the exported folder, whose logits tests/test_bundled.py checks against pydeberta's; "
                    "probes with pydeberta's fill-mask pipeline",
        "words_protocol": f"held-out lines with {WORD_MASK_PROB:.0%} of the maskable words replaced by the text "
                          f"[MASK] (python random.Random({seed + 1})), tokenized as the fill-mask pipeline does and "
                          "packed into the same rows; top-k accuracy of the word's first piece",
        "baseline_token_ids": [int(i) for i in baseline_ids],
        "baseline_tokens": [tokenizer.convert_ids_to_tokens(int(i)) for i in baseline_ids],
        **figures,
        "heldout_sample": {"file": "heldout_sample.txt", "lines": len(sample_lines), **sample},
        "mask_seed": seed,
    }
    if before is not None:
        _, results["before"] = score_folder(work, Path(before), tokenizer, baseline_ids, seed)
        results["before"] = {"folder": "the previous pydeberta/tiny (git history), same held-out split",
                             **results["before"]}
    (out / "eval_results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k not in ("probes",)}, indent=1)[:6000])


# ------------------------------------------------------------------------------------------------
# 6. model card
# ------------------------------------------------------------------------------------------------

HEADLINE = "Raise an [MASK] if the argument is invalid."    # the card's first example (see the card)

FIRST_RUN = ("the first model (the previous `pydeberta/tiny`): the three first sources only, vocabulary "
             "trained here, random initialisation, token-level masking only, peak learning rate 1e-3, "
             "1,400 steps of batch 32 in 49 minutes (its curve and card are in the git history)")
SECOND_RUN = ("warm-started from the first, GCIDE and WordNet added, word-masked rows as below, peak learning "
              "rate 5e-4, 499 steps of batch 32 in 70 minutes (commit 3fad530, with that commit's "
              "`tools/train_tiny.py`); its word-masked rows also masked words whose first piece is the lone "
              "`▁`, which taught the model an empty word as an answer before punctuation (\"Beautiful is "
              "better than [MASK].\" answered `` first)")
SECOND_RUN_MINUTES = 70


def write_card(work, out, args):
    """Write ``out/README.md`` from corpus.json, the training log, config.json and eval_results.json."""
    import torch

    corpus = json.loads((work / "corpus.json").read_text())
    results = json.loads((out / "eval_results.json").read_text())
    config = json.loads((out / "config.json").read_text())
    with open(out / "training_curve.csv") as handle:
        log = list(csv.DictReader(handle))
    last = log[-1]
    train_rows = np.load(work / "train_ids.npy", mmap_mode="r").shape[0]
    word_rows = np.load(work / "train_words_ids.npy", mmap_mode="r").shape[0]
    n_params = _count_parameters(out)
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    mask_id = load_tokenizer(out).mask_token_id
    full, sample = results["heldout"], results["heldout_sample"]
    before = results.get("before")
    state = torch.load(work / "checkpoint.pt", weights_only=False, map_location="cpu")
    minutes, n_word, warmup = state.get("minutes"), state.get("word_rows"), state.get("warmup")
    run_minutes = float(last["elapsed_s"]) / 60
    examples = _fill_mask_examples(out)
    source_rows = "\n".join(
        f"| `{name}` | {info['what']} | {info['licence']} | {info['documents']:,} | {info['lines']:,} | "
        f"{info['characters'] / 1e6:.1f} M | {info['heldout_blocks']} |" for name, info in corpus["sources"].items())
    every = max(1, len(log) // 12)
    curve_rows = "\n".join(
        f"| {r['step']} | {float(r['elapsed_s']) / 60:.1f} | {r['lr']} | {float(r['train_loss']):.3f} | "
        f"{float(r['heldout_loss']):.3f} | {float(r['heldout_acc']):.3f} | {float(r['heldout_word_acc']):.3f} |"
        for i, r in enumerate(log) if i % every == every - 1 or i == len(log) - 1)

    def pair(key, split):
        after_value = split(results)[key]
        return (f"{split(before)[key]:.3f} | {after_value:.3f}" if before else f"{after_value:.3f}")

    compare_rows = [
        f"| held-out, token-level [MASK] (all sources, {full['masked_tokens']:,} tokens) | "
        f"{pair('top1', lambda r: r['heldout'])} | {pair('top5', lambda r: r['heldout'])} |"]
    for name in corpus["sources"]:
        info = results["heldout_by_source"][name]
        compare_rows.append(f"| &nbsp; of which `{name}` ({info['masked_tokens']:,} tokens) | "
                            f"{pair('top1', lambda r: r['heldout_by_source'][name])} | "
                            f"{pair('top5', lambda r: r['heldout_by_source'][name])} |")
    words = results["heldout_words"]
    compare_rows.append(f"| held-out, whole words masked in the text ({words['masked_words']:,} words) | "
                        f"{pair('top1', lambda r: r['heldout_words'])} | {pair('top5', lambda r: r['heldout_words'])} |")
    probes = results["probes"]
    if before:
        compare_rows.append(f"| probe sentences ({probes['n']}), hits | {before['probes']['hit1']} | "
                            f"{probes['hit1']} | {before['probes']['hit5']} | {probes['hit5']} |")
    compare_rows = "\n".join(compare_rows)

    def top(entry):
        word, score = entry["top5"][0]
        mark = " ✓" if entry["hit1"] else (" (top 5 ✓)" if entry["hit5"] else "")
        return f"`{word or '▁'}` {score:.2f}{mark}"

    worse = ""
    if before:
        dropped = [f"`{name}` top-1 {before['heldout_by_source'][name]['top1']:.3f} -> "
                   f"{results['heldout_by_source'][name]['top1']:.3f}"
                   for name in corpus["sources"]
                   if results["heldout_by_source"][name]["top1"] < before["heldout_by_source"][name]["top1"]]
        if dropped:
            worse = (" **Worse than before:** " + "; ".join(dropped) + f"; probe top-1 hits "
                     f"{before['probes']['hit1']} -> {probes['hit1']}. The second and third runs made only "
                     f"499 and {last['step']} steps (the machine was loaded), most of them on the new "
                     "dictionary text.")
    probe_rows = "\n".join(
        f"| {entry['sentence'].replace('[MASK]', '`[MASK]`')} | {', '.join(entry['expected'])} | "
        + (f"{top(old)} | " if before else "") + f"{top(entry)} |"
        for entry, old in zip(probes["sentences"], before["probes"]["sentences"] if before else probes["sentences"]))
    text = f"""# pydeberta/tiny

A small DeBERTa-v3-style masked language model trained by the pydeberta project itself, so that
pydeberta can run a real model on a machine with no internet and no model hub. It ships inside
the package and every `from_pretrained`, `pipeline` and the command line accept the name
`"pydeberta/tiny"`:

```python
import pydeberta
fill = pydeberta.pipeline("fill-mask", model="pydeberta/tiny")
fill("{HEADLINE}")
```

(`object` 0.17, then the right word, `exception` 0.06: this sentence was chosen after trying about
thirty; no everyday sentence tried had the right word first.)

It is a teaching and testing model: {n_params / 1e6:.1f} M parameters trained for
{49 + SECOND_RUN_MINUTES + run_minutes:.0f} minutes in all on one CPU thread of a shared machine. It knows something of
the style of the King James Bible, the Python documentation, fortune cookies and two dictionaries
(the 1913 Webster's in GCIDE and WordNet's glosses); it does **not** answer everyday sentences
well: {probes['hit1']} of the {probes['n']} probe sentences below have the expected word first. Do not
fine-tune it for anything that matters.

## Data

English text from five Debian packages (bookworm), built by `tools/train_tiny.py --step corpus`:

| package | text | licence | documents | lines | characters | held-out blocks |
|---|---|---|---:|---:|---:|---:|
{source_rows}

reST markup of the Python documentation is stripped roughly (directives other than admonitions,
literal blocks, doctests and tables dropped; roles, links and literals reduced to their text).
GCIDE's markup is stripped too: accent codes such as `[a^]` become their letter, etymologies,
labels (`[Obs.]`, `(Zool.)`), source tags (`[1913 Webster]`), `--Author` attributions, headword
lines and synonym lists are dropped; definitions, usage notes and quotations stay, one paragraph
per line. WordNet gives each synset's definition and each of its quoted example sentences as
separate lines. One paragraph, verse, cookie, definition or example per line; exact
(case-insensitive) duplicate lines dropped. **The corpus holds GPL-2+ text (GCIDE)**; the
weights are trained from it, and the card says so rather than deciding what that implies.

Lines are grouped into blocks of {corpus['block_lines']} consecutive lines of one document. The
held-out split keeps the first model's: the blocks of the first three sources are shuffled with
seed {corpus['seed']} and 2% held out exactly as before (so neither model has trained on a held-out
line); the blocks of GCIDE and WordNet get their own shuffle (seed {corpus['seed'] + 1}) and 2%. In all
{corpus['heldout_blocks']} of {corpus['blocks']:,} blocks are held out
({corpus['heldout_characters'] / 1e3:.0f} k characters); the training split has
{corpus['train_characters'] / 1e6:.1f} M characters. `heldout_sample.txt` holds the first
{max(1, sample['lines'] // corpus['heldout_blocks'])} line(s) of every held-out block ({sample['lines']} lines).

## Tokenizer

The first model's vocabulary, kept byte-identical (`--init` copies the tokenizer files):
sentencepiece unigram, {mask_id:,} pieces trained on the first three sources (`nmt_nfkc`, byte
fallback, character coverage 0.9999), with DeBERTa's layout: `[PAD]`=0, `[CLS]`=1, `[SEP]`=2,
`[UNK]`=3, then `[MASK]`={mask_id} as an added token. The embedding matrix has
{config['vocab_size']:,} rows ({mask_id + 1:,} rounded up to a multiple of 64; the extra rows are never used).
Both pydeberta's and transformers' `DebertaV2Tokenizer` read these files to the same ids.

Note how a mask before punctuation is tokenized: `[MASK]` is an added token, so the text after it
is a new piece of text and sentencepiece gives it its own word-start marker: `than [MASK].` is
`▁than`, `[MASK]`, `▁`, `.` (transformers does the same). Text never holds a lone `▁` before
punctuation, so token-level masking never shows the model this input; the recipe below adds rows
masked in the text for that reason.

## Model

`DebertaV2ForMaskedLM`, DeBERTa-v3 layout: {config['num_hidden_layers']} layers, hidden
{config['hidden_size']}, {config['num_attention_heads']} heads, FFN {config['intermediate_size']}
(GELU), relative attention with {config['position_buckets']} log buckets (`max_relative_positions=-1`,
so a span of {config['position_buckets']} and {2 * config['position_buckets']} relative embeddings),
`pos_att_type=["p2c", "c2p"]`, `share_att_key=True`, `norm_rel_ebd="layer_norm"`, no absolute
positions, no token types, `legacy=False` MLM head (dense + LayerNorm, then the word embeddings
and a bias), untied head copy as transformers 4.57 requires. {n_params / 1e6:.2f} M parameters,
stored as float16 (`model.safetensors`); pydeberta and transformers widen them to float32.
The folder is {size / 1e6:.1f} MB.

## Recipe

Three runs of `tools/train_tiny.py --step train` with transformers {_version('transformers')} and torch
{_version('torch')} as the training tool only. First run: {FIRST_RUN}. Second run: {SECOND_RUN}. This
model is the third run, warm-started from the second model's float16 weights (widened to float32;
fresh optimizer):

- plain rows of {SEQ_LEN} tokens (`[CLS]` + {SEQ_LEN - 2} tokens + `[SEP]`) packed from the tokenized
  training lines: {train_rows:,} rows, {train_rows * SEQ_LEN / 1e6:.1f} M tokens, with token-level
  masking: {MASK_PROB:.0%} of the non-special tokens chosen; 80% replaced by `[MASK]`, 10% by a random
  piece, 10% kept;
- word-masked rows: the same training lines with {WORD_MASK_PROB:.0%} of the words (a run of letters
  after a space or at the start of a line, not glued to an apostrophe or hyphen, and whose first piece
  is not the lone `▁`) replaced in the
  *text* by `[MASK]`, then tokenized with pydeberta's tokenizer exactly as the fill-mask pipeline
  does (so `[MASK].` gives `[MASK] ▁ .`) and packed the same way: {word_rows:,} rows. The target of
  each `[MASK]` is the first piece of its word with a word-start marker (what a single-mask
  fill-mask answer is scored against); one fixed masking, seeded;
- each batch of {args.batch_size}: {args.batch_size - n_word} plain rows and {n_word} word-masked rows;
  cross-entropy on the chosen positions, the LM head on those positions only;
- AdamW, peak learning rate {state.get('lr', args.lr):g}, betas 0.9/0.98, eps 1e-6, weight decay 0.01
  (not on biases and LayerNorm), gradient clipping 1.0, linear warmup over {warmup} steps, then linear
  decay towards 0 over a wall-clock budget of {minutes:g} minutes (`--minutes {minutes:g}`; the
  shared machine's load makes the speed unpredictable); dropout 0.1; seed {args.seed};
- this run stopped at step {last['step']} after {run_minutes:.0f} minutes
  ({int(last['step']) * (args.batch_size - n_word) / train_rows:.2f} passes over the plain rows,
  {int(last['step']) * n_word / word_rows:.2f} over the word-masked rows), one torch thread under
  `nice -n 10` on a 2-core machine whose other core, and part of this one, ran other jobs.

## Training curve

![MLM loss](training_curve.png)

Third run, every {25 * every} steps (full log: `training_curve.csv`; train loss is the running mean
since the previous row over both kinds of rows; held-out loss and top-1 are on 64 held-out rows
spread over the split with 80/10/10 masking; word top-1 on 64 word-masked held-out rows):

| step | minutes | lr | train loss | held-out loss | held-out top-1 | held-out word top-1 |
|---:|---:|---:|---:|---:|---:|---:|
{curve_rows}

## Before and after

`tools/train_tiny.py --step eval --before <previous model folder>`, on the same held-out split for
both models; the held-out rows are scored with transformers (float32, one torch thread) on the
exported folders, because pydeberta's NumPy forward measured much slower than torch's on the
loaded shared machine (8.3 s against 0.9 s of CPU per 16 rows, measured once) for ~5,000 rows per
model (`tests/test_bundled.py` checks pydeberta's logits against transformers' and
re-scores `heldout_sample.txt` with pydeberta); the probes go through pydeberta's fill-mask pipeline. Token-level: each source's held-out lines
packed into {SEQ_LEN}-token rows as in training (the all-sources row pools the sources), {MASK_PROB:.0%} of the non-special tokens replaced by `[MASK]`
(all of them, no 80/10/10), chosen with `numpy.random.default_rng({results['mask_seed']})`, accuracy
of the original token among the top 1 and top 5. Word-level: {WORD_MASK_PROB:.0%} of the held-out
words masked in the text as in the recipe (a different seed from training), accuracy of the
word's first piece: this is the input the fill-mask pipeline sees. Probes: the pipeline's answer
on the fixed sentences below.

| | top-1 before | top-1 after | top-5 before | top-5 after |
|---|---:|---:|---:|---:|
{compare_rows}

The new sources make the split harder for the first model, which never saw them; its figures on
the first three sources are the fair comparison there.{worse} The baseline that always predicts the most
frequent training tokens ({", ".join(f"`{t}`" for t in results['baseline_tokens'])}; top-1: the first,
top-5: all five) scores top-1 {full['baseline_top1']:.3f} and top-5 {full['baseline_top5']:.3f}
on the token-level split; the model's top-1 is {full['top1'] / full['baseline_top1']:.1f} times that.

| split (this model) | masked tokens | model top-1 | model top-5 | baseline top-1 | baseline top-5 |
|---|---:|---:|---:|---:|---:|
| held-out (2%, {full['lines']:,} lines) | {full['masked_tokens']:,} | {full['top1']:.3f} | {full['top5']:.3f} | {full['baseline_top1']:.3f} | {full['baseline_top5']:.3f} |
| `heldout_sample.txt` ({sample['lines']} lines) | {sample['masked_tokens']:,} | {sample['top1']:.3f} | {sample['top5']:.3f} | {sample['baseline_top1']:.3f} | {sample['baseline_top5']:.3f} |

`tests/test_bundled.py` re-scores `heldout_sample.txt` and checks its row of this table. The
figures are in `eval_results.json`.

### Probe sentences

Fixed in `tools/train_tiny.py` (`PROBES`) before the second model's results were seen. An answer
counts when a predicted piece is one of the expected words (case-insensitive); ✓ marks a top-1 hit,
"(top 5 ✓)" an expected word elsewhere in the top five. Hits: before {before['probes']['hit1'] if before else '-'} top-1 /
{before['probes']['hit5'] if before else '-'} top-5, after {probes['hit1']} top-1 / {probes['hit5']} top-5 of {probes['n']}.

| sentence | expected | before: top-1 | after: top-1 |
|---|---|---|---|
{probe_rows}

## Examples

`pydeberta.pipeline("fill-mask", model="pydeberta/tiny")`, top 5:

{examples}

## Reproduce

```sh
git show c3a8812:pydeberta/models/tiny/...   # the first model, into a folder OLD
git show 3fad530:pydeberta/models/tiny/...   # the second model, into a folder SECOND (made from OLD with
                                             # 3fad530's tools/train_tiny.py --step train --init OLD --minutes 70)
python tools/train_tiny.py --step corpus   # apt-get install python3.11-doc bible-kjv fortunes dict-gcide wordnet-base if missing
python tools/train_tiny.py --step vocab --init SECOND               # keeps the first model's tokenizer
python tools/train_tiny.py --step train --init SECOND --steps {args.steps} --minutes {minutes:g} --warmup {warmup} --lr {state.get('lr', args.lr):g}
python tools/train_tiny.py --step export
python tools/train_tiny.py --step eval --before OLD                 # also writes this card
```

Corpus, masks and held-out split are deterministic; the weights depend on torch's kernels and,
through the wall-clock schedule, on the machine's load.
"""
    (out / "README.md").write_text(text, encoding="utf-8")
    print(f"wrote {out / 'README.md'}")


EXAMPLES = [
    "Raise an [MASK] if the argument is invalid.",
    "In the beginning God created the heaven and the [MASK].",
    "For God so loved the [MASK], that he gave his only begotten Son.",
    "Use a [MASK] to store key and value pairs.",
    "The cost of living has gone [MASK] this year.",
    "Beautiful is better than [MASK].",
]


def _fill_mask_examples(folder):
    """Markdown lines: each example sentence and the pipeline's top 5 for its mask."""
    from pydeberta import pipeline
    fill = pipeline("fill-mask", model=str(folder))
    lines = []
    for sentence in EXAMPLES:
        predictions = fill(sentence)
        tokens = ", ".join(f"`{p['token_str'].strip() or p['token_str']}` {p['score']:.2f}" for p in predictions)
        lines.append(f"- {sentence.replace('[MASK]', '`[MASK]`')} -> {tokens}")
    return "\n".join(lines)


def _count_parameters(folder):
    """Number of stored parameters in ``folder/model.safetensors``."""
    from safetensors import safe_open
    with safe_open(str(folder / "model.safetensors"), "np") as handle:
        return sum(int(np.prod(handle.get_slice(key).get_shape())) for key in handle.keys())


def _version(package):
    from importlib.metadata import version
    return version(package)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--step", required=True, choices=["corpus", "vocab", "train", "export", "eval", "card", "all"])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="intermediate files (default %(default)s)")
    parser.add_argument("--out", type=Path, default=PACKAGE_FOLDER, help="the exported folder (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=1400)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--minutes", type=float, default=None,
                        help="train for this long (wall clock, resumed time included), the learning rate "
                             "decaying to 0 at the end; --steps is then only an upper bound")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--before", type=Path, default=None,
                        help="eval: also score this folder (the previous model) on the same held-out split")
    parser.add_argument("--warmup", type=int, default=None, help="warmup steps (default: --steps / 20)")
    parser.add_argument("--init", type=Path, default=None,
                        help="warm-start from this exported model folder (same tokenizer); its tokenizer "
                             "files are copied to the work folder when the work folder has none")
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--save-every", type=int, default=100)
    args = parser.parse_args(argv)
    steps = ["corpus", "vocab", "train", "export", "eval"] if args.step == "all" else [args.step]
    for step in steps:
        t0 = time.time()
        if step == "corpus":
            build_corpus(args.work, args.seed)
        elif step == "vocab":
            if args.init is not None:
                copy_tokenizer(args.init, args.work / "tokenizer")
            else:
                build_vocab(args.work, args.vocab_size, args.seed)
        elif step == "train":
            train(args.work, args.steps, args.batch_size, args.lr, args.layers, args.seed,
                  args.eval_every, args.save_every, args.minutes, args.init, args.warmup)
        elif step == "export":
            export(args.work, args.out)
        elif step == "eval":
            evaluate(args.work, args.out, args.seed, args.before)
            write_card(args.work, args.out, args)
        elif step == "card":
            write_card(args.work, args.out, args)
        print(f"[{step}] {time.time() - t0:.0f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
