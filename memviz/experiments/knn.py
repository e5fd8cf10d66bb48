"""How much a long-term memory helps (issue 18, `memviz experiment knn --memory STORE`).

kNN-LM (Khandelwal et al., 2020) mixes the model's next-token distribution with one from the
store's nearest memories: p = λ p_kNN + (1 − λ) p_LM. Here a held-out text is read once by a
Session with no memory (p_LM of every next token, and the key after every token); per k the store's
own `search` gives each key's neighbours and memviz.memory.knn.knn_distribution their p_kNN of the
next token. Every λ is then an interpolation of those numbers, with memviz's rule exactly
(memviz.memory.knn.mix: λ = 0, or no neighbour at all, leaves p_LM as it is).

Bits per character are counted as `memviz eval` counts them (memviz.train.evaluate): the bits of
every predicted token, plus a word model's spelling bits for unknown words, over the characters
after the first token. Qt-free; torch is imported inside the functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from memviz.errors import MemvizError
from memviz.experiments.registry import Experiment

if TYPE_CHECKING:
    import argparse

DEFAULT_LAMBDAS = tuple(round(0.05 * i, 2) for i in range(21))  # 0, 0.05, ..., 1
DEFAULT_KS = (1, 4, 16, 64)
RECALL_BLOCK = 256  # keys a store search takes at once
LOG2 = math.log(2.0)

Progress = Callable[[int, int], object]


@dataclass
class TokenScores:
    """Per predicted token (N of them): the model's probability of the token that came next, and
    per k the kNN distribution's probability of it and whether any neighbour was found."""

    targets: np.ndarray  # [N] the token predicted at each step
    p_lm: np.ndarray  # [N] float64
    ks: tuple[int, ...]
    p_knn: np.ndarray  # [len(ks), N] float64
    has_neighbours: np.ndarray  # [len(ks), N] bool: p_kNN is not all zero (mix() then mixes)
    characters: int  # the characters after the first token, as memviz eval counts them
    extra_bits: float  # bits memviz eval adds besides the model's (a word model's spelling bits)
    token_text: list[str]  # the text of each predicted token

    @property
    def tokens(self) -> int:
        return len(self.p_lm)


def interpolate(p_lm: np.ndarray, p_knn: np.ndarray, has_neighbours: np.ndarray, lam: float) -> np.ndarray:
    """memviz.memory.knn.mix, token by token: λ p_kNN + (1 − λ) p_LM where neighbours were found
    and λ > 0; p_LM itself otherwise."""
    p_lm = np.asarray(p_lm, dtype=np.float64)
    if lam == 0:
        return p_lm.copy()
    mixed = lam * np.asarray(p_knn, dtype=np.float64) + (1.0 - lam) * p_lm
    return np.where(has_neighbours, mixed, p_lm)


def bits_per_char(scores: TokenScores, k_index: int, lam: float) -> float:
    with np.errstate(divide="ignore"):
        p = interpolate(scores.p_lm, scores.p_knn[k_index], scores.has_neighbours[k_index], lam)
        bits = -np.log(p).sum() / LOG2
    return float((bits + scores.extra_bits) / max(1, scores.characters))


def bits_per_char_grid(scores: TokenScores, lambdas: Sequence[float]) -> np.ndarray:
    """[len(ks), len(lambdas)] bits per character."""
    return np.array([[bits_per_char(scores, i, lam) for lam in lambdas] for i in range(len(scores.ks))])


def best_setting(grid: np.ndarray, ks: Sequence[int], lambdas: Sequence[float]) -> tuple[int, float, float]:
    """(k, λ, bits per character) of the lowest point; ties go to the smaller λ, then the smaller k."""
    order = sorted(
        ((grid[i, j], lambdas[j], ks[i], i, j) for i in range(len(ks)) for j in range(len(lambdas))),
        key=lambda t: (t[0], t[1], t[2]),
    )
    value, lam, k, _, _ = order[0]
    return int(k), float(lam), float(value)


