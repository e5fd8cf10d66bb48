"""Markdown tables from a results file of benchmarks/run.py:  python benchmarks/report.py results.json"""

from __future__ import annotations

import json
import sys


def yes(ok) -> str:
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def report(r: dict) -> str:
    s = r["sections"]
    m = r["machine"]
    out = [
        f"Machine: {m['cpu_count']} cores ({m['cpu']}), torch {m['torch']} ({m['torch_threads']} threads), "
        f"transformers {m['transformers']}, faiss {m['faiss']}, PySide6 {m['PySide6']}, pyqtgraph {m['pyqtgraph']}. "
        f"Load average at start {r['start']['load_average']}, at end {r['end']['load_average']}; "
        f"`memviz train` processes running: {r['start']['training_processes']} at start, "
        f"{r['end']['training_processes']} at end. {'Quick run.' if r['quick'] else 'Full run'} "
        f"({r['total_seconds']:.0f} s, {r['start']['time_utc']}).",
        "",
    ]
    if "gpt2" in s:
        g = s["gpt2"]
        out += [
            "**GPT-2 small, ms per token** (p50 over the steps just before each context length; "
            f"{g['window_steps']} steps each)",
            "",
            "| context | memviz Session.step | bare SDPA loop | bare eager loop | eager + attentions | "
            "memviz / SDPA | memviz / eager |",
            "|---|---|---|---|---|---|---|",
        ]
        for c, row in g["contexts"].items():
            out.append(
                f"| {c} | {row['memviz']['p50']:.2f} (p95 {row['memviz']['p95']:.2f}) | "
                f"{row['bare_sdpa']['p50']:.2f} | {row['bare_eager']['p50']:.2f} | "
                f"{row['bare_eager_attentions']['p50']:.2f} | {row['ratio_vs_bare_sdpa']:.3f} | "
                f"{row['ratio_vs_bare_eager']:.3f} |"
            )
        out += [
            "",
            f"Target ratio <= {g['target_ratio_max']}: vs the eager loop {yes(g['target_met_vs_bare_eager'])} "
            f"(worst {g['worst_ratio_vs_bare_eager']}), vs the SDPA loop {yes(g['target_met_vs_bare_sdpa'])} "
            f"(worst {g['worst_ratio_vs_bare_sdpa']}).",
            "",
        ]
    if "incremental" in s:
        i = s["incremental"]
        out += [
            f"**Incremental vs full re-run, n = {i['n']}**: {i['incremental_total_s']} s stepping with the KV "
            f"cache vs {i['full_rerun_total_s_estimated']} s re-running the prefix with attentions at every step "
            f"(estimated from {len(i['full_forward_ms_by_length'])} timed lengths): **{i['speedup']}x** "
            f"(target >= {i['target_min']}x: {yes(i['target_met'])}).",
            "",
        ]
    if "lstm" in s:
        lstm = s["lstm"]
        out += [
            f"**LSTM 2 x 512** ({lstm['model']}), ms per token p50: memviz Session.step "
            f"{lstm['memviz_session_step']['p50']:.3f}, LSTMBackend.step {lstm['memviz_backend_step']['p50']:.3f}, "
            f"nn.LSTM one step {lstm['bare_nn_lstm_step']['p50']:.3f} (oneDNN off) / "
            f"{lstm['bare_nn_lstm_step_default_onednn']['p50']:.3f} (default, oneDNN).",
            "",
        ]
    if "draw" in s:
        d = s["draw"]
        out += [
            "**Drawing one new step** (offscreen, 1600 x 1000), ms",
            "",
            "| case | MainWindow redraw p50 / p95 | all panels p50 / p95 | scrub p95 | slowest panels (p95) |",
            "|---|---|---|---|---|",
        ]
        for key, case in d["cases"].items():
            slow = sorted(case["per_panel_new_step"].items(), key=lambda kv: -kv[1]["p95"])[:3]
            slow_text = ", ".join(f"{k} {v['p95']:.1f}" for k, v in slow)
            out.append(
                f"| {key} | {case['main_window_new_step']['p50']:.1f} / {case['main_window_new_step']['p95']:.1f} | "
                f"{case['all_panels_new_step']['p50']:.1f} / {case['all_panels_new_step']['p95']:.1f} | "
                f"{case['all_panels_scrub']['p95']:.1f} | {slow_text} |"
            )
        out += ["", f"Target p95 <= {d['target_p95_ms_max']} ms (GPT-2 cases): {yes(d['target_met'])}.", ""]
    if "memory" in s:
        mem = s["memory"]
        out += [
            f"**Long-term memory** ({mem['index']}; {mem['keys']}), one query at a time, k = {mem['k']}",
            "",
            "| entries | HNSW p50 / p95 ms | recall@10 | HNSW build entries/s | exact p50 / p95 ms |",
            "|---|---|---|---|---|",
        ]
        for n, row in mem["sizes"].items():
            h, f = row["hnsw"], row["flat"]
            out.append(
                f"| {int(n):,} | {h['query_ms']['p50']:.3f} / {h['query_ms']['p95']:.3f} | {h['recall_at_10']:.3f} | "
                f"{h['build_entries_per_s']:,} | {f['query_ms']['p50']:.2f} / {f['query_ms']['p95']:.2f} |"
            )
        for n, row in mem.get("store_end_to_end", {}).items():
            out.append("")
            out.append(
                f"MemoryStore.search at {int(n):,} entries ({row['index']}): p50 {row['search_ms']['p50']:.3f} ms "
                f"(index alone {row['raw_index_search_ms']['p50']:.3f}); add_document {row['add_entries_per_s']:,} "
                f"entries/s; {row['disk_mb']} MB on disk."
                + (
                    f" The memory panel's read of one step's records (`get`, k of them, from a "
                    f"{row['document_chars']:,}-character document): p50 {row['get_records_ms']['p50']:.3f} ms, "
                    f"p95 {row['get_records_ms']['p95']:.3f} ms."
                    if "get_records_ms" in row
                    else ""
                )
            )
        if "isotropic_100k_hnsw" in mem:
            iso = mem["isotropic_100k_hnsw"]
            out.append("")
            out.append(
                f"Worst case, isotropic Gaussian keys, 100k: HNSW p50 {iso['query_ms']['p50']:.3f} ms, "
                f"recall@10 {iso['recall_at_10']:.3f}."
            )
        if "store_p50_ms_at_1M_estimated" in mem:
            out.append("")
            out.append(
                f"Target p50 <= 2 ms at 1M with recall@10 >= 0.9: {yes(mem['target_met'])} "
                f"(store path at 1M, estimated: {mem['store_p50_ms_at_1M_estimated']} ms)."
            )
        out.append("")
    if "trace" in s:
        t = s["trace"]
        line = (
            f"**Trace memory, {t['tokens']} tokens, GPT-2 small shape**: attention held as {t['attention_dtype_in_ram']}; "
            f"Trace.nbytes {t['trace_nbytes_mb']} MB, tracemalloc {t['tracemalloc_mb']} MB (peak "
            f"{t['tracemalloc_peak_mb']}), RSS +{t['rss_delta_mb']} MB (dense float32 would be "
            f"{t['dense_float32_would_be_mb']} MB); on disk {t['disk_mb_random_attention']} MB with random attention"
        )
        if "real_gpt2_small_trace" in t:
            real = t["real_gpt2_small_trace"]
            line += (
                f", {real['disk_mb']} MB for the GPT-2 small run of section 1 ({real['nbytes_mb']} MB in RAM)"
            )
        out += [line + f". Target <= {t['target_mb_max']} MB in RAM: {yes(t['target_met'])}.", ""]
    if "startup" in s:
        st = s["startup"]
        w = st["window"]
        out += [
            f"**Start-up** (offscreen, median of {st['repeats']} fresh processes): window visible "
            f"{st['window_median_s']:.2f} s after launch (imports {w['import_s']['p50'] / 1e3:.2f} s); target <= "
            f"{st['target_s_max']} s: {yes(st['target_met'])}."
        ]
        for arch, row in st.get("model_ready", {}).items():
            text = (
                f"{arch} ({row['model']}, {row['what']}): load_backend + first step "
                f"{row['backend_ready_s']['p50'] / 1e3:.2f} s after launch (first step {row['first_step_s']['p50']:.0f} ms)"
            )
            if "app_model_loaded_s" in row and row["app_model_loaded_s"].get("n"):
                text += (
                    f"; in the app, window {row['app_window_visible_s']['p50'] / 1e3:.2f} s and model ready "
                    f"{row['app_model_loaded_s']['p50'] / 1e3:.2f} s after launch"
                )
            out.append("- " + text + ".")
        out.append("")
    out.append(f"Targets: {r.get('targets_met')}")
    return "\n".join(out)


if __name__ == "__main__":
    print(report(json.loads(open(sys.argv[1]).read())))
