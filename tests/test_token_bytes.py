"""Tokens keep their bytes (issue 13, item 9): byte-level BPE splits UTF-8 characters across tokens;
the trace keeps each token's bytes, labels show partial characters as ‹XX›, and joining the bytes
gives back the text exactly. On the real tiny GPT-2 of conftest (its BPE is trained on ASCII, so
every non-ASCII character is split into byte tokens)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from memviz.backends.token_bytes import bytes_to_unicode, is_byte_level, token_bytes
from memviz.core.token_text import is_partial, join_text, token_display
from memviz.core.trace import StepRecord, Trace

TEXTS = ["Café", "fox 🦊 jumps", "東京で", "مرحبا بالعالم", "naïve — “quoted”"]
DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def gpt2(gpt2_dir):
    from memviz.backends.registry import load_backend

    backend = load_backend(str(gpt2_dir))
    assert backend.token_bytes(0) == token_bytes(backend.tokenizer, 0)  # the backend's own method
    return backend


def test_gpt2s_table_is_a_bijection_that_keeps_printable_bytes():
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256)) and len(set(table.values())) == 256
    assert table[ord("A")] == "A" and table[ord(" ")] == "Ġ"  # GPT-2's space


@pytest.mark.parametrize("text", TEXTS)
def test_the_tokens_bytes_join_to_the_text(gpt2, text):
    assert is_byte_level(gpt2.tokenizer)
    ids = gpt2.encode(text).ids
    pieces = [token_bytes(gpt2.tokenizer, i) for i in ids]
    assert b"".join(pieces) == text.encode("utf-8")
    # the failure this fixes: decoded one by one, split characters are lost
    assert any("\ufffd" in gpt2.token_text(i) for i in ids)
    assert "".join(gpt2.token_text(i) for i in ids) != text


def test_cafe_labels_show_the_partial_character_as_bytes(gpt2, run_session):
    session = run_session(gpt2, text="Café")
    trace = session.trace
    assert trace.text() == "Café"
    labels = trace.token_labels
    assert "".join(labels).endswith("‹C3›‹A9›")  # é = C3 A9, split over byte tokens
    assert all("\ufffd" not in label for label in labels)


@pytest.mark.parametrize("text", TEXTS)
def test_a_run_and_its_saved_trace_rebuild_the_text(gpt2, run_session, tmp_path, text):
    trace = run_session(gpt2, text=text).trace
    assert trace.text() == text
    loaded = Trace.load(trace.save(tmp_path / "run.memviz"))
    assert loaded.token_bytes == trace.token_bytes and loaded.text() == text
    assert loaded.token_labels == trace.token_labels
    with np.load(tmp_path / "run.memviz") as archive:
        offsets = archive["token_byte_offsets"]
        assert archive["token_bytes"].dtype == np.uint8 and len(offsets) == len(trace) + 1
        assert archive["token_bytes"].tobytes() == text.encode("utf-8")


def test_labels_helpers():
    assert token_display("é".encode()) == "é"
    assert token_display(b"\xc3") == "‹C3›" and is_partial(b"\xc3")
    assert token_display(b"a\xf0\x9f") == "a‹F0›‹9F›"
    assert not is_partial("🦊".encode())
    assert join_text([b"Caf", b"\xc3", b"\xa9"]) == "Café"


def test_a_format_1_file_without_token_bytes_still_opens():
    trace = Trace.load(DATA / "format1-gpt2-memory.memviz")
    assert trace.token_bytes == [t.encode("utf-8") for t in trace.token_text]
    assert trace.text() == "".join(trace.token_text)


def test_a_trace_built_without_bytes_uses_the_texts_utf8():
    trace = Trace({"architecture": "lstm", "vocab_size": 10})
    trace.append(StepRecord(1, "é", False, np.arange(3), np.full(3, 0.3, np.float32)))
    trace.append(
        StepRecord(2, "\ufffd", False, np.arange(3), np.full(3, 0.3, np.float32), token_bytes=b"\xc3")
    )
    assert trace.token_bytes == [b"\xc3\xa9", b"\xc3"] and trace.token_labels == ["é", "‹C3›"]
