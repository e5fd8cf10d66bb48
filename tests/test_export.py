"""Export: figures (PNG/SVG/PDF), animations, CSV and `memviz export`, rendered offscreen from traces."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from support import TinyPanel  # the shared test-only panel (tests/support.py)

from memviz.cli import main
from memviz.core.trace import Trace
from memviz.core.view import ViewState
from memviz.export import render
from memviz.export.animate import export_animation
from memviz.export.data import as_float_array, export_csv, read_csv_values
from memviz.panels.memory_panel import MemoryPanel
from memviz.panels.registry import PANEL_CLASSES

SVG = "{http://www.w3.org/2000/svg}"


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def traces(tmp_path_factory, lstm_dir, gpt2_dir) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("traces")
    out = {}
    # The LSTM run recalls from a long-term memory, so the memory panel has something to draw.
    document = folder / "fox.txt"
    document.write_text("The quick brown fox jumps over the lazy dog.\n")
    store = folder / "lstm.sqlite"
    assert main(["memory", "add", "--store", str(store), "--model", str(lstm_dir), str(document)]) == 0
    for arch, model, memory in (("lstm", lstm_dir, ["--memory", str(store)]), ("gpt2", gpt2_dir, [])):
        path = folder / f"{arch}.memviz"
        assert (
            main(
                [
                    "trace",
                    "--model",
                    str(model),
                    "--text",
                    "The quick brown fox jumps",
                    "--generate",
                    "4",
                    *memory,
                    "--out",
                    str(path),
                ]
            )
            == 0
        )
        out[arch] = path
    return out


@pytest.fixture(scope="module")
def app():
    return render.ensure_app()


def panel_params():
    classes = [TinyPanel] + list(PANEL_CLASSES)
    return [pytest.param(cls, id=cls.name) for cls in classes]


def arch_for(cls) -> str:
    return "gpt2" if cls.architectures == ("gpt2",) else "lstm"


def load(traces, cls) -> Trace:
    trace = Trace.load(traces[arch_for(cls)])
    if cls.name == "match":  # the app publishes a search's matches for the run it searched
        from memviz.core.search import Query, search
        from memviz.panels.match import publish

        publish(trace, search(trace, Query(layer=0, start=2, end=5)))
    return trace


def pixel_variance(png: Path) -> float:
    from PIL import Image

    with Image.open(png) as image:
        return float(np.asarray(image.convert("L"), dtype=np.float64).var())


# -- figures -------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", panel_params())
@pytest.mark.parametrize("theme", ["talk", "dark"])
def test_svg_is_vector_with_text(app, traces, tmp_path, cls, theme):
    trace = load(traces, cls)
    out = render.export_figure(trace, cls, ViewState(cursor=len(trace) - 1, theme=theme), tmp_path / "f.svg")
    root = ET.parse(out).getroot()  # parses: well-formed XML even with control-character tokens
    texts = ["".join(t.itertext()).strip() for t in root.iter(SVG + "text")]
    assert any(cls.title in t for t in texts), texts[:5]  # the figure title
    numeric = [t for t in texts if t.replace(".", "", 1).replace("-", "", 1).isdigit()]
    assert numeric, f"no tick labels as <text>: {texts[:20]}"
    assert root.get("viewBox") == "0 0 1280 720"
    assert root.iter(SVG + "image") or root.iter(SVG + "polyline")


@pytest.mark.parametrize("cls", panel_params())
def test_pdf_renders_and_is_not_blank(app, traces, tmp_path, cls):
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) is not installed")
    trace = load(traces, cls)
    out = render.export_figure(trace, cls, ViewState(cursor=len(trace) - 1, theme="talk"), tmp_path / "f.pdf")
    subprocess.run(
        ["pdftoppm", "-png", "-r", "96", "-singlefile", str(out), str(tmp_path / "page")], check=True
    )
    page = tmp_path / "page.png"
    from PIL import Image

    with Image.open(page) as image:
        assert abs(image.size[0] - 1280) <= 2 and abs(image.size[1] - 720) <= 2  # 96 dpi: 1 px = 1 px
    assert pixel_variance(page) > 100
    if shutil.which("pdffonts"):
        fonts = subprocess.run(["pdffonts", str(out)], capture_output=True, text=True, check=True).stdout
        rows = fonts.splitlines()[2:]
        assert rows and all(" yes " in row for row in rows), fonts  # every font embedded


@pytest.mark.parametrize("cls", panel_params())
def test_png_scale_two_is_twice_as_wide(app, traces, tmp_path, cls):
    from PIL import Image

    trace = load(traces, cls)
    state = ViewState(cursor=len(trace) - 1, theme="dark")
    one = render.export_figure(trace, cls, state, tmp_path / "one.png", scale=1)
    two = render.export_figure(trace, cls, state, tmp_path / "two.png", scale=2)
    with Image.open(one) as a, Image.open(two) as b:
        assert b.size == (2 * a.size[0], 2 * a.size[1])
    assert pixel_variance(one) > 10


def test_themes_differ_and_talk_is_light(app, traces, tmp_path):
    from PIL import Image

    trace = load(traces, TinyPanel)
    for theme in ("talk", "dark"):
        render.export_figure(trace, TinyPanel, ViewState(cursor=3, theme=theme), tmp_path / f"{theme}.png")
    with Image.open(tmp_path / "talk.png") as talk, Image.open(tmp_path / "dark.png") as dark:
        assert np.asarray(talk.convert("L")).mean() > 200
        assert np.asarray(dark.convert("L")).mean() < 100


def test_svg_strokes_do_not_rely_on_vector_effect(app, traces, tmp_path):
    """Cosmetic pens in scaled groups are mapped to figure pixels (viewers without vector-effect)."""
    trace = load(traces, TinyPanel)
    out = render.export_figure(trace, TinyPanel, ViewState(cursor=5), tmp_path / "f.svg")
    root = ET.parse(out).getroot()
    for group in root.iter(SVG + "g"):
        m = render._matrix(group)
        if m and (m[0], m[3]) != (1.0, 1.0):
            assert not [
                c for c in group if c.get("vector-effect") == "non-scaling-stroke" and c.tag != SVG + "image"
            ]


def test_unknown_panel_lists_valid_ones():
    from memviz.errors import MemvizError

    with pytest.raises(MemvizError, match="unknown panel 'nope'; panels: "):
        render.panel_class("nope", classes=[TinyPanel])


# -- animation -----------------------------------------------------------------------------------
def test_gif_has_one_frame_per_step(app, traces, tmp_path):
    from PIL import Image

    trace = load(traces, TinyPanel)
    seen = []
    out = export_animation(
        trace,
        TinyPanel,
        ViewState(theme="talk"),
        tmp_path / "a.gif",
        start=2,
        stop=7,
        progress=lambda done, total: seen.append((done, total)),
        size=(400, 300),
    )
    with Image.open(out) as gif:
        assert gif.n_frames == 6
    assert seen[-1] == (6, 6)


def test_animation_cancel_removes_the_file(app, traces, tmp_path):
    from memviz.export.animate import Cancelled

    trace = load(traces, TinyPanel)
    calls = []
    with pytest.raises(Cancelled):
        export_animation(
            trace,
            TinyPanel,
            ViewState(),
            tmp_path / "a.gif",
            size=(300, 200),
            cancel=lambda: len(calls) >= 2,
            progress=lambda d, t: calls.append(d),
        )
    assert not (tmp_path / "a.gif").exists()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_mp4_has_one_frame_per_step(app, traces, tmp_path):
    trace = load(traces, TinyPanel)
    out = export_animation(
        trace, TinyPanel, ViewState(), tmp_path / "a.mp4", start=0, stop=4, size=(401, 301)
    )
    probe = shutil.which("ffprobe")
    if probe:
        frames = subprocess.run(
            [
                probe,
                "-v",
                "error",
                "-count_frames",
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream=nb_read_frames",
                "-of",
                "csv=p=0",
                str(out),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert int(frames) == 5
    assert out.stat().st_size > 1000


def test_memory_figure_needs_only_the_trace(app, tmp_path, lstm_dir):
    """The memory panel's snippets are saved in the trace: the same figure once the store is gone."""
    document = tmp_path / "fox.txt"
    document.write_text("The quick brown fox jumps over the lazy dog.\n")
    store = tmp_path / "m.sqlite"
    assert main(["memory", "add", "--store", str(store), "--model", str(lstm_dir), str(document)]) == 0
    trace_path = tmp_path / "run.memviz"
    command = ["trace", "--model", str(lstm_dir), "--text", "The quick brown", "--memory", str(store)]
    assert main([*command, "--out", str(trace_path)]) == 0

    def figure_texts(name: str) -> list[str]:
        state = ViewState(cursor=5, theme="talk")
        out = render.export_figure(Trace.load(trace_path), MemoryPanel, state, tmp_path / name)
        return ["".join(t.itertext()) for t in ET.parse(out).getroot().iter(SVG + "text")]

    before = figure_texts("before.svg")
    assert any("fox.txt" in t for t in before) and not any("not saved" in t for t in before)
    for file in tmp_path.iterdir():
        if file.name.startswith("m.sqlite"):  # the database, its WAL files, its index
            file.unlink()
    assert figure_texts("after.svg") == before


