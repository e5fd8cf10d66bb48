"""Shared fixtures: real, small models built inside the tests (nothing is downloaded), sessions run
on them, panels and windows shown on the offscreen platform.

Test modules reach everything here through fixtures; no test module imports another (shared classes
live in tests/support.py, reached through fixtures too: tiny_panel_class). The plain functions
(make_lstm_dir, make_gpt2_dir, make_rnn_dir, SAMPLE_TEXT) stay importable while the last modules that
import them directly are switched to the fixtures (lstm_dir_factory, gpt2_dir_factory, rnn_dir_factory,
sample_text).
Qt and the model code are imported inside the fixtures, so tests that need neither do not pay for them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import numpy as np

    from memviz.backends.base import Backend
    from memviz.core.sampling import SamplingConfig
    from memviz.core.session import Session
    from memviz.core.trace import Trace

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# runs' folders (memviz.core.run_folder) go to a folder of this test run, not the user's cache (a
# test that kills a run on purpose leaves one behind)
os.environ.setdefault("MEMVIZ_RUNS_DIR", tempfile.mkdtemp(prefix="memviz-test-runs-"))

SAMPLE_TEXT = "The quick brown fox jumps over the lazy dog. def f(x): return x + 1\n" * 4


def make_lstm_dir(
    folder: Path, layers: int = 3, hidden: int = 32, embedding: int = 16, seed: int = 0
) -> Path:
    import torch

    from memviz.backends.lstm import CharTokenizer, LSTMLanguageModel, save_lstm_checkpoint

    torch.manual_seed(seed)
    tokenizer = CharTokenizer.from_text(SAMPLE_TEXT)
    model = LSTMLanguageModel(len(tokenizer.tokens), embedding, hidden, layers)
    save_lstm_checkpoint(model, tokenizer, folder)
    return folder


def make_gpt2_dir(
    folder: Path, layers: int = 3, heads: int = 4, embd: int = 32, positions: int = 128, seed: int = 0
) -> Path:
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    torch.manual_seed(seed)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        [SAMPLE_TEXT] * 5, vocab_size=300, min_frequency=1, special_tokens=["<|endoftext|>"]
    )
    tokenizer = GPT2TokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    config = GPT2Config(
        n_layer=layers,
        n_head=heads,
        n_embd=embd,
        vocab_size=len(tokenizer),
        n_positions=positions,
        bos_token_id=0,
        eos_token_id=0,
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_rnn_dir(
    folder: Path,
    cell: str = "gru",
    sizes: tuple[int, ...] = (9, 5, 7),
    head: str = "lm",
    labels: tuple[str, ...] | None = None,
    seed: int = 0,
    scale: float = 2.0,
) -> Path:
    """A tiny memviz-rnn folder (an LSTM or GRU, layers of `sizes`, an lm or classifier head), its
    weights scaled by `scale` so the gates saturate (a sharper picture and test)."""
    import torch

    from memviz.backends.recurrent import RecurrentModel, RNNConfig, save_recurrent
    from memviz.backends.tokenizers import CharTokenizer

    torch.manual_seed(seed)
    tokenizer = CharTokenizer.from_text(SAMPLE_TEXT)
    labels = tuple(labels or (("negative", "positive") if head == "classifier" else ()))
    config = RNNConfig(
        cell=cell,
        vocab_size=len(tokenizer.tokens),
        embedding_dim=6,
        layer_sizes=tuple(sizes),
        tokenizer=tokenizer.kind,
        head=head,
        labels=labels,
    )
    model = RecurrentModel(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(scale)
    return save_recurrent(model, tokenizer, folder, head=head, labels=list(labels))


@pytest.fixture(scope="session")
def lstm_dir(tmp_path_factory) -> Path:
    return make_lstm_dir(tmp_path_factory.mktemp("lstm") / "tiny-lstm")


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory) -> Path:
    return make_gpt2_dir(tmp_path_factory.mktemp("gpt2") / "tiny-gpt2")


@pytest.fixture(scope="session")
def sample_text() -> str:
    """The text the tiny models' vocabularies are built from (every character of it is known)."""
    return SAMPLE_TEXT


@pytest.fixture(scope="session")
def lstm_dir_factory() -> Callable[..., Path]:
    """make_lstm_dir(folder, layers=3, hidden=32, embedding=16, seed=0): a tiny LSTM checkpoint."""
    return make_lstm_dir


@pytest.fixture(scope="session")
def gpt2_dir_factory() -> Callable[..., Path]:
    """make_gpt2_dir(folder, layers=3, heads=4, embd=32, positions=128, seed=0): a tiny GPT-2."""
    return make_gpt2_dir


@pytest.fixture(scope="session")
def rnn_dir_factory() -> Callable[..., Path]:
    """make_rnn_dir(folder, cell="gru", sizes=(9, 5, 7), head="lm", labels=None, seed=0, scale=2.0):
    a tiny memviz-rnn LSTM or GRU (layers of different sizes, an lm or classifier head)."""
    return make_rnn_dir


