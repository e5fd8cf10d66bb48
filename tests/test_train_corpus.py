"""A corpus of several sources (files, directories, globs; text, .gz, .info.gz, HTML), each split
alone so a source's held-out blocks never move; `--init-from` continues from a model's weights and
vocabulary; the loop checkpoints by time as well as by steps."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from memviz.cli import main
from memviz.train.corpus import BLOCK, load_corpus, read_corpus, source_files, split_corpus
from memviz.train.html_text import html_to_text
from memviz.train.loop import TrainConfig, train_loop

LSTM_ARGS = ["--hidden", "16", "--layers", "2", "--batch-size", "4", "--seq-len", "16", "--threads", "1"]
GPT2_ARGS = [
    "--layers", "1", "--heads", "2", "--hidden", "32", "--vocab-size", "300", "--context", "64",
    "--seq-len", "32", "--batch-size", "2", "--threads", "1",
]  # fmt: skip
WORD_ARGS = [
    "--cell", "gru", "--tokenizer", "word", "--vocab-size", "12", "--layers", "2", "--hidden", "16",
    "--embedding", "8", "--batch-size", "2", "--seq-len", "8", "--threads", "1",
]  # fmt: skip


def numbered(prefix: str, n: int) -> str:
    """Text whose every block is different, so a misplaced split shows."""
    return "".join(f"{prefix} line {i} of the manual.\n" for i in range(n))


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sources")
    big = root / "big.txt"
    big.write_text(numbered("python", 40_000))  # ~1.2M characters: 24 blocks, one held out
    info = root / "tool.info.gz"
    with gzip.open(info, "wt", encoding="utf-8") as f:  # a Texinfo node separator between nodes
        f.write(numbered("info", 2_000) + "\x1f\nFile: tool.info, Node: Top\n" + numbered("node", 2_000))
    docs = root / "html"
    (docs / "sub").mkdir(parents=True)
    (docs / "b.html").write_text("<html><head><title>B</title></head><body><p>second page</p></body></html>")
    (docs / "a.htm").write_text("<p>first &amp; page</p>" * 1000)
    (docs / "sub" / "c.txt").write_text(numbered("sub", 500))
    (docs / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")  # not text: never read
    return {"big": big, "info": info, "docs": docs, "root": root}


def test_one_source_splits_as_before(sources):
    text = sources["big"].read_text()
    corpus = load_corpus(sources["big"])
    every20th = "".join(text[s : s + BLOCK] for i, s in enumerate(range(0, len(text), BLOCK)) if i % 20 == 19)
    assert corpus.held_out == every20th and len(every20th) == BLOCK
    assert (corpus.train, corpus.held_out) == split_corpus(read_corpus(sources["big"]))


def test_several_sources_each_split_alone(sources):
    first = load_corpus(sources["big"])
    corpus = load_corpus([sources["big"], sources["info"], sources["docs"]])
    # the first source's held-out blocks are where they were: another source does not move them
    assert corpus.held_out.startswith(first.held_out + "\n\n")
    assert corpus.train.startswith(first.train + "\n\n")
    info_text = gzip.open(sources["info"], "rt").read().replace("\x1f", "")
    info_train, info_held = split_corpus(info_text)
    assert "\n\n" + info_train + "\n\n" in corpus.train and "\n\n" + info_held + "\n\n" in corpus.held_out
    assert "\x1f" not in corpus.train
    docs = load_corpus(sources["docs"])
    assert corpus.train.endswith("\n\n" + docs.train) and corpus.held_out.endswith("\n\n" + docs.held_out)
    assert [(p.files, p.train_chars, p.held_out_chars) for p in corpus.parts] == [
        (1, len(first.train), len(first.held_out)),
        (1, len(info_train), len(info_held)),
        (3, len(docs.train), len(docs.held_out)),
    ]
    assert "first & page" in corpus.train and "sub line 3 of the manual." in corpus.train
    assert "<p>" not in corpus.train + corpus.held_out


def test_directory_and_glob_list_text_files_in_order(sources):
    docs = sources["docs"]
    assert source_files(docs) == [docs / "a.htm", docs / "b.html", docs / "sub" / "c.txt"]
    assert source_files(str(docs / "*.htm*")) == [docs / "a.htm", docs / "b.html"]
    text = load_corpus(str(docs / "*.htm*"))
    assert "second page" in text.train + text.held_out
    assert text.source == str(docs / "*.htm*")


def test_missing_glob_and_empty_directory_are_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for missing in (str(tmp_path / "*.html"), str(tmp_path / "empty")):
        assert main(["train", "lstm", "--corpus", missing, "--out", str(tmp_path / "m")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "corpus not found" in err[0]


def test_html_to_text():
    html = (
        "<html><head><title>T</title><style>p {color: red}</style></head><body>"
        '<div class="navheader"><a href="x">Prev</a><div>Up</div></div><nav>menu</nav>'
        "<h1>Hello &amp;\n world</h1><p>a  <b>bold</b>\n move</p><script>var x = 1;</script>"
        "<pre>  indented\n    more</pre><ul><li>one</li><li>two</li></ul></body></html>"
    )
    assert html_to_text(html) == "Hello & world\n\na bold move\n\n  indented\n    more\n\none\n\ntwo\n"


def test_the_cli_takes_several_sources(sources, tmp_path):
    out = tmp_path / "lstm"
    args = ["train", "lstm", "--corpus", str(sources["big"]), "--corpus", str(sources["info"])]
    assert main([*args, str(sources["docs"]), "--out", str(out), "--max-steps", "2", *LSTM_ARGS]) == 0
    described = json.loads((out / "training.json").read_text())["corpus"]
    assert [d["source"] for d in described] == [str(sources[k]) for k in ("big", "info", "docs")]
    assert [d["files"] for d in described] == [1, 1, 3]


def vocabulary(path: Path) -> object:
    data = json.loads(path.read_text())
    if path.name == "tokenizer.json":  # a re-save may spell unset options differently
        return data["model"]["vocab"], data["model"]["merges"], data["added_tokens"]
    return data


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.mark.parametrize(
    ("architecture", "args", "vocab"),
    [
        ("lstm", LSTM_ARGS, "vocab.json"),
        ("gpt2", GPT2_ARGS, "tokenizer.json"),
        ("rnn", WORD_ARGS, "vocab.json"),
    ],
)
def test_init_from_continues_from_the_weights_and_vocabulary(sources, tmp_path, architecture, args, vocab):
    first, other = sources["big"], sources["info"]
    start = tmp_path / "start"
    assert (
        main(["train", architecture, "--corpus", str(first), "--out", str(start), "--max-steps", "3", *args])
        == 0
    )
    (start / "README.md").write_text("a card: not carried")
    # one step at a tiny learning rate and another seed: the weights are the starting model's, not a
    # fresh init
    out = tmp_path / "continued"
    cont = [
        "train",
        architecture,
        "--corpus",
        str(other),
        "--out",
        str(out),
        *args,
        "--lr",
        "1e-9",
        "--seed",
        "1",
    ]
    assert main([*cont, "--init-from", str(start), "--max-steps", "1"]) == 0
    assert max_difference(weights(out), weights(start)) < 1e-6
    # the other corpus's vocabulary is not built: the tokens (and a BPE's merges) are the start's
    assert vocabulary(out / vocab) == vocabulary(start / vocab)
    assert not (out / "README.md").exists()
    assert json.loads((out / "training.json").read_text())["init_from"]["from"] == str(start.resolve())
    fresh = tmp_path / "fresh"
    assert main([*cont[:3], str(first), "--out", str(fresh), *cont[6:], "--max-steps", "1"]) == 0
    assert max_difference(weights(fresh), weights(start)) > 1e-3  # the test can tell the two apart
    # the same command again resumes the run (its optimizer and step), it does not copy again
    assert main([*cont, "--init-from", str(start), "--max-steps", "2"]) == 0
    assert json.loads((out / "train_state.json").read_text())["step"] == 2
    assert json.loads((out / "training.json").read_text())["init_from"]["from"] == str(start.resolve())


def test_init_from_another_architecture_is_one_line(sources, tmp_path, capsys):
    start = tmp_path / "lstm"
    assert (
        main(
            [
                "train",
                "lstm",
                "--corpus",
                str(sources["big"]),
                "--out",
                str(start),
                "--max-steps",
                "1",
                *LSTM_ARGS,
            ]
        )
        == 0
    )
    capsys.readouterr()
    out = tmp_path / "gru"
    argv = ["train", "rnn", "--corpus", str(sources["big"]), "--out", str(out), "--init-from", str(start)]
    assert main([*argv, "--max-steps", "1", *WORD_ARGS]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "memviz-lstm" in err[0] and not out.exists()


@pytest.mark.parametrize(("minutes", "saves"), [(1e-9, 5), (1e6, 1)])
def test_checkpoints_by_time(tmp_path, minutes, saves):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(8, 3)
    cfg = TrainConfig(max_steps=5, checkpoint_minutes=minutes, checkpoint_every=200, warmup=1)
    calls = []
    train_loop(
        model, optimizer, lambda step: (model(x).pow(2).mean(), 8), cfg, tmp_path, lambda: calls.append(1)
    )
    assert len(calls) == saves  # every step when due at once; else only the last step's
    assert json.loads((tmp_path / "train_state.json").read_text())["step"] == 5
