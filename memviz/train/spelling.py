"""What an unknown word costs to spell, so a word model's bits per character count it honestly.

A word model predicts `<unk>` for every word outside its vocabulary; the word's letters are still
information it did not give. `memviz eval` charges each unknown word

    -log2 p(<unk> | context)  +  spelling bits

where the spelling bits come from a character unigram model of the training split's unknown words
(`spelling.json`, written by `memviz train rnn`): -log2 q(ch) for each character and -log2 q(end)
once; a character it never saw costs -log2 q(other) + 8 bits per UTF-8 byte. q is the count
plus one over the total (add-one smoothing over the seen characters, `other` and `end`). A word
model without `spelling.json` (imported from elsewhere) gets the lower bound alone, -log2 p(<unk>),
and eval says so.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from memviz.backends.tokenizers import WordTokenizer
from memviz.errors import CheckpointError

SPELLING_FILE = "spelling.json"
RULE = (
    "unknown word: -log2 p(<unk>) + sum over its characters of -log2 q(ch) + -log2 q(end); "
    "q: add-one character unigram of the training split's unknown words; unseen character: "
    "-log2 q(other) + 8 bits per UTF-8 byte"
)


@dataclass(frozen=True)
class SpellingModel:
    char_bits: dict[str, float]
    other_bits: float
    end_bits: float

    @classmethod
    def from_counts(cls, counts: Counter, words: int) -> SpellingModel:
        total = sum(counts.values()) + words + len(counts) + 2  # + end marks, add-one for each symbol
        char_bits = {ch: -math.log2((n + 1) / total) for ch, n in counts.items()}
        return cls(
            char_bits=char_bits,
            other_bits=-math.log2(1 / total),
            end_bits=-math.log2((words + 1) / total),
        )

    @classmethod
    def from_unknown_words(cls, tokenizer: WordTokenizer, text: str) -> SpellingModel:
        counts: Counter = Counter()
        words = 0
        for piece in tokenizer.pieces(text):
            if piece not in tokenizer.index:
                counts.update(piece)
                words += 1
        return cls.from_counts(counts, words)

    def bits(self, word: str) -> float:
        total = self.end_bits
        for ch in word:
            seen = self.char_bits.get(ch)
            total += seen if seen is not None else self.other_bits + 8 * len(ch.encode("utf-8"))
        return total

    def save(self, path: Path) -> None:
        data = {
            "rule": RULE,
            "char_bits": self.char_bits,
            "other_bits": self.other_bits,
            "end_bits": self.end_bits,
        }
        path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> SpellingModel | None:
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                char_bits={str(k): float(v) for k, v in data["char_bits"].items()},
                other_bits=float(data["other_bits"]),
                end_bits=float(data["end_bits"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{path}: not a spelling model ({exc})") from None
