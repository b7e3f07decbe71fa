"""Where a model lives: one resolver of names for models, configs, tokenizers, pipelines and the CLI.

A name is, in the order tried:

1. a model bundled with the package (``"pydeberta/tiny"``, see :data:`BUNDLED_MODELS`);
2. a local folder, or a file inside one (``.../config.json``);
3. a Hugging Face Hub id ``"org/name"``: downloaded with ``huggingface_hub`` when online, found in
   its local cache when offline (``HF_HUB_OFFLINE=1`` or ``local_files_only=True``).

Every ``from_pretrained`` of the package and every ``--model`` of the command line goes through
:func:`resolve_model_folder`, so a name that loads a model also loads its tokenizer and config.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["BUNDLED_MODELS", "HUB_FILES", "resolve_model_folder"]

BUNDLED_MODELS: dict[str, Path] = {"pydeberta/tiny": Path(__file__).parent / "models" / "tiny"}
"""Model names shipped inside the package: name -> folder. `resolve_model_folder` looks here first.

``"pydeberta/tiny"``: the small DeBERTa-v3-style masked LM trained by ``tools/train_tiny.py`` on
Debian-shipped English text (see ``pydeberta/models/tiny/README.md``). Register another bundled
model with ``BUNDLED_MODELS["name"] = Path(...)``.
"""

HUB_FILES = (
    "config.json",
    "*.safetensors",
    "*.safetensors.index.json",
    "pytorch_model*.bin",
    "pytorch_model.bin.index.json",
    "spm.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.json",
)
"""The files fetched from a Hub repository (``allow_patterns`` of ``snapshot_download``)."""

# "org/name" as the Hub spells it: letters, digits, "_", "-", "."; no "--" or ".."; "-" and "."
# neither first nor last. "./x" and "../x" are therefore paths, never Hub ids.
_HUB_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
_HUB_ID = re.compile(rf"(?!.*(?:--|\.\.)){_HUB_PART}/{_HUB_PART}")


def resolve_model_folder(name_or_path, *, revision=None, cache_dir=None, local_files_only=None) -> Path:
    """Turn a model name or path into the local folder holding its config and weights.

    Tried in order:
      1. a name registered in `BUNDLED_MODELS` -> its folder;
      2. an existing folder -> itself;
      3. an existing file (e.g. ``.../config.json``) -> the folder it is in;
      4. a Hugging Face Hub id ``"org/name"`` -> ``huggingface_hub.snapshot_download`` of `HUB_FILES`
         into the HF cache (``cache_dir`` or the default cache), or the cached snapshot when
         offline. Offline means ``local_files_only=True``, or ``local_files_only=None`` (the
         default) with ``HF_HUB_OFFLINE=1`` in the environment. A connection error while online
         retries once from the cache.

    Args:
        name_or_path: str or os.PathLike.
        revision: branch, tag or commit of a Hub repository (default: "main").
        cache_dir: Hugging Face cache folder (default: huggingface_hub's, e.g. ~/.cache/huggingface/hub).
        local_files_only: True never touches the network; None follows HF_HUB_OFFLINE.

    Returns:
        pathlib.Path of the folder.

    Raises:
        FileNotFoundError: none of the above found it. The message names the argument and what
            was tried, and says ``pip install huggingface_hub`` when a Hub id could not be tried.
        Other huggingface_hub errors propagate.
    """
    name = os.fspath(name_or_path)
    if name in BUNDLED_MODELS:
        return Path(BUNDLED_MODELS[name])
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.is_file():
        return path.parent
    if not _HUB_ID.fullmatch(name):
        raise FileNotFoundError(
            f"resolve_model_folder({name!r}): no such folder or file, and not a Hugging Face Hub id "
            f"of the form 'org/name'"
        )
    return _snapshot_download(name, revision, cache_dir, local_files_only)


def _snapshot_download(repo_id, revision, cache_dir, local_files_only) -> Path:
    """Fetch (or find in the HF cache) the `HUB_FILES` of a Hub repository; see `resolve_model_folder`."""
    try:
        import huggingface_hub
        from huggingface_hub.utils import HfHubHTTPError, LocalEntryNotFoundError
    except ImportError:
        raise FileNotFoundError(
            f"resolve_model_folder({repo_id!r}): no such folder or file. It looks like a Hugging Face "
            f"Hub id, but huggingface_hub is not installed: pip install huggingface_hub "
            f"(or pip install 'pydeberta[hub]')"
        ) from None
    if local_files_only is None:
        local_files_only = _hub_offline()

    def download(local_files_only):
        return huggingface_hub.snapshot_download(
            repo_id, revision=revision, cache_dir=cache_dir,
            allow_patterns=list(HUB_FILES), local_files_only=local_files_only,
        )

    where = "in the local Hugging Face cache" if local_files_only else "on the Hugging Face Hub or in its local cache"
    try:
        try:
            return Path(download(local_files_only))
        except _connection_errors():
            where = "on the Hugging Face Hub (connection failed) or in its local cache"
            return Path(download(local_files_only=True))
    except (LocalEntryNotFoundError, HfHubHTTPError) as error:
        raise FileNotFoundError(
            f"resolve_model_folder({repo_id!r}, revision={revision!r}): no such folder or file, "
            f"and no model {repo_id!r} {where}"
            f"{f' (cache_dir={str(cache_dir)!r})' if cache_dir is not None else ''}: {error}"
        ) from error


def _hub_offline() -> bool:
    """HF_HUB_OFFLINE read now (huggingface_hub itself reads it once, when imported)."""
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}


def _connection_errors() -> tuple[type[BaseException], ...]:
    """Exception types meaning "the network is unreachable", for whichever HTTP client is installed."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        import requests  # huggingface_hub < 1.0
        errors += [requests.ConnectionError, requests.Timeout]
    except ImportError:
        pass
    try:
        import httpx  # huggingface_hub >= 1.0
        errors += [httpx.TransportError]
    except ImportError:
        pass
    return tuple(errors)
