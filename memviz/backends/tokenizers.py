"""The recurrent family's tokenizers: `char`, `word` and `tokenizers` (a Hugging Face tokenizer.json).

Each maps text to ids and counts what it had to read as its unknown token. Vocabulary entries that
can never come out of the tokenizer (a two-character entry under `char`, an upper-case word under a
lower-casing `word` rule, a duplicate) are refused when the model loads: a model whose embedding rows
can never be read is a mistake worth one clear line, not a silent hole.

The `word` rule: the text is lower-cased (if `lowercase`), what the regex `strip` matches is deleted
(if given: Keras's punctuation stripping), then the tokens are the matches of the
regular expression `pattern`, left to right (Python's `re.findall`; whatever no match covers,
whitespace by default, is dropped). The default pattern `\\w+|[^\\w\\s]` makes words and single
punctuation marks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Protocol

from memviz.backends.base import Encoding
from memviz.errors import CheckpointError

TOKENIZER_KINDS = ("char", "word", "tokenizers")
DEFAULT_WORD_PATTERN = r"\w+|[^\w\s]"
UNK_CANDIDATES = ("[UNK]", "<unk>", "<UNK>", "\ufffd", "<oov>", "<OOV>")


class Tokenizer(Protocol):
    kind: str
    tokens: list[str]  # token i's text

    def encode(self, text: str) -> Encoding: ...

    def to_json(self) -> dict: ...


def _check_tokens(tokens: object, where: str) -> list[str]:
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise CheckpointError(f"{where}: expected a list of strings as the tokens")
    if not tokens:
        raise CheckpointError(f"{where}: empty token list")
    return tokens


def _check_index(value: object, n: int, what: str, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise CheckpointError(f"{where}: {what} must be an integer index, got {value!r}")
    if not 0 <= value < n:
        raise CheckpointError(f"{where}: {what} index {value} outside 0..{n - 1}")
    return value


def _no_duplicates(tokens: list[str], skip: set[int], where: str) -> None:
    seen: dict[str, int] = {}
    for i, t in enumerate(tokens):
        if i in skip:
            continue
        if t in seen:
            raise CheckpointError(f"{where}: token {i} {t!r} repeats token {seen[t]}: it can never be read")
        seen[t] = i


class CharTokenizer:
    """One token per character; characters outside the vocabulary map to `unk` and are counted."""

    kind = "char"

    def __init__(
        self, tokens: list[str], unk: int, pad: int | None = None, where: str = "vocab.json"
    ) -> None:
        tokens = _check_tokens(tokens, where)
        unk = _check_index(unk, len(tokens), "unk", where)
        if unk is None:
            raise CheckpointError(f"{where}: a char vocabulary needs an unk index")
        self.pad = _check_index(pad, len(tokens), "pad", where)
        self.tokens = tokens
        self.unk = unk
        specials = {unk} | ({self.pad} if self.pad is not None else set())
        for i, t in enumerate(tokens):
            if i not in specials and len(t) != 1:
                raise CheckpointError(
                    f"{where}: token {i} {t!r} is not one character: the char tokenizer can never read it"
                )
        _no_duplicates(tokens, specials, where)
        self.index = {t: i for i, t in enumerate(tokens) if i != self.pad}
        self.index.setdefault(tokens[unk], unk)

    @classmethod
    def from_text(cls, text: str, unk_token: str = "\ufffd") -> CharTokenizer:
        chars = sorted(set(text) - {unk_token})
        return cls([unk_token, *chars], unk=0)

    def encode(self, text: str) -> Encoding:
        ids = [self.index.get(ch, self.unk) for ch in text]
        unknown = sum(1 for ch in text if ch not in self.index)
        return Encoding(ids=ids, unknown_count=unknown)

    def to_json(self) -> dict:
        data: dict = {"tokens": self.tokens, "unk": self.unk}
        if self.pad is not None:
            data["pad"] = self.pad
        return data


class WordTokenizer:
    """Lower-case (optionally), split by a regex, look each piece up; unknown pieces read as `unk`.

    `unk` None (a Keras Tokenizer without an oov_token): unknown pieces are skipped, as Keras does,
    and still counted.
    """

    kind = "word"

    def __init__(
        self,
        tokens: list[str],
        unk: int | None,
        pattern: str = DEFAULT_WORD_PATTERN,
        lowercase: bool = True,
        pad: int | None = None,
        where: str = "vocab.json",
        limit: int | None = None,
        strip: str | None = None,
    ) -> None:
        tokens = _check_tokens(tokens, where)
        self.unk = _check_index(unk, len(tokens), "unk", where)
        self.pad = _check_index(pad, len(tokens), "pad", where)
        if not isinstance(lowercase, bool):
            raise CheckpointError(f"{where}: lowercase must be true or false")
        try:
            self.regex = re.compile(pattern)
        except (re.error, TypeError) as exc:
            raise CheckpointError(f"{where}: bad word pattern {pattern!r} ({exc})") from None
        try:
            self.strip_regex = re.compile(strip) if strip else None
        except (re.error, TypeError) as exc:
            raise CheckpointError(f"{where}: bad strip pattern {strip!r} ({exc})") from None
        self.tokens, self.pattern, self.lowercase, self.strip = tokens, pattern, lowercase, strip
        # Keras's Tokenizer(num_words=N) reads only the N-1 most frequent words; the rest are unknown.
        self.limit = limit if limit is not None else len(tokens)
        specials = {i for i in (self.unk, self.pad) if i is not None}
        for i, t in enumerate(tokens):
            if i in specials or i >= self.limit:
                continue
            if self.lowercase and t.lower() != t:
                raise CheckpointError(
                    f"{where}: token {i} {t!r} has upper case but text is lower-cased: it can never be read"
                )
            if self.strip_regex is not None and self.strip_regex.sub("", t) != t:
                raise CheckpointError(
                    f"{where}: token {i} {t!r} holds characters the rule strips: it can never be read"
                )
            if not self.regex.fullmatch(t) or self.regex.findall(t) != [t]:
                raise CheckpointError(
                    f"{where}: token {i} {t!r} is not one match of the word pattern {pattern!r}: "
                    "it can never be read"
                )
        _no_duplicates(tokens, specials, where)
        self.index = {t: i for i, t in enumerate(tokens) if i not in specials and i < self.limit}

    def pieces(self, text: str) -> list[str]:
        text = text.lower() if self.lowercase else text
        if self.strip_regex is not None:
            text = self.strip_regex.sub("", text)
        return self.regex.findall(text)

    def encode(self, text: str) -> Encoding:
        ids: list[int] = []
        unknown = 0
        for piece in self.pieces(text):
            i = self.index.get(piece)
            if i is None:
                unknown += 1
                if self.unk is None:
                    continue
                i = self.unk
            ids.append(i)
        return Encoding(ids=ids, unknown_count=unknown)

    def to_json(self) -> dict:
        data: dict = {
            "tokens": self.tokens,
            "unk": self.unk,
            "pattern": self.pattern,
            "lowercase": self.lowercase,
        }
        if self.pad is not None:
            data["pad"] = self.pad
        if self.limit != len(self.tokens):
            data["limit"] = self.limit
        if self.strip:
            data["strip"] = self.strip
        return data


class HFTokenizer:
    """A Hugging Face `tokenizers` tokenizer.json; unknown = ids equal to its unk token's id."""

    kind = "tokenizers"

    def __init__(self, tokenizer, vocab_size: int, where: str = "tokenizer.json") -> None:
        self._tok = tokenizer
        n = tokenizer.get_vocab_size(with_added_tokens=True)
        if n > vocab_size:
            raise CheckpointError(
                f"{where}: the tokenizer has {n} tokens but the model's embedding only {vocab_size}"
            )
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        self.tokens = [""] * vocab_size
        for text, i in vocab.items():
            self.tokens[i] = tokenizer.decode([i], skip_special_tokens=False) or text
        unk = getattr(tokenizer.model, "unk_token", None)
        self.unk = tokenizer.token_to_id(unk) if isinstance(unk, str) else None

    @classmethod
    def from_file(cls, path: Path, vocab_size: int) -> HFTokenizer:
        from tokenizers import Tokenizer as RustTokenizer

        if not path.is_file():
            raise CheckpointError(f"{path.parent}: missing {path.name} (the tokenizers-library tokenizer)")
        try:
            tok = RustTokenizer.from_file(str(path))
        except Exception as exc:  # the Rust side raises plain Exception on a broken file
            raise CheckpointError(f"{path}: not a tokenizers tokenizer.json ({str(exc)[:120]})") from None
        return cls(tok, vocab_size, where=str(path))

    def encode(self, text: str) -> Encoding:
        ids = self._tok.encode(text, add_special_tokens=False).ids
        unknown = sum(1 for i in ids if i == self.unk) if self.unk is not None else 0
        return Encoding(ids=list(ids), unknown_count=unknown)

    def to_json_string(self) -> str:
        return self._tok.to_str()

    def to_json(self) -> dict:
        return json.loads(self._tok.to_str())


