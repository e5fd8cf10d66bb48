"""Re-running from the first step a change of interventions touches (the app's Run -> Intervene).

A change of interventions (old set -> new set) leaves every step before its first changed step as it
was: those rows are copied from the run before, and the model's state after them is restored by the
backend without stepping (`Backend.restore`); only the rest of the text is read again. The first
step each spec can change, from the semantics in memviz.core.interventions and the backends:

    head:L.H=zero, cell:L.U=V, hidden:L.U=V   0 (they act at every step)
    reset:S                                   S (the state is zeroed before step S)
    mask:A-B                                  A (a query before A never sees keys A..B anyway)
    context:W                                 W (step t < W sees tokens 0..t from position 0, as
                                                 without a window; step W is the first to lose one)

`Session.resume_from` is the caller; this module holds what it needs and nothing of the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from memviz.core.trace import StepRecord, Trace

# Columns the Trace keeps of a step's internals (the rest of a row's columns travel in `memory`).
_INTERNAL_COLUMNS = frozenset(Trace.LSTM_KEYS)
_CANDIDATE_COLUMNS = ("topk_ids", "topk_probs")


def first_step(spec) -> int:
    """The first step one spec can change (see the table above)."""
    if spec.kind == "reset":
        return int(spec.step)
    if spec.kind == "mask":
        return int(spec.start)
    if spec.kind == "context":
        return int(spec.width)
    return 0  # head ablations and clamps act from the first step


def first_changed_step(old: Sequence, new: Sequence) -> int | None:
    """The first step at which a run with `new` can differ from one with `old`; None when the two
    sets are the same (in any order). A spec in one set only changes the run from its first step."""
    before, after = {s.spec: s for s in old}, {s.spec: s for s in new}
    changed = [after.get(k) or before[k] for k in set(before) ^ set(after)]
    return min((first_step(s) for s in changed), default=None)


def steps_to_take_over(
    source: Trace, target: Trace, token_ids: Sequence[int], step: int, lens: bool = False
) -> int:
    """How many of `source`'s first steps a new run (`target`, still empty) over `token_ids` can take
    over when nothing changes before `step`: the same model, memory and columns, read tokens equal
    to the text's, and always one step fewer than they agree on, so that the step after the last
    one taken over is the text's next token: the copied rows' one-step-late values (the next
    token's log-probability) are then right as they are, and the new run reads at least one step.
    A new run that records queries and keys (format 2) takes no attention rows over: it reads from
    the start (the runs that start later, a mask: or context: one, record dense rows)."""
    if step <= 0 or len(target) or source.model != target.model or source.memory != target.memory:
        return 0
    if len(source) and source.has("lens_topk_ids") != lens:  # one run has the logit lens, not the other
        return 0
    if source.has("attention") and getattr(target, "attention_storage", None) == "qk":
        return 0  # a q/k run (format 2) records queries and keys: copied rows cannot stand in for them
    same = 0
    for t in range(min(len(source), len(token_ids))):
        if source.generated[t] or source.token_ids[t] != token_ids[t]:
            break
        same += 1
    return max(0, min(step, same - 1))


def prefix_states(source: Trace, n: int) -> dict[str, np.ndarray]:
    """The recorded states of the first n steps (cell, hidden: [n, L, H] views) for Backend.restore."""
    return {key: source.array(key)[:n] for key in ("cell", "hidden") if source.has(key)}


def copy_steps(source: Trace, target: Trace, n: int) -> None:
    """Append `source`'s first n steps to `target` as they are: every column, attention rows, the
    candidates' texts and the records of the memories they retrieved."""
    columns = {key: source.array(key) for key in source.column_names}
    attention = source.has("attention")
    token_columns = [key for key in columns if key.endswith("_ids") and key != "memory_ids"]
    for t in range(n):
        row = {key: column[t] for key, column in columns.items()}
        internals = {key: row.pop(key) for key in list(row) if key in _INTERNAL_COLUMNS}
        if attention:
            internals["attention_row"] = source.attention_rows_at(t)
        topk_ids, topk_probs = (row.pop(key) for key in _CANDIDATE_COLUMNS)
        for key in token_columns:
            for token_id in np.asarray(columns[key][t]).reshape(-1):
                text = source.text_of(int(token_id)) if token_id >= 0 else None
                if text is not None:
                    target.vocab.setdefault(int(token_id), text)
        target.append(
            StepRecord(
                token_id=source.token_ids[t],
                token_text=source.token_text[t],
                generated=source.generated[t],
                topk_ids=topk_ids,
                topk_probs=topk_probs,
                internals=internals,
                memory=row,
                token_bytes=source.token_bytes[t],
            )
        )
    if "memory_ids" in columns and n:
        ids = {int(i) for i in np.asarray(columns["memory_ids"][:n]).reshape(-1) if i >= 0}
        target.add_memory_records(r for i in sorted(ids) if (r := source.memory_record(i)) is not None)
