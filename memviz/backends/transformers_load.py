"""Loading a transformers causal LM safely: a folder or a Hugging Face id, checked before it is built.

In order, each failure one line naming the folder: config.json readable and of a family memviz knows
(else the supported families are named); safetensors weights (pickles are never opened); tokenizer
files present; the config's sizes equal to what the weights files' headers hold (names, shapes, read
without loading: a config asking for a million layers is refused before anything is allocated); and
after loading, every weight finite (NaN or Inf weights give no probabilities to sample from).

No code from the checkpoint runs: the config and model classes are transformers' own for the
family's model_type, `auto_map` is dropped, `trust_remote_code` is never set.
"""

from __future__ import annotations

import copy
import os
import re
import socket
import warnings
from pathlib import Path
from urllib.parse import urlparse

import torch

from memviz.backends.checkpoint import read_json, read_weights_headers, refuse_pickle_only
from memviz.backends.families import TRANSFORMER, Family, family_of_model_type, supported_model_types
from memviz.errors import CheckpointError, MemvizError

# Files a tokenizer can be read from (any one set of them is enough).
TOKENIZER_FILES = (("tokenizer.json",), ("tokenizer.model",), ("spiece.model",), ("vocab.json", "merges.txt"))
_HUB_PATTERNS = [
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "tokenizer*",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "special_tokens_map.json",
    "added_tokens.json",
]


def quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", message=".*past_key_values.*")


def transformer_family(folder: Path) -> tuple[dict, Family]:
    """The folder's config and its family; one line naming the supported families if none reads it."""
    config = read_json(folder / "config.json", "model configuration")
    model_type = config.get("model_type")
    family = family_of_model_type(model_type)
    if family is None or family.kind != TRANSFORMER:
        raise CheckpointError(
            f"{folder}: unsupported model_type {model_type!r}; memviz reads {supported_model_types()}"
        )
    return config, family


def check_tokenizer_files(folder: Path) -> None:
    if any(all((folder / name).is_file() for name in names) for names in TOKENIZER_FILES):
        return
    raise CheckpointError(
        f"{folder}: the tokenizer is missing (no tokenizer.json, vocab.json + merges.txt or tokenizer.model); "
        "save it beside the model with tokenizer.save_pretrained(folder)"
    )


def load_causal_lm(source: str, local: bool, device: str, dtype: torch.dtype):
    """(model, tokenizer, family) from a folder or a Hugging Face id, eager attention, on `device`."""
    quiet_transformers()
    folder = Path(source) if local else _hub_folder(source)
    config_dict, family = transformer_family(folder)
    refuse_pickle_only(folder)
    check_tokenizer_files(folder)
    config = _config(config_dict, folder)
    model_cls = _causal_lm_class(config, folder)
    check_sizes(config, model_cls, family, folder)
    from safetensors import SafetensorError
    from transformers import AutoTokenizer

    try:
        model = model_cls.from_pretrained(
            str(folder),
            config=config,
            attn_implementation="eager",
            use_safetensors=True,
            dtype=dtype,
            local_files_only=True,
        )
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, SafetensorError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise CheckpointError(f"{source}: cannot load the {family.title} checkpoint ({first})") from None
    model.eval()
    check_finite(model, source)
    return model.to(device), tokenizer, family


def _config(config_dict: dict, folder: Path):
    from transformers import CONFIG_MAPPING

    clean = {k: v for k, v in config_dict.items() if k != "auto_map"}  # never a pointer to their code
    try:
        return CONFIG_MAPPING[clean["model_type"]].from_dict(clean)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise CheckpointError(f"{folder / 'config.json'}: not a valid configuration ({first})") from None


def _causal_lm_class(config, folder: Path):
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING

    try:
        return MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    except KeyError:
        raise CheckpointError(f"{folder}: {config.model_type} has no causal LM in transformers") from None


# -- sizes: the config against the weights files' headers ---------------------------------------------
_LAYER = re.compile(r"^(?P<stem>(?:.*?\.)?(?:h|layers))\.(?P<index>\d+)\.(?P<rest>.+)$")


