"""`memviz gui --device/--dtype`: refused before a window opens when the machine lacks the device."""

from __future__ import annotations

import pytest

from memviz.backends import placement
from memviz.cli import main


@pytest.fixture(autouse=True)
def _restore_placement():
    saved = placement.preferred()
    yield
    placement.set_preferred(*saved)


def test_gui_refuses_a_missing_device_in_one_line(capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["gui", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cuda" in err[0] and err[0].startswith("memviz: error:")


def test_gui_device_and_dtype_become_the_preferred_placement(monkeypatch):
    import memviz.ui.app as app

    seen = {}
    monkeypatch.setattr(app, "run_gui", lambda **kwargs: seen.update(placement=placement.preferred()) or 0)
    assert main(["gui", "--device", "cpu", "--dtype", "bfloat16"]) == 0
    assert seen["placement"] == ("cpu", "bfloat16")