@pytest.fixture(scope="session")
def tiny_panel_class() -> type:
    """A test-only panel (a plot of the top-1 probability): the export engine tested on its own."""
    from support import TinyPanel

    return TinyPanel


# -- sessions --------------------------------------------------------------------------------------
RUN_TEXT = "The quick brown fox jumps over the lazy dog. def f(x): return x + 1\n"


def run_a_session(
    model: Path | str | Backend,
    text: str = RUN_TEXT,
    generate: int = 0,
    sampling: SamplingConfig | None = None,
    **session_options: Any,
) -> Session:
    """A real Session on `model` (a folder, a name, or a loaded backend), fed `text`, generating
    `generate` tokens (greedy unless `sampling` says otherwise), run to completion."""
    from memviz.backends.registry import load_backend
    from memviz.core.sampling import SamplingConfig
    from memviz.core.session import Session

    backend = load_backend(str(model)) if isinstance(model, (str, Path)) else model
    session = Session(backend, sampling=sampling or SamplingConfig(temperature=0.0), **session_options)
    session.feed(text)
    if generate:
        session.generate(generate)
    session.run()
    return session


@pytest.fixture(scope="session")
def run_session() -> Callable[..., Session]:
    """run_session(model, text=RUN_TEXT, generate=0, sampling=None, **Session options) -> Session.

    Session-scoped (it holds nothing), so module-scoped fixtures can run their sessions once."""
    return run_a_session


# -- panels ----------------------------------------------------------------------------------------
def settle_panel(panel) -> None:
    """Let the layout and the views' auto-ranges (applied at paint time) reach their final state."""
    from PySide6.QtWidgets import QApplication

    for _ in range(2):
        QApplication.processEvents()
        panel.grab()
    QApplication.processEvents()


@pytest.fixture
def settle() -> Callable[[Any], None]:
    """settle(panel): process events and paint until the panel's layout is final."""
    return settle_panel


@pytest.fixture
def make_panel(qtbot) -> Callable[..., tuple[Any, Any]]:
    """make_panel(cls, trace, **ViewState fields) -> (view model, panel): a shown 900 x 500 panel of
    class `cls` on `trace`, rendered at ViewState(**state) and settled; it redraws on view changes.
    settle=False: rendered once and returned at once (no events processed: a job the render handed
    to the panel's worker is still on its way)."""
    from memviz.core.view import ViewState
    from memviz.panels.view_model import ViewModel

    def make(cls, trace: Trace, settle: bool = True, **state: Any) -> tuple[ViewModel, Any]:
        view = ViewModel(ViewState(**state))
        panel = cls(view)
        qtbot.addWidget(panel)
        panel.set_trace(trace)
        view.changed.connect(panel.render)
        panel.resize(900, 500)
        panel.show()
        panel.render(view.state)
        if settle:
            qtbot.waitExposed(panel)
            settle_panel(panel)
        return view, panel

    return make


def bar_heights_of(panel) -> np.ndarray:
    """The filled pixel rows of every bar column of every cell, read back from the head grid's image
    ([L, A, bins]); checks the margins are empty and each column is filled from its baseline up."""
    import numpy as np

    layers, heads = panel.shape
    (width, height), (mx, my) = panel.cell_size, panel.margin
    alpha = (panel.image.pixels >> 24).reshape(layers, height, heads, width) > 0  # ARGB32: alpha on top
    bars = alpha[:, my : height - my, :, mx : mx + panel.bins]  # [L, levels, A, bins], top row first
    assert bars.sum() == alpha.sum()  # nothing outside the bars' area
    heights = bars.sum(axis=1)
    rows = np.arange(panel.levels)[None, :, None, None]
    np.testing.assert_array_equal(bars, rows >= panel.levels - heights[:, None])
    return heights


@pytest.fixture
def head_grid_bar_heights() -> Callable[[Any], np.ndarray]:
    """head_grid_bar_heights(panel) -> [L, A, bins]: what a HeadGridPanel's image draws, read back."""
    return bar_heights_of


# -- the window ------------------------------------------------------------------------------------
@pytest.fixture
def settings(tmp_path):
    """The window's QSettings, in a file of this test's own (never the user's settings)."""
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "memviz.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def make_window(qtbot, settings, monkeypatch) -> Iterator[Callable[..., Any]]:
    """make_window(settings=None) -> MainWindow: shown, active (shortcuts act in the active window),
    registered with qtbot, and shut down (worker thread stopped) when the test ends."""
    from memviz.ui.main_window import MainWindow

    # the unsaved-run question is modal: asked at teardown it would wait for an answer forever
    monkeypatch.setattr(MainWindow, "ask_before_discarding", False)
    windows: list[MainWindow] = []

    def make(s=None) -> MainWindow:
        window = MainWindow(settings=s or settings)
        qtbot.addWidget(window)
        window.show()
        window.activateWindow()
        qtbot.waitUntil(window.isActiveWindow, timeout=5_000)
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.shutdown()