# -- CSV -----------------------------------------------------------------------------------------
def test_csv_unit_equals_trace(traces, tmp_path):
    trace = Trace.load(traces["lstm"])
    out = export_csv(trace, tmp_path / "u.csv", series="unit", layer=1, unit=5)
    header, rows = read_csv_values(out)
    assert header == ["step", "token", "generated", "i", "f", "g", "o", "cell", "hidden"]
    values = as_float_array(rows, 3)
    assert values.shape == (len(trace), 6)
    np.testing.assert_array_equal(values[:, :4], trace.array("gates")[:, 1, :, 5].astype(np.float64))
    np.testing.assert_array_equal(values[:, 4], trace.array("cell")[:, 1, 5].astype(np.float64))
    np.testing.assert_array_equal(values[:, 5], trace.array("hidden")[:, 1, 5].astype(np.float64))
    assert [r[1] for r in rows] == trace.token_text


def test_csv_attention_and_topk_equal_trace(traces, tmp_path):
    trace = Trace.load(traces["gpt2"])
    header, rows = read_csv_values(export_csv(trace, tmp_path / "a.csv", series="attention", layer=2, head=1))
    np.testing.assert_array_equal(as_float_array(rows, 2), trace.attention_matrix(2, 1).astype(np.float64))
    header, rows = read_csv_values(export_csv(trace, tmp_path / "k.csv", series="topk", step=3))
    assert [int(r[1]) for r in rows] == list(trace.array("topk_ids")[3])
    np.testing.assert_array_equal(
        np.array([float(r[-1]) for r in rows]), trace.array("topk_probs")[3].astype(np.float64)
    )


