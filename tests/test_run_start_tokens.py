"""A run starts with the special tokens the tokenizer puts in front of a text (Llama's BOS)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from memviz.backends.registry import load_backend
from memviz.core.session import Session
from memviz.memory.store import MemoryStore
from tests.test_transformer_families import TEXT, family_configs, make_tokenizer, save_family


def bos_tokenizer():
    """The families' test tokenizer with a post-processor that puts <s> in front, as Llama's does."""
    from tokenizers.processors import TemplateProcessing

    tokenizer = make_tokenizer()
    tokenizer.add_special_tokens({"bos_token": "<s>"})
    bos = tokenizer.convert_tokens_to_ids("<s>")
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    return tokenizer, bos


@pytest.fixture(scope="module")
def llama_with_bos(tmp_path_factory):
    tokenizer, bos = bos_tokenizer()
    config = family_configs(len(tokenizer))["llama"]
    return save_family("llama", tmp_path_factory.mktemp("bos") / "llama", config, tokenizer), bos


def test_a_tokenizer_without_specials_starts_nothing(tmp_path):
    folder = save_family("gpt2", tmp_path / "gpt2")
    backend = load_backend(str(folder))
    assert backend.info.start_ids == ()
    session = Session(backend)
    session.feed(TEXT)
    assert list(session._queue) == backend.encode(TEXT).ids
    assert "start_ids" not in backend.info.as_manifest()


def test_a_run_starts_with_bos_and_equals_the_full_pass(llama_with_bos):
    from transformers import AutoModelForCausalLM

    folder, bos = llama_with_bos
    backend = load_backend(str(folder))
    assert backend.info.start_ids == (bos,)
    session = Session(backend)
    session.feed(TEXT)
    session.feed(" more")  # a second piece of text gets no second BOS
    session.run()
    trace = session.trace
    ids = [bos, *backend.encode(TEXT).ids, *backend.encode(" more").ids]
    assert list(trace.token_ids) == ids
    assert trace.text() == TEXT + " more"  # the BOS is the model's, not the text's
    assert trace.manifest()["model"]["start_ids"] == [bos]

    model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_attentions=True)
    probs = torch.softmax(out.logits[0].double(), -1).numpy()
    last = len(ids) - 1
    kept = trace.array("topk_ids")[last]
    np.testing.assert_allclose(trace.array("topk_probs")[last], probs[last, kept], atol=1e-4)


def test_a_remembered_document_starts_with_bos_too(llama_with_bos, tmp_path):
    folder, bos = llama_with_bos
    backend = load_backend(str(folder))
    store = MemoryStore.open(tmp_path / "m.sqlite", backend=backend, create=True)
    result = store.add_document(TEXT, "doc", backend)
    n = len(backend.encode(TEXT).ids) + 1  # with the BOS
    assert result.entries == n - 1
    # the first stored key is the one a stepped run records after its BOS, nothing else
    session = Session(backend)
    session.feed(TEXT)
    session.run()
    ids, distances, values = store.search(session.keys[0], 1)
    assert distances[0] < 1e-6 and values[0] == session.trace.token_ids[1]
    store.close()


def test_bits_per_char_reads_from_the_bos_and_any_familys_window(llama_with_bos):
    """`memviz eval` on a Llama (no n_positions in its config): the text after a BOS, every character
    predicted; equal to a hand sum over the model's own full pass."""
    import math

    from transformers import AutoModelForCausalLM

    from memviz.train.evaluate import bits_per_char

    folder, bos = llama_with_bos
    backend = load_backend(str(folder))
    ids = [bos, *backend.encode(TEXT).ids]
    assert len(ids) <= backend.info.context_size  # one window: the hand sum needs no sliding
    model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1].double(), -1)
    nats = -logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].sum().item()
    assert bits_per_char(backend, TEXT) == pytest.approx(nats / math.log(2) / len(TEXT), rel=1e-5)
