"""`memviz recover`: a run that stopped without saving (a crash, a kill, a full disk) rebuilt from
the folder it was written to as it went (memviz.core.run_folder), or the list of such runs."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from memviz.errors import MemvizError, warn


def register(sub) -> None:
    p = sub.add_parser(
        "recover",
        help="save a run that stopped without saving (crash, kill, full disk) from its folder; "
        "with no folder, list them",
    )
    p.add_argument("folder", nargs="?", help="the run's folder (or its name under the runs folder)")
    p.add_argument("--out", help="the .memviz file to write")
    p.add_argument("--remove", action="store_true", help="remove the run's folder once the file is written")
    p.set_defaults(func=cmd_recover)


def _size(n: int) -> str:
    return f"{n / 2**20:,.1f} MB" if n >= 2**20 else f"{n / 2**10:,.1f} kB"


def _list() -> int:
    from memviz.core.run_folder import list_runs
    from memviz.paths import runs_folder

    parent = runs_folder()
    runs = list_runs(parent)
    if not runs:
        print(f"no runs to recover in {parent}")
        return 0
    print(f"runs in {parent} (memviz recover FOLDER --out run.memviz):")
    for run in runs:
        state = f"running (pid {run.pid})" if run.running else "stopped"
        print(
            f"{run.folder.name}  {run.started}  {run.model}  {run.steps:,} steps  "
            f"{_size(run.disk_bytes)}  {state}"
        )
    return 0


def _folder(name: str) -> Path:
    from memviz.paths import runs_folder

    folder = Path(name)
    if not folder.exists() and folder.name == name and (runs_folder() / name).is_dir():
        return runs_folder() / name  # a name from the list
    return folder


def cmd_recover(args: argparse.Namespace) -> int:
    if args.folder is None:
        if args.out is not None:
            raise MemvizError("--out: name the run's folder to recover (memviz recover lists them)")
        return _list()
    from memviz.core.run_folder import process_alive, read_manifest
    from memviz.core.trace import Trace
    from memviz.paths import output_file

    folder = _folder(args.folder)
    if args.out is None:
        read_manifest(folder)  # a folder that is not a run says so first
        raise MemvizError(f"{folder}: give --out FILE.memviz to write the recovered trace")
    out = output_file(args.out, "--out ")
    trace = Trace.recover(folder)
    trace.save(out)
    generated = sum(trace.generated)
    print(
        f"wrote {out}: {len(trace)} tokens ({len(trace) - generated} read, {generated} generated) "
        f"recovered from {folder}"
    )
    if args.remove:
        pid = int(read_manifest(folder).get("pid") or 0)
        if process_alive(pid):
            warn(f"{folder} is still being written (pid {pid}): not removed")
        else:
            del trace  # its memory maps of the folder's files go first
            shutil.rmtree(folder, ignore_errors=True)
    return 0
