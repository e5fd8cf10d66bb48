"""The bytes of a token, not its decoded text: byte-level BPE splits a UTF-8 character across
tokens ("é" = C3 A9 in two tokens), and decoding one such token alone gives only "\ufffd".

`token_bytes(tokenizer, token_id)` maps a Hugging Face byte-level BPE token (GPT-2 and its family)
to its bytes through GPT-2's bytes_to_unicode table, applied to `convert_ids_to_tokens`; for any
other tokenizer it falls back to the UTF-8 of the decoded text.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table: every byte as a printable character (openai/gpt-2, encoder.py)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


@lru_cache(maxsize=1)
def unicode_to_bytes() -> dict[str, int]:
    return {c: b for b, c in bytes_to_unicode().items()}


def is_byte_level(tokenizer) -> bool:
    """A byte-level BPE tokenizer: GPT-2's slow tokenizer (byte_encoder) or a fast one whose
    decoder is tokenizers' ByteLevel."""
    if getattr(tokenizer, "byte_encoder", None) is not None:
        return True
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    return decoder is not None and type(decoder).__name__ == "ByteLevel"


def token_bytes(tokenizer, token_id: int) -> bytes:
    """The exact bytes token `token_id` stands for."""
    if is_byte_level(tokenizer):
        piece = tokenizer.convert_ids_to_tokens(int(token_id))
        table = unicode_to_bytes()
        if isinstance(piece, str) and piece in tokenizer.all_special_tokens:
            return piece.encode("utf-8")
        if isinstance(piece, str) and all(c in table for c in piece):
            return bytes(table[c] for c in piece)
    return tokenizer.decode([int(token_id)]).encode("utf-8")