def tokenizer_from_vocab(
    kind: str, vocab: dict, vocab_size: int, where: str
) -> CharTokenizer | WordTokenizer:
    """A char or word tokenizer from vocab.json's object."""
    tokens = vocab.get("tokens")
    if kind == "char":
        tok: CharTokenizer | WordTokenizer = CharTokenizer(tokens, vocab.get("unk"), vocab.get("pad"), where)
    else:
        limit = vocab.get("limit")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise CheckpointError(f"{where}: limit must be a positive integer")
        tok = WordTokenizer(
            tokens,
            vocab.get("unk"),
            pattern=vocab.get("pattern", DEFAULT_WORD_PATTERN),
            lowercase=vocab.get("lowercase", True),
            pad=vocab.get("pad"),
            where=where,
            limit=limit,
            strip=vocab.get("strip"),
        )
    if len(tok.tokens) != vocab_size:
        raise CheckpointError(f"{where}: has {len(tok.tokens)} tokens, config.json says {vocab_size}")
    return tok


def load_tokenizer(folder: Path, kind: str, vocab_size: int) -> Tokenizer:
    from memviz.backends.checkpoint import read_json

    if kind == "tokenizers":
        return HFTokenizer.from_file(folder / "tokenizer.json", vocab_size)
    what = "the character vocabulary" if kind == "char" else "the word vocabulary"
    vocab = read_json(folder / "vocab.json", what)
    return tokenizer_from_vocab(kind, vocab, vocab_size, str(folder / "vocab.json"))


def save_tokenizer(tokenizer: Tokenizer, folder: Path) -> None:
    if isinstance(tokenizer, HFTokenizer):
        (folder / "tokenizer.json").write_text(tokenizer.to_json_string(), encoding="utf-8")
    else:
        (folder / "vocab.json").write_text(
            json.dumps(tokenizer.to_json(), ensure_ascii=False), encoding="utf-8"
        )
