"""The window must not wait for torch (seconds to import): the model loads in the worker (issue 7)."""

from __future__ import annotations

import os
import subprocess
import sys


def test_window_modules_do_not_import_torch():
    code = (
        "import sys\n"
        "import memviz.ui.app, memviz.ui.main_window, memviz.core.session, memviz.core.trace\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False", "a module on the window's import path imports torch at module level"
