"""Start-up probe, run in a fresh process by benchmarks/run.py; prints one JSON line.

    python benchmarks/startup_probe.py window LAUNCH_TIME            # the app's window, as `memviz` opens it
    python benchmarks/startup_probe.py model SPEC LAUNCH_TIME        # load_backend(SPEC) + one step
    python benchmarks/startup_probe.py app-model SPEC LAUNCH_TIME    # window, then the worker's `loaded`

LAUNCH_TIME is the parent's time.time() just before it started this process, so the figures
include the interpreter's own start. Settings go to a temporary file (the user's stay untouched).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

T_MAIN = time.time()
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def since(launch: float) -> float:
    return round(time.time() - launch, 4)


def window(launch: float, model: str | None = None) -> dict:
    t0 = time.time()
    from PySide6.QtCore import QSettings

    import memviz.ui.main_window  # noqa: F401 - timed apart from building the window
    from memviz.ui.app import application, create_window

    out = {"interpreter_s": round(T_MAIN - launch, 4), "import_s": round(time.time() - t0, 4)}
    folder = tempfile.mkdtemp(prefix="memviz-startup-")
    settings = QSettings(str(Path(folder) / "settings.ini"), QSettings.IniFormat)
    app = application()
    out["what"] = "memviz.ui.app.create_window (what `memviz gui` opens), offscreen"
    loaded = {}
    if model is None:
        # what the window does first; with a bundled default it starts loading it in the worker
        window = create_window(settings=settings)
    else:
        from memviz.ui.main_window import MainWindow

        window = MainWindow(settings=settings)
        window.worker.loaded.connect(lambda *_: loaded.setdefault("t", time.time()))
        window.show()
        window.load_model(model)
    out["built_s"] = since(launch)
    app.processEvents()
    window.repaint()  # the first frame, painted
    out["visible_s"] = since(launch)
    out["exposed"] = bool(window.windowHandle() and window.windowHandle().isExposed())
    if model is not None:
        deadline = time.time() + 120
        while "t" not in loaded and time.time() < deadline:
            app.processEvents()
            time.sleep(0.002)
        out["ready_s"] = round(loaded["t"] - launch, 4) if "t" in loaded else None
        out["load_s"] = round(loaded["t"] - t0, 4) if "t" in loaded else None
        out["first_step_s"] = 0.0
        out["messages"] = window.messages[-3:]
    window.shutdown() if hasattr(window, "shutdown") else None
    return out


def model(spec: str, launch: float) -> dict:
    t0 = time.time()
    from memviz.backends.registry import load_backend

    t1 = time.time()
    backend = load_backend(spec)
    t2 = time.time()
    ids = backend.encode("def f(x):").ids
    backend.step(ids[0])
    t3 = time.time()
    return {
        "interpreter_s": round(T_MAIN - launch, 4),
        "import_s": round(t1 - t0, 4),
        "load_s": round(t2 - t0, 4),
        "first_step_s": round(t3 - t2, 4),
        "ready_s": since(launch),
        "model": backend.info.name,
    }


def main() -> None:
    mode = sys.argv[1]
    if mode == "window":
        result = window(float(sys.argv[2]))
    elif mode == "model":
        result = model(sys.argv[2], float(sys.argv[3]))
    elif mode == "app-model":
        result = window(float(sys.argv[3]), model=sys.argv[2])
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(result), flush=True)
    os._exit(0)  # skip interpreter teardown (threads, Qt): not part of start-up


if __name__ == "__main__":
    main()
