"""RecurrentBackend: an LSTM or GRU stepped one token at a time with its exact gate equations
(see memviz.backends.recurrent), and document_keys for the memory store."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from memviz.backends.base import Encoding, ModelInfo, StepOutput, weights_fingerprint
from memviz.backends.hook_points import (
    CELL,
    GATES,
    HIDDEN,
    PREDICTION,
    RNN_CELL,
    RNN_GATES,
    RNN_HIDDEN,
    hook_name,
    per_layer,
)
from memviz.backends.recurrent_checkpoint import load_recurrent
from memviz.backends.recurrent_config import CELLS
from memviz.backends.recurrent_interventions import RecurrentInterventions
from memviz.backends.tokenizers import Tokenizer
from memviz.errors import CheckpointError

DOCUMENT_CHUNK = 2048  # tokens per nn.LSTM / nn.GRU call in document_keys (the state carried between)
SCORE_CHUNK = 64  # steps per call in score before the scored ones (their outputs dropped)


class RecurrentBackend:
    """Steps an LSTM or GRU one token at a time, recording every layer's gates, h (and c)."""

    family = "recurrent"

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Tokenizer,
        name: str,
        source: str,
        head: str = "lm",
        labels: tuple[str, ...] | list[str] = (),
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.cell = model.cell
        self.gate_names = CELLS[self.cell]
        self.layer_sizes = [int(s) for s in model.layer_sizes]
        self.num_layers = len(self.layer_sizes)
        self.hidden_size = max(self.layer_sizes)  # the internals' width (narrower layers padded)
        self.head = head
        self.labels = tuple(labels)
        if head == "classifier" and model.head.out_features != len(self.labels):
            raise CheckpointError(
                f"{source}: {model.head.out_features} outputs but {len(self.labels)} labels"
            )
        # Per layer: W_ih^T, W_hh^T (row-vector matmuls) and the biases.
        params = [tuple(t.detach() for t in model.layer_params(k)) for k in range(self.num_layers)]
        self._w_ih = [p[0].t().contiguous() for p in params]
        self._w_hh = [p[1].t().contiguous() for p in params]
        if self.cell == "lstm":
            self._bias = [p[2] + p[3] for p in params]
        else:  # GRU: r, z share the summed bias; n keeps b_hn inside r * (...)
            self._b_ih = [p[2] for p in params]
            self._b_hh = [p[3] for p in params]
        self._embedding = model.embedding.weight.detach()
        self._head_w = model.head.weight.detach()
        self._head_b = model.head.bias.detach()
        extra = {
            "cell": self.cell,
            "gate_names": list(self.gate_names),
            "layer_sizes": list(self.layer_sizes),
            "head": head,
            "tokenizer": getattr(tokenizer, "kind", "char"),
        }
        if head == "classifier":
            extra["labels"] = list(self.labels)
        self.info = ModelInfo(
            name=name,
            source=source,
            architecture=self.cell,
            num_layers=self.num_layers,
            hidden_size=self.hidden_size,
            num_heads=0,
            vocab_size=model.embedding.num_embeddings,
            context_size=None,
            extra=extra,
        )
        self._fingerprint = weights_fingerprint(dict(model.state_dict()), extra=json.dumps(tokenizer.tokens))
        # The kNN-LM key: the top layer's h after reading a token.
        self.memory_key_point = hook_name(RNN_HIDDEN, self.num_layers - 1)
        self.memory_key_dim = self.layer_sizes[-1]
        self._plan = RecurrentInterventions()  # clamps, resets, context window (set_interventions)
        self.logit_lens = False  # True (an lm head): internals also hold LENS_LOGITS (backends.logit_lens)
        self.reset()

    @classmethod
    def from_folder(cls, folder: Path, name: str | None = None) -> RecurrentBackend:
        model, tokenizer, config = load_recurrent(folder)
        return cls(
            model,
            tokenizer,
            name=name or Path(folder).name,
            source=str(folder),
            head=config.head,
            labels=config.labels,
        )

    def encode(self, text: str) -> Encoding:
        return self.tokenizer.encode(text)

    def token_text(self, token_id: int) -> str:
        return self.tokenizer.tokens[token_id]

    def fingerprint(self) -> str:
        return self._fingerprint

    def hook_points(self) -> tuple[str, ...]:
        kinds = (RNN_GATES, RNN_CELL, RNN_HIDDEN) if self.cell == "lstm" else (RNN_GATES, RNN_HIDDEN)
        return per_layer(kinds, self.num_layers)

    @property
    def device(self) -> str:
        return str(self._embedding.device)

    @property
    def position(self) -> int:
        return self._position

    def reset(self) -> None:
        self._zero_state()
        self._position = 0
        self._ids: list[int] = []  # every token read: context:W rebuilds the state from the last W
        self._last_reset = 0  # the step before which reset:S last zeroed the state

    def _zero_state(self) -> None:
        self._h = [torch.zeros(H) for H in self.layer_sizes]
        self._c = [torch.zeros(H) for H in self.layer_sizes]

    def set_interventions(self, specs) -> None:
        """Steps from now on carry out these specs (memviz.core.interventions; () = none)."""
        self._plan = RecurrentInterventions(specs)

    @torch.inference_mode()
    def restore(self, token_ids, states=None) -> np.ndarray:
        """Reset and take the state after `token_ids` without stepping: from the last row of the
        recorded `states` (the trace's h and c after each step, clamps included: exact), or without
        them by running the cell over the tokens under the interventions, recording nothing.
        Returns the keys: the top layer's h after each token [n, H]."""
        self.reset()
        ids = [int(t) for t in token_ids]
        n, top = len(ids), self.layer_sizes[-1]
        states = states or {}
        hidden, cell = states.get(HIDDEN), states.get(CELL)
        recorded = hidden is not None and len(hidden) >= n and (self.cell != "lstm" or cell is not None)
        if not n or not recorded:
            layer = self._lstm_layer if self.cell == "lstm" else self._gru_layer
            keys = np.zeros((n, top), np.float32)
            for t, token in enumerate(ids):
                self._prepare_state(token)
                x = self._embedding[token]
                for k in range(self.num_layers):
                    _, x = layer(k, x)
                self._position += 1
                keys[t] = x.numpy()
            return keys
        like = {"dtype": self._embedding.dtype, "device": self._embedding.device}
        for k, H in enumerate(self.layer_sizes):
            self._h[k] = torch.tensor(hidden[n - 1, k, :H], **like)
            if self.cell == "lstm":
                self._c[k] = torch.tensor(cell[n - 1, k, :H], **like)
        self._ids = ids
        self._position = n
        self._last_reset = max((s for s in self._plan.resets if s < n), default=0)
        return np.array(hidden[:n, -1, :top], dtype=np.float32)

    def _prepare_state(self, token_id: int) -> None:
        """reset:S and context:W act on the state before the step reads its token."""
        t = self._position
        self._ids.append(token_id)
        if t in self._plan.resets:
            self._zero_state()
            self._last_reset = t
        if self._plan.window is not None:
            self._zero_state()
            layer = self._lstm_layer if self.cell == "lstm" else self._gru_layer
            for token in self._ids[self._plan.window_start(t, self._last_reset) : t]:
                x = self._embedding[token]
                for k in range(self.num_layers):
                    _, x = layer(k, x)

    def _lstm_layer(self, k: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        H = self.layer_sizes[k]
        z = torch.addmm(self._bias[k].unsqueeze(0), x.unsqueeze(0), self._w_ih[k])
        z = torch.addmm(z, self._h[k].unsqueeze(0), self._w_hh[k]).squeeze(0)
        i = torch.sigmoid(z[:H])
        f = torch.sigmoid(z[H : 2 * H])
        g = torch.tanh(z[2 * H : 3 * H])
        o = torch.sigmoid(z[3 * H :])
        c = self._plan.clamp("cell", k, f * self._c[k] + i * g)
        h = self._plan.clamp("hidden", k, o * torch.tanh(c))
        self._c[k], self._h[k] = c, h
        return torch.stack((i, f, g, o)), h

    def _gru_layer(self, k: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        H = self.layer_sizes[k]
        gi = torch.addmm(self._b_ih[k].unsqueeze(0), x.unsqueeze(0), self._w_ih[k]).squeeze(0)
        gh = torch.addmm(self._b_hh[k].unsqueeze(0), self._h[k].unsqueeze(0), self._w_hh[k]).squeeze(0)
        r = torch.sigmoid(gi[:H] + gh[:H])
        z = torch.sigmoid(gi[H : 2 * H] + gh[H : 2 * H])
        n = torch.tanh(gi[2 * H :] + r * gh[2 * H :])
        h = self._plan.clamp("hidden", k, (1 - z) * n + z * self._h[k])
        self._h[k] = h
        return torch.stack((r, z, n)), h

    @torch.inference_mode()
    def step(self, token_id: int) -> StepOutput:
        L, W, G = self.num_layers, self.hidden_size, len(self.gate_names)
        self._prepare_state(token_id)
        x = self._embedding[token_id]
        gates = np.zeros((L, G, W), dtype=np.float32)
        hiddens = np.zeros((L, W), dtype=np.float32)
        cells = np.zeros((L, W), dtype=np.float32) if self.cell == "lstm" else None
        layer = self._lstm_layer if self.cell == "lstm" else self._gru_layer
        layer_h: list[torch.Tensor] = []
        for k in range(L):
            H = self.layer_sizes[k]
            g, x = layer(k, x)
            layer_h.append(x)
            gates[k, :, :H] = g.numpy()
            hiddens[k, :H] = x.numpy()
            if cells is not None:
                cells[k, :H] = self._c[k].numpy()
        out = torch.addmv(self._head_b, self._head_w, x)
        self._position += 1
        internals: dict[str, np.ndarray] = {GATES: gates, HIDDEN: hiddens}
        if cells is not None:
            internals[CELL] = cells
        logits: torch.Tensor | None = out
        if self.logit_lens and self.head != "classifier":
            from memviz.backends.logit_lens import LENS_LOGITS, recurrent_lens

            internals[LENS_LOGITS] = recurrent_lens(self._head_w, self._head_b, layer_h, out)
        if self.head == "classifier":
            internals[PREDICTION] = classifier_probabilities(out.numpy())
            logits = None
        return StepOutput(logits=logits, memory_key=x.numpy().copy(), internals=internals)

    @torch.inference_mode()
    def score(
        self, ids: torch.Tensor, targets: torch.Tensor, attentions: bool = False
    ) -> tuple[torch.Tensor, None]:
        """log p of targets [B, K] at the last K positions of ids [B, T], from a zero state: nn.LSTM /
        nn.GRU over the whole batch (the step state is untouched, no interventions). The steps
        before the last K go through in chunks whose outputs are dropped, so a long batch holds
        B x SCORE_CHUNK outputs, not B x T."""
        ids = ids.to(self._embedding.device)
        lead = ids.shape[1] - targets.shape[1]
        state = None
        for s in range(0, lead, SCORE_CHUNK):
            _, state = self.model.run(ids[:, s : min(lead, s + SCORE_CHUNK)], state)
        out, _ = self.model.run(ids[:, lead:], state)
        logp = torch.log_softmax(self.model.head(out).float(), dim=-1)
        return logp.gather(-1, targets.to(logp.device).unsqueeze(-1)).squeeze(-1).cpu(), None

    def _document_chunk(self) -> int:
        return DOCUMENT_CHUNK

    def document_keys(self, token_ids: list[int]) -> Iterator[np.ndarray]:
        """nn.LSTM / nn.GRU over the document in chunks, their own state carried between them (the
        step state is not touched): the top layer's h after each of tokens 0 .. n-2."""
        ids = list(token_ids)[:-1]
        chunk = self._document_chunk()
        state = None
        for s in range(0, len(ids), chunk):
            with torch.inference_mode():  # not around the yield: the consumer's code runs there
                x = torch.tensor([ids[s : s + chunk]], dtype=torch.long)
                out, state = self.model.run(x, state)
                keys = out[0].float().numpy()
            yield from keys


def classifier_probabilities(logits: np.ndarray) -> np.ndarray:
    """Sigmoid for one output, softmax for several (float32 [C])."""
    z = np.asarray(logits, dtype=np.float64)
    if z.size == 1:
        p = 1.0 / (1.0 + math.exp(-float(z[0]))) if z[0] > -700 else 0.0
        return np.array([p], dtype=np.float32)
    z = np.exp(z - z.max())
    return (z / z.sum()).astype(np.float32)
