"""What an experiment hands back, and its folder on disk: results.csv (one row per measurement, the
columns documented) and results.json (settings, seed, models, memviz version, date, the figure's
arrays). Written beside and renamed into place, so an interrupted or failed write leaves the folder
as it was; read back with one clear error for a folder that is not a complete experiment."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from memviz.errors import MemvizError
from memviz.paths import temporary_beside

FORMAT = "memviz-experiment"
FORMAT_VERSION = 1
CSV_NAME, JSON_NAME = "results.csv", "results.json"
TYPES = {"int": int, "float": float, "str": str, "bool": bool}


@dataclass
class ExperimentResult:
    name: str  # "copy", "context", "timescales", "knn"
    settings: dict  # every setting incl. seed -> results.json
    models: list[dict]  # per model: {"name", "fingerprint", "kind", ...}
    columns: dict[str, str]  # results.csv column -> its one-line documentation (README documents them too)
    rows: list[dict]  # results.csv rows (one column "model" naming the model on every row)
    extra: dict = field(default_factory=dict)  # arrays/other things the figure needs -> results.json

    def model_names(self) -> list[str]:
        return [m["name"] for m in self.models]

    def column(self, name: str, model: str | None = None) -> list:
        """One column's values in row order (only `model`'s rows when given)."""
        return [r[name] for r in self.rows if model is None or r.get("model") == model]


def jsonable(value):
    """numpy arrays and scalars as lists and numbers; NaN and infinities as null (strict JSON)."""
    if hasattr(value, "tolist"):  # numpy arrays, numpy scalars, torch tensors
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _type_name(values: list) -> str:
    kinds = {type(v) for v in values if v is not None}
    if kinds <= {bool} and kinds:
        return "bool"
    if kinds <= {int, bool}:
        return "int"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values if v is not None):
        return "float"
    return "str"


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back to the same float ("nan")
    if hasattr(value, "item"):
        return _cell(value.item())
    return str(value)


def _check(result: ExperimentResult) -> None:
    if "model" not in result.columns:
        raise MemvizError(f"experiment {result.name}: its columns must include 'model'")
    for i, row in enumerate(result.rows):
        if set(row) != set(result.columns):
            missing = sorted(set(result.columns) - set(row))
            unknown = sorted(set(row) - set(result.columns))
            raise MemvizError(f"experiment {result.name}: row {i} has missing {missing}, unknown {unknown}")


def _csv_text(result: ExperimentResult) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = list(result.columns)
    writer.writerow(names)
    for row in result.rows:
        writer.writerow([_cell(row[c]) for c in names])
    return buffer.getvalue()


def _json_document(result: ExperimentResult) -> dict:
    from memviz import __version__

    names = list(result.columns)
    types = {c: _type_name([jsonable(r[c]) for r in result.rows]) for c in names}
    types["model"] = "str"
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "experiment": result.name,
        "memviz_version": __version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": jsonable(result.settings),
        "models": jsonable(result.models),
        "columns": dict(result.columns),
        "column_types": types,
        "rows": len(result.rows),
        "extra": jsonable(result.extra),
    }


def is_experiment_folder(folder: Path) -> bool:
    """A folder memviz wrote an experiment into (its results.json says so)."""
    try:
        document = json.loads((folder / JSON_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and document.get("format") == FORMAT


def prepare_out_dir(out_dir: str | os.PathLike) -> Path:
    """The folder to write into: new, empty, or an earlier experiment's (replaced); else refused.

    Called before any work, so a bad --out costs nothing; creates the folder if it is new.
    """
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise MemvizError(f"--out {folder}: is a file; an experiment writes into a folder")
    if folder.is_dir():
        if any(folder.iterdir()) and not is_experiment_folder(folder):
            raise MemvizError(
                f"--out {folder}: holds files that are not a memviz experiment's; give a new or empty folder"
            )
    else:
        parent = folder.parent if str(folder.parent) else Path(".")
        if not parent.is_dir():
            raise MemvizError(f"--out {folder}: folder {parent} does not exist")
        try:
            folder.mkdir()
        except OSError as exc:
            raise MemvizError(f"--out {folder}: cannot create ({exc.strerror or exc})") from None
    if not os.access(folder, os.W_OK):
        raise MemvizError(f"--out {folder}: folder is not writable")
    return folder


def write_results(result: ExperimentResult, out_dir: Path) -> list[Path]:
    """results.csv and results.json in `out_dir`: both written beside, then renamed (JSON last, so a
    folder whose results.json is new also has its new CSV). Returns the two paths."""
    _check(result)
    folder = prepare_out_dir(out_dir)
    texts = {
        folder / CSV_NAME: _csv_text(result),
        folder / JSON_NAME: json.dumps(_json_document(result), indent=1, allow_nan=False) + "\n",
    }
    temporaries: dict[Path, Path] = {}
    try:
        for path, text in texts.items():
            tmp = temporaries[path] = temporary_beside(path)
            with open(tmp, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
        for path, tmp in temporaries.items():
            os.replace(tmp, path)
    except OSError as exc:
        raise MemvizError(f"--out {folder}: cannot write ({exc.strerror or exc})") from None
    finally:
        for tmp in temporaries.values():
            tmp.unlink(missing_ok=True)
    return list(texts)


def _parse(text: str, kind: str, where: str):
    if text == "":
        return None
    try:
        if kind == "float":
            return float(text)
        if kind == "int":
            return int(text)
        if kind == "bool":
            return text not in ("0", "False", "false")
    except ValueError:
        raise MemvizError(f"{where}: {text!r} is not a {kind}") from None
    return text


def read_results(out_dir: str | os.PathLike) -> ExperimentResult:
    """An experiment folder back as the ExperimentResult that wrote it (one-line error if malformed)."""
    folder = Path(out_dir)
    json_path, csv_path = folder / JSON_NAME, folder / CSV_NAME
    try:
        document = json.loads(json_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MemvizError(f"{folder}: no {JSON_NAME} (not a memviz experiment folder)") from None
    except (OSError, ValueError) as exc:
        raise MemvizError(f"{json_path}: cannot read ({str(exc).splitlines()[0]})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise MemvizError(f"{json_path}: not a memviz experiment's results (no format {FORMAT!r})")
    if document.get("format_version") != FORMAT_VERSION:
        raise MemvizError(
            f"{json_path}: format version {document.get('format_version')!r}; this memviz reads 1"
        )
    needed = {"experiment": str, "settings": dict, "models": list, "columns": dict, "column_types": dict}
    for key, kind in needed.items():
        if not isinstance(document.get(key), kind):
            raise MemvizError(f"{json_path}: {key!r} missing or not a {kind.__name__}")
    columns, types = document["columns"], document["column_types"]
    if set(types) != set(columns) or not set(types.values()) <= set(TYPES):
        raise MemvizError(f"{json_path}: column_types do not match the columns")
    try:
        with open(csv_path, encoding="utf-8", newline="") as handle:
            table = list(csv.reader(handle))
    except FileNotFoundError:
        raise MemvizError(f"{folder}: no {CSV_NAME} beside {JSON_NAME}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MemvizError(f"{csv_path}: cannot read ({exc})") from None
    if not table or table[0] != list(columns):
        raise MemvizError(f"{csv_path}: its header is not the columns results.json documents")
    rows = []
    for line, values in enumerate(table[1:], start=2):
        if len(values) != len(columns):
            raise MemvizError(f"{csv_path}: line {line} has {len(values)} cells, not {len(columns)}")
        where = f"{csv_path}: line {line}"
        rows.append({c: _parse(v, types[c], f"{where}, {c}") for c, v in zip(columns, values, strict=True)})
    if isinstance(document.get("rows"), int) and document["rows"] != len(rows):
        raise MemvizError(f"{csv_path}: {len(rows)} rows, results.json says {document['rows']} (cut short?)")
    return ExperimentResult(
        name=document["experiment"],
        settings=document["settings"],
        models=document["models"],
        columns=dict(columns),
        rows=rows,
        extra=document.get("extra") or {},
    )


def read_meta(out_dir: str | os.PathLike) -> dict:
    """results.json's own fields (memviz_version, date) besides what ExperimentResult holds."""
    read_results(out_dir)  # the same checks
    document = json.loads((Path(out_dir) / JSON_NAME).read_text(encoding="utf-8"))
    return {k: document[k] for k in ("memviz_version", "date") if k in document}


def record_run_settings(result: ExperimentResult, args) -> ExperimentResult:
    """What every run's results.json says of how it was made, whoever ran it (the CLI, the app's
    Experiments window): the seed, the text file and the models as given, where the run left them out."""
    result.settings.setdefault("seed", args.seed)
    result.settings.setdefault("text_file", args.text_file)
    result.settings.setdefault("model_specs", list(args.model))
    return result