def token_gains(scores: TokenScores, k_index: int, lam: float) -> np.ndarray:
    """log2 p(interpolated) − log2 p_LM of every predicted token (bits; > 0: the memory helped)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        p = interpolate(scores.p_lm, scores.p_knn[k_index], scores.has_neighbours[k_index], lam)
        return (np.log(p) - np.log(scores.p_lm)) / LOG2


# -- reading a text --------------------------------------------------------------------------------
def _eval_characters(backend, text: str, read_ids: list[int], cut: str | None, trace) -> tuple[int, float]:
    """(characters, extra bits) of the text read, as memviz.train.evaluate counts them."""
    from memviz.backends.recurrent import RecurrentBackend

    if isinstance(backend, RecurrentBackend):
        from memviz.train.evaluate import recurrent_score

        score = recurrent_score(backend, text)  # its characters and spelling bits (one batched pass)
        if score.tokens != len(read_ids) - 1:
            raise MemvizError(
                f"{backend.info.name}: memviz eval predicts {score.tokens} tokens of this text, the run "
                f"{len(read_ids) - 1}: bits per character would not compare"
            )
        return score.characters, score.spelling_bits
    # transformers: gpt2_bits_per_char's count, len(text) - len(the first token's text); a run that
    # starts with the tokenizer's own tokens (BOS) predicts every token of the text
    start = len(backend.info.start_ids)
    read = trace.text() if cut else text
    if start:
        return len(read), 0.0
    return len(read) - len(backend.tokenizer.decode(read_ids[:1])), 0.0


def score_tokens(
    backend,
    store,
    text: str,
    ks: Sequence[int] = DEFAULT_KS,
    temperature: float = 1.0,
    max_tokens: int | None = None,
    progress: Callable[[str, int, int], object] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> tuple[TokenScores, list[str]]:
    """Read `text` once (a Session with no memory) and score every next token against the store.

    Returns the scores and the Session's warnings (a text cut to a transformer's window, unknown
    characters). A transformer's text longer than its window is cut there, as `memviz trace` cuts it.
    """
    from memviz.core.session import MAX_TOKENS, RecallSettings, Session
    from memviz.memory.knn import knn_distribution

    ks = tuple(int(k) for k in ks)
    for k in ks:
        RecallSettings(k=k, temperature=temperature)  # the Session's own checks of k and temperature
    if getattr(backend, "head", "lm") != "lm" or backend.info.extra.get("head") == "classifier":
        raise MemvizError(
            f"{backend.info.name}: a classifier predicts labels, not text: no bits per character"
        )
    session = Session(backend, max_tokens=max_tokens or MAX_TOKENS)
    warnings = list(session.feed(text))
    cut = next((w for w in warnings if w.startswith("text cut")), None)
    if cut and not backend.info.context_size:  # memviz eval would score the whole text: refuse
        raise MemvizError(f"{backend.info.name}: {cut}: give a shorter text or a larger --max-tokens")
    total = session.pending
    p_lm: list[float] = []
    previous: np.ndarray | None = None
    trace = session.trace
    while (step := session.step()) is not None:
        if previous is not None:
            p_lm.append(float(previous[trace.token_ids[step]]))  # p of the token that came next
        previous = session.last_distribution
        if progress is not None:
            progress("reading", step + 1, total)
        if cancelled is not None and cancelled():
            raise MemvizError("knn: cancelled")
    ids = list(trace.token_ids)
    n = len(ids) - 1
    if n < 1:
        raise MemvizError("knn: the text is too short: it needs at least two tokens")
    vocab = len(previous) if previous is not None else backend.info.vocab_size
    targets = np.asarray(ids[1:], dtype=np.int64)
    p_knn = np.zeros((len(ks), n))
    has = np.zeros((len(ks), n), dtype=bool)
    # An exact store's k nearest are the first k of its K nearest: one search per token, at the
    # largest k (a search costs the same for any k). An approximate index is asked for each k.
    # Keys go to the store's index a block at a time (search_many: one index call per block).
    exact = bool(getattr(store, "exact", False))
    widest = max(ks)
    keys = np.asarray(session.keys[:n], dtype=np.float32)  # the key after token t predicts token t + 1
    for first in range(0, n, RECALL_BLOCK):
        block = keys[first : first + RECALL_BLOCK]
        wide = store.search_many(block, widest) if exact else None  # the store's own retrieval
        for i, k in enumerate(ks):
            _, distances, values = store.search_many(block, k) if wide is None else (a[:, :k] for a in wide)
            for j in range(len(block)):
                t = first + j
                dist = knn_distribution(values[j], distances[j], vocab, temperature)
                p_knn[i, t] = dist[targets[t]]
                has[i, t] = dist.any()
        done = min(n, first + RECALL_BLOCK)
        if progress is not None:
            progress("recalling", done, n)
        if cancelled is not None and cancelled():
            raise MemvizError("knn: cancelled")
    characters, extra_bits = _eval_characters(backend, text, ids, cut, trace)
    scores = TokenScores(
        targets=targets,
        p_lm=np.asarray(p_lm, dtype=np.float64),
        ks=ks,
        p_knn=p_knn,
        has_neighbours=has,
        characters=characters,
        extra_bits=extra_bits,
        token_text=list(trace.token_text[1:]),
    )
    return scores, warnings


# -- the experiment ------------------------------------------------------------------------------------
COLUMNS = {
    "model": "the model (its name; results.json has its fingerprint and store)",
    "k": "neighbours retrieved from the store for each token",
    "lambda": "weight of the kNN distribution: p = lambda p_kNN + (1 - lambda) p_LM",
    "bits_per_char": "bits per character of the held-out text with that mix, as memviz eval counts them "
    "(inf where a token gets p = 0: lambda = 1 and no neighbour holds it)",
    "gain_bits_per_char": "the model's own bits per character (lambda = 0) minus this row's: > 0 the memory helps",
    "best": "1 on the model's lowest bits per character (smallest lambda, then k, on a tie)",
}
GAIN_BINS = 48  # bins of the per-token gain histogram


def gain_histogram(gains: np.ndarray) -> tuple[list[float], list[int]]:
    """Edges and counts of the per-token gains (finite ones), over their range (0 always inside)."""
    finite = gains[np.isfinite(gains)]
    low = min(0.0, float(finite.min())) if finite.size else -1.0
    high = max(0.0, float(finite.max())) if finite.size else 1.0
    if high - low < 1e-3:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, GAIN_BINS + 1)
    counts, _ = np.histogram(finite, bins=edges)
    return [float(e) for e in edges], [int(c) for c in counts]


def _open_stores(backends: list, paths: list[str]) -> list:
    from memviz.memory.store import MemoryStore

    if len(paths) != len(backends):
        raise MemvizError(
            f"knn: {len(paths)} --memory for {len(backends)} --model: give one store per model, in the same order"
        )
    stores = []
    for backend, path in zip(backends, paths, strict=True):
        store = MemoryStore.open(path, backend=backend)  # another model's store is refused here
        if len(store) == 0:
            store.close()
            raise MemvizError(f"{path}: the store is empty: add documents first (memviz memory add)")
        stores.append(store)
    return stores


def run(backends: list, args: argparse.Namespace):
    from memviz.experiments.models import model_entry, require_lm, unique_names
    from memviz.experiments.progress import progress_of
    from memviz.experiments.result import ExperimentResult

    for backend in backends:
        require_lm(backend)
    lambdas = sorted({0.0, *[float(v) for v in args.lambdas]})  # λ = 0: the model alone, the baseline
    ks = [int(k) for k in args.k]
    progress = progress_of(args)
    cancelled = getattr(args, "cancelled", None)
    names = unique_names(backends)
    stores = _open_stores(backends, list(args.memory))
    rows: list[dict] = []
    extra: dict = {"lambdas": lambdas, "ks": ks, "per_model": {}}
    warnings: dict[str, list[str]] = {}
    try:
        for name, backend, store in zip(names, backends, stores, strict=True):
            scores, said = score_tokens(
                backend,
                store,
                args.text,
                ks=ks,
                temperature=args.knn_temperature,
                max_tokens=args.max_tokens,
                progress=lambda what, done, total, name=name: progress(f"{name}: {what}", done, total),
                cancelled=cancelled,
            )
            for w in said:
                progress.note(f"memviz: warning: {name}: {w}")
            warnings[name] = said
            grid = bits_per_char_grid(scores, lambdas)
            best_k, best_lam, best_bpc = best_setting(grid, ks, lambdas)
            own = bits_per_char(scores, 0, 0.0)
            for i, k in enumerate(ks):
                for j, lam in enumerate(lambdas):
                    rows.append(
                        {
                            "model": name,
                            "k": k,
                            "lambda": lam,
                            "bits_per_char": float(grid[i, j]),
                            "gain_bits_per_char": own - float(grid[i, j]),
                            "best": k == best_k and lam == best_lam,
                        }
                    )
            gains = token_gains(scores, ks.index(best_k), best_lam)
            edges, counts = gain_histogram(gains)
            extra["per_model"][name] = {
                "store": str(store.path),
                "store_entries": len(store),
                "store_fingerprint": store.fingerprint,
                "tokens": scores.tokens,
                "characters": scores.characters,
                "extra_bits": scores.extra_bits,
                "bits_per_char_alone": own,
                "best": {"k": best_k, "lambda": best_lam, "bits_per_char": best_bpc},
                "token_gain_bits": gains,  # at the best setting, per predicted token
                "token_text": scores.token_text,
                "helped_tokens": int((gains > 0).sum()),
                "gain_edges": edges,
                "gain_counts": counts,
            }
    finally:
        for store in stores:
            store.close()
    settings = {
        "lambdas": lambdas,
        "ks": ks,
        "knn_temperature": args.knn_temperature,
        "max_tokens": args.max_tokens,
        "memory": list(args.memory),
        "mix": "p = lambda p_kNN + (1 - lambda) p_LM; lambda = 0 or no neighbour leaves p_LM (memviz.memory.knn.mix)",
        "distance": "squared L2 between keys; p_kNN(y) proportional to the sum of exp(-distance / temperature)",
        "warnings": warnings,
    }
    models = [model_entry(b, name) for b, name in zip(backends, names, strict=True)]
    return ExperimentResult("knn", settings, models, dict(COLUMNS), rows, extra)


def add_options(parser: argparse.ArgumentParser) -> None:
    from memviz.options import integer, number_list, real

    parser.add_argument(
        "--memory",
        action="append",
        required=True,
        metavar="STORE",
        help="the model's memory store (memviz memory add); one per --model, in the same order",
    )
    parser.add_argument(
        "--lambdas",
        type=number_list(float, 0.0, 1.0, "numbers"),
        default=list(DEFAULT_LAMBDAS),
        help="the kNN weights to try, comma-separated (default 0,0.05,...,1; 0 is always added)",
    )
    parser.add_argument(
        "--k",
        type=number_list(int, 1, 4096, "whole numbers"),
        default=list(DEFAULT_KS),
        help="neighbours per token, comma-separated (default 1,4,16,64)",
    )
    parser.add_argument(
        "--knn-temperature",
        type=real(0.0, 1e6, low_open=True),
        default=1.0,
        help="p_kNN's temperature over squared-L2 distances (default 1, as the app)",
    )
    parser.add_argument(
        "--max-tokens",
        type=integer(2, 10**6),
        default=20_000,
        help="read at most this many tokens of the text (default 20,000)",
    )


EXPERIMENT = Experiment(
    name="knn",
    help="with a memory store: bits per character of a held-out text against lambda and k (kNN-LM)",
    run=run,
    figure="memviz.export.experiment_figures_knn:KnnFigure",
    add_options=add_options,
    needs_text=True,
)