@pytest.mark.parametrize("arch", ["lstm", "gpt2"])
def test_csv_topk_names_each_candidate(traces, tmp_path, arch):
    """The top-k CSV holds the candidates' texts, not ids alone (issue 13 item 8)."""
    import csv

    trace = Trace.load(traces[arch])
    out = export_csv(trace, tmp_path / "k.csv", series="topk", step=2)
    with open(out, newline="", encoding="utf-8") as handle:
        table = list(csv.reader(handle))
    assert table[0] == ["rank", "token_id", "token", "probability"]
    texts = [row[2] for row in table[1:]]
    assert texts == [trace.text_of(int(i)) for i in trace.array("topk_ids")[2]]
    assert any(texts)


# -- the command line ----------------------------------------------------------------------------
def test_cli_export_from_saved_trace_without_the_model(tmp_path, lstm_dir, capsys):
    model = tmp_path / "model"
    shutil.copytree(lstm_dir, model)
    trace_path = tmp_path / "run.memviz"
    assert main(["trace", "--model", str(model), "--text", "hello world", "--out", str(trace_path)]) == 0
    shutil.rmtree(model)  # no model any more: export must not need it
    folder = tmp_path / "figs"
    assert main(["export", "--trace", str(trace_path), "--all", "--format", "svg", "--out", str(folder)]) == 0
    names = {p.stem for p in folder.iterdir()}
    expected = {c.name for c in PANEL_CLASSES if c.supports(Trace.load(trace_path))}
    assert names == expected
    if PANEL_CLASSES:
        name = next(iter(expected))
        assert (
            main(
                [
                    "export",
                    "--trace",
                    str(trace_path),
                    "--panel",
                    name,
                    "--step",
                    "3",
                    "--theme",
                    "dark",
                    "--out",
                    str(tmp_path / "one.png"),
                    "--scale",
                    "2",
                ]
            )
            == 0
        )
        assert (
            main(
                [
                    "export",
                    "--trace",
                    str(trace_path),
                    "--panel",
                    name,
                    "--animate",
                    "--from",
                    "1",
                    "--to",
                    "4",
                    "--format",
                    "gif",
                    "--out",
                    str(tmp_path / "a.gif"),
                ]
            )
            == 0
        )
        from PIL import Image

        with Image.open(tmp_path / "a.gif") as gif:
            assert gif.n_frames == 4


def test_cli_export_from_trace_options(tmp_path, lstm_dir):
    out = tmp_path / "u.csv"
    assert (
        main(
            [
                "export",
                "--model",
                str(lstm_dir),
                "--text",
                "abc abc",
                "--format",
                "csv",
                "--series",
                "unit",
                "--unit",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert len(read_csv_values(out)[1]) == 7


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--panel", "nope", "--out", "x.png"], "unknown panel 'nope'; panels:"),
        (["--all", "--step", "999", "--out", "figs"], "--step 999 is out of range: this trace has"),
        (["--all", "--layer", "9", "--out", "figs"], "--layer 9 is out of range"),
        (["--all", "--out", "f.xyz"], None),
        (["--panel", "x", "--out", "f.bmp"], "give --format"),
        (["--all", "--animate", "--format", "png", "--out", "figs"], "--animate writes gif or mp4"),
        (
            ["--all", "--format", "gif", "--from", "5", "--to", "2", "--out", "figs"],
            "--to 2 is before --from 5",
        ),
        (["--all", "--scale", "0", "--out", "figs"], "--scale must be more than 0"),
        (["--format", "csv", "--series", "attention", "--out", "a.csv"], "needs a GPT-2 trace"),
        (["--all", "--out", "no/such/folder/figs"], "does not exist"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(traces, tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    code = main(["export", "--trace", str(traces["lstm"])] + extra)
    err = capsys.readouterr().err.strip()
    if message is None:  # --all into a new folder named f.xyz is fine
        assert code == 0
        return
    assert code == 2, err
    assert err.startswith("memviz: error: ") and "\n" not in err
    assert message in err


def test_cli_needs_a_trace_or_a_model(capsys):
    assert main(["export", "--all", "--out", "x"]) == 2
    assert "give --trace" in capsys.readouterr().err
    assert main(["export", "--trace", "/no/such.memviz", "--all", "--out", "x"]) == 2
    assert "no such trace file" in capsys.readouterr().err