def check_sizes(config, model_cls, family: Family, folder: Path) -> None:
    """Refuse a config whose model would not be the one in the weights files, before building it.

    The layers are counted in the headers; every parameter of a two-layer copy of the model, built on
    the meta device (shapes only, no memory), must have the shape the file gives it.
    """
    header = read_weights_headers(folder)
    layers = int(config.num_hidden_layers)
    if layers < 1:
        raise CheckpointError(f"{folder}: config.json asks for {layers} layers")
    in_file = {int(m["index"]) for name in header if (m := _LAYER.match(name))}
    if len(in_file) != layers or (in_file and max(in_file) != layers - 1):
        raise CheckpointError(
            f"{folder}: config.json asks for {layers} layers, the weights hold {len(in_file)}"
        )
    small = copy.deepcopy(config)
    small.num_hidden_layers = min(layers, 2)
    if family.name == "gpt_neo":
        small.attention_layers = config.attention_layers[: small.num_hidden_layers]
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            skeleton = model_cls(small)
        except (ValueError, TypeError, RuntimeError, AttributeError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            raise CheckpointError(f"{folder / 'config.json'}: not a valid configuration ({first})") from None
    expected = {name: tuple(p.shape) for name, p in skeleton.named_parameters()}
    prefix = f"{skeleton.base_model_prefix}."
    for name, (_dtype, shape) in header.items():
        probe = name
        m = _LAYER.match(name)
        if m and int(m["index"]) >= small.num_hidden_layers:  # layers share shapes: compare with layer 0/1
            probe = f"{m['stem']}.{int(m['index']) % small.num_hidden_layers}.{m['rest']}"
        want = expected.get(probe) or expected.get(prefix + probe)
        if want is not None and want != shape:
            raise CheckpointError(
                f"{folder}: config.json does not match the weights: {name} is {list(shape)} in the file, "
                f"the config makes it {list(want)}"
            )


def check_finite(model: torch.nn.Module, source: str) -> None:
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise CheckpointError(
                f"{source}: weight {name} holds NaN or Inf values; the model cannot give probabilities"
            )


# -- the Hugging Face hub ------------------------------------------------------------------------------
def _hub_folder(repo_id: str) -> Path:
    """The snapshot folder of a Hub model: from the cache, or downloaded (safetensors and tokenizer only)."""
    from huggingface_hub import snapshot_download

    local_only = _cached(repo_id)
    if not local_only and not _hub_reachable():
        raise _explain_hub_failure(repo_id, OSError("offline"))
    try:
        return Path(snapshot_download(repo_id, allow_patterns=_HUB_PATTERNS, local_files_only=local_only))
    except Exception as exc:  # the hub's errors are many (HTTP, offline, gated, not found): one line each
        raise _explain_hub_failure(repo_id, exc) from None


def _cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json")
        weights = [
            try_to_load_from_cache(repo_id, n) for n in ("model.safetensors", "model.safetensors.index.json")
        ]
    except ValueError:  # not a valid repo id
        return False
    return isinstance(found, str) and any(isinstance(w, str) for w in weights)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick look before the hub's own retries (which take half a minute when offline)."""
    from memviz.backends.hub_env import hub_offline

    if hub_offline():  # any value the hub honours (1, true, ON, yes...), not only "1"
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _explain_hub_failure(source: str, exc: Exception) -> MemvizError:
    from memviz.backends.bundled import bundled_names
    from memviz.backends.hub_env import hub_offline

    text = str(exc)
    first = text.splitlines()[0] if text else exc.__class__.__name__
    offline = hub_offline() or "offline" in text.lower() or "connect" in text.lower()
    names = ", ".join(bundled_names()) or "none installed"
    if offline or "couldn't" in text.lower() or "resolve" in text.lower():
        return MemvizError(
            f"cannot download '{source}' (offline, and not in the Hugging Face cache); "
            f"bundled models that work offline: {names}"
        )
    return MemvizError(f"cannot load '{source}' from Hugging Face ({first}); bundled models: {names}")
