"""Adapter invariants on real models: SmolLM2-135M (Llama), all-MiniLM-L6-v2 (BERT), GPT-2 from a small config
(the Conv1D path). Issue #3."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from nlora_linalg import (
    INITS,
    LANDMARK_RULES,
    AdapterMismatchError,
    GramNystrom,
    NLoRAInit,
    NonFiniteError,
    ParameterError,
    RankError,
    ThreeFactorLinear,
    UnknownNameError,
    UnsupportedLayerError,
    adapter_modules,
    export_peft,
    inject_adapters,
    load_adapter,
    merge_adapters,
    minilm_path,
    save_adapter,
    smollm2_path,
    unmerge_adapters,
)

RESIDUAL = ["pissa", "pissa_fast", "inttune"] + [f"nlora:{rule}" for rule in sorted(LANDMARK_RULES)]
SMOL_TARGETS = r"model\.layers\.(0|29)\.(self_attn|mlp)\.\w+_proj"  # 14 real projections (first and last block)


def init_arg(spec: str):
    """'nlora:<rule>' -> NLoRAInit with a GramNystrom sketch from that landmark rule; other names as they are."""
    if spec.startswith("nlora:"):
        return NLoRAInit(method=GramNystrom(sketch=spec.split(":")[1]))
    return spec


@pytest.fixture(scope="module")
def gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=128, n_positions=32, bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(cfg).eval()
    x = torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(1))
    return model, (lambda m: m(input_ids=x).logits), None


@pytest.fixture(scope="module")
def minilm():
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(minilm_path())).eval()
    x = torch.randint(100, 5000, (2, 12), generator=torch.Generator().manual_seed(1))
    return model, (lambda m: m(input_ids=x).last_hidden_state), None


@pytest.fixture(scope="module")
def smollm2():
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(smollm2_path()), dtype=torch.float32).eval()
    x = torch.randint(100, 5000, (1, 12), generator=torch.Generator().manual_seed(1))
    return model, (lambda m: m(input_ids=x).logits), SMOL_TARGETS


MODELS = ["gpt2", "minilm", "smollm2"]


@pytest.fixture
def model_case(request):
    return request.getfixturevalue(request.param)


def _fresh(case):
    model, fwd, targets = case
    return copy.deepcopy(model), fwd, targets


@pytest.mark.parametrize("model_case", MODELS, indirect=True)
@pytest.mark.parametrize("init", RESIDUAL)
def test_output_unchanged_at_init_for_residual_inits(model_case, init):
    """Residual inits (W_res = W − s·B₀N₀A₀ frozen) leave the model's output unchanged to fp32 round-off."""
    base, fwd, targets = model_case
    with torch.no_grad():
        ref = fwd(base)
        model, _, _ = _fresh(model_case)
        report = inject_adapters(model, init=init_arg(init), rank=8, alpha=16, targets=targets)
        out = fwd(model)
    assert len(report.rows) > 0
    scale = ref.abs().max()
    assert (out - ref).abs().max() <= 1e-4 * scale, f"max diff {(out - ref).abs().max():.3e} vs scale {scale:.3e}"
    assert all(isinstance(m, ThreeFactorLinear) and m.residual for _, m in adapter_modules(model))


@pytest.mark.parametrize("init", ["lora", "slora"])
def test_zero_delta_inits(gpt2, init):
    """lora/slora start with B = 0, so ΔW = 0 exactly and the output is bitwise unchanged."""
    base, fwd, _ = gpt2
    model = copy.deepcopy(base)
    inject_adapters(model, init=init, rank=4)
    for _, m in adapter_modules(model):
        assert torch.count_nonzero(m.delta_weight()) == 0 and not m.residual
    with torch.no_grad():
        assert torch.equal(fwd(model), fwd(base))


def test_nlora_paper_changes_the_model(minilm):
    """Documents the released code's behaviour on real weights: ΔW = s·W[:, :r]·W[:r, :r]·W[:r, :] ≠ 0, the base
    weight is not reduced, and the model's output changes before any training."""
    base, fwd, _ = minilm
    model = copy.deepcopy(base)
    inject_adapters(model, init="nlora_paper", rank=8, alpha=16)
    for name, m in adapter_modules(model):
        W = base.get_submodule(name).weight.detach()
        torch.testing.assert_close(m.base.weight, W, rtol=0, atol=0)
        torch.testing.assert_close(m.delta_weight(), 2.0 * (W[:, :8] @ W[:8, :8] @ W[:8, :]))
    with torch.no_grad():
        assert (fwd(model) - fwd(base)).abs().max() > 1e-2 * fwd(base).abs().max()


def _perturb(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, m in adapter_modules(model):
            for p in (m.lora_A, m.lora_N, m.lora_B):
                if p is not None:
                    p.add_(0.05 * p.abs().mean().clamp_min(1e-3) * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("model_case", ["gpt2", "minilm"], indirect=True)
def test_merge_unmerge(model_case):
    """Merged and unmerged forwards agree; unmerge restores the base weights."""
    model, fwd, targets = _fresh(model_case)
    inject_adapters(model, init="nlora", rank=4, targets=targets)
    _perturb(model)
    before = {n: m.base.weight.detach().clone() for n, m in adapter_modules(model)}
    with torch.no_grad():
        y = fwd(model)
        assert merge_adapters(model) == len(before)
        y_merged = fwd(model)
        unmerge_adapters(model)
        y_back = fwd(model)
    torch.testing.assert_close(y_merged, y, rtol=1e-4, atol=1e-4 * y.abs().max().item())
    torch.testing.assert_close(y_back, y, rtol=1e-5, atol=1e-5 * y.abs().max().item())
    for n, m in adapter_modules(model):
        torch.testing.assert_close(m.base.weight, before[n], rtol=0, atol=1e-6)


def _expected_trainable(model, init, r):
    total = 0
    for _, m in adapter_modules(model):
        out_f, in_f = m.lora_B.shape[0], m.lora_A.shape[1]
        total += {"lora": r * (in_f + out_f), "pissa": r * (in_f + out_f), "pissa_fast": r * (in_f + out_f),
                  "slora": r * (in_f + out_f) + r * r, "nlora": r * (in_f + out_f) + r * r,
                  "nlora_paper": r * (in_f + out_f) + r * r, "inttune": r * r}[init]
    return total


@pytest.mark.parametrize("init", sorted(INITS))
def test_only_adapter_factors_train_and_counts_match_formula(minilm, init):
    """Only the init's trainable factors require grad; counts equal Σ r(in+out) (+ r²), IntTune Σ r²."""
    model, _, _ = _fresh(minilm)
    r = 4
    report = inject_adapters(model, init=init, rank=r)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.rsplit(".", 1)[-1] in {"lora_A", "lora_N", "lora_B"} for n in trainable)
    counted = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert counted == report.trainable_params == _expected_trainable(model, init, r)


def test_trainable_override_makes_any_variant_inttune(minilm):
    """trainable=frozenset({'N'}) trains only N for any init with an N (here slora)."""
    model, _, _ = _fresh(minilm)
    report = inject_adapters(model, init="slora", rank=4, trainable=frozenset({"N"}))
    assert report.trainable_params == 16 * len(report.rows)
    assert all(n.endswith("lora_N") for n, p in model.named_parameters() if p.requires_grad)


@pytest.mark.parametrize("model_case", MODELS, indirect=True)
def test_save_load_roundtrip_identical_logits(model_case, tmp_path):
    """save → load onto a fresh original base reproduces the trained adapted model bit for bit (pissa_fast:
    a randomized init, so this would fail if loading re-ran the decomposition)."""
    base, fwd, targets = model_case
    model = copy.deepcopy(base)
    report = inject_adapters(model, init="pissa_fast", rank=4, targets=targets)
    _perturb(model)
    save_adapter(model, tmp_path / "adapter", report)
    fresh = copy.deepcopy(base)
    meta = load_adapter(fresh, tmp_path / "adapter")
    assert meta["config"]["init"] == "pissa_fast" and len(meta["modules"]) == len(report.rows)
    with torch.no_grad():
        assert torch.equal(fwd(fresh), fwd(model))
    assert {n for n, p in fresh.named_parameters() if p.requires_grad} == \
        {n for n, p in model.named_parameters() if p.requires_grad}


def test_load_onto_wrong_shapes_names_first_mismatch(gpt2, tmp_path):
    """Loading onto a base model of different width raises AdapterMismatchError naming the tensor; model untouched."""
    from transformers import GPT2Config, GPT2LMHeadModel

    base, _, _ = gpt2
    model = copy.deepcopy(base)
    report = inject_adapters(model, init="nlora", rank=4)
    save_adapter(model, tmp_path / "a", report)
    other = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=128, n_positions=32,
                                       bos_token_id=0, eos_token_id=0))
    state = copy.deepcopy(other.state_dict())
    with pytest.raises(AdapterMismatchError, match=r"transformer\.h\.0\.attn\.c_attn\.lora_A"):
        load_adapter(other, tmp_path / "a")
    assert all(torch.equal(state[k], v) for k, v in other.state_dict().items())


@pytest.mark.parametrize("model_case", MODELS, indirect=True)
def test_peft_export_matches_logits_and_merged_weights(model_case, tmp_path):
    """A real peft.PeftModel.from_pretrained on the untouched base gives our logits; merge_and_unload gives our
    merged weights (residual init exported as a rank-2r LoRA)."""
    peft = pytest.importorskip("peft")
    base, fwd, targets = model_case
    model = copy.deepcopy(base)
    inject_adapters(model, init="nlora", rank=4, alpha=8, targets=targets)
    _perturb(model)
    export_peft(model, tmp_path / "peft")
    pm = peft.PeftModel.from_pretrained(copy.deepcopy(base), str(tmp_path / "peft")).eval()
    with torch.no_grad():
        ours, theirs = fwd(model), fwd(pm)
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-4 * ours.abs().max().item())
    merged = pm.merge_and_unload()
    merge_adapters(model)
    for name, m in adapter_modules(model):
        torch.testing.assert_close(merged.get_submodule(name).weight, m.base.weight, rtol=1e-5, atol=1e-6)


def test_hf_trainer_reduces_loss(smollm2, tmp_path):
    """An adapted real SmolLM2 trains under transformers.Trainer with no special code: the loss goes down."""
    from transformers import Trainer, TrainingArguments

    model, _, targets = _fresh(smollm2)
    inject_adapters(model, init="nlora", rank=8, targets=targets)
    model.train()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(smollm2_path()))
    text = "The Nyström method approximates a matrix from a few of its rows and columns. " * 3
    ids = tok(text, return_tensors="pt").input_ids[0, :48]
    data = [{"input_ids": ids, "labels": ids} for _ in range(8)]
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=6,
                             learning_rate=5e-3, logging_steps=1, report_to=[], save_strategy="no",
                             use_cpu=True, disable_tqdm=True, seed=0)
    trainer = Trainer(model=model, args=args, train_dataset=data)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 6 and losses[-1] < losses[0]


# ----------------------------------------------------------------------------------------------------- bad input
def test_unknown_init_lists_known(gpt2):
    """An unknown init name raises UnknownNameError listing the registered inits."""
    with pytest.raises(UnknownNameError, match="nlora_paper"):
        inject_adapters(copy.deepcopy(gpt2[0]), init="dora", rank=4)


@pytest.mark.parametrize("rank", [0, -1, 65])
def test_bad_rank(gpt2, rank):
    """rank <= 0 or > min(in, out) of a target raises RankError naming the value."""
    with pytest.raises(RankError, match=str(rank)):
        inject_adapters(copy.deepcopy(gpt2[0]), init="lora", rank=rank)


def test_unsupported_target_type(gpt2):
    """An explicitly targeted LayerNorm is refused with the supported types listed."""
    with pytest.raises(UnsupportedLayerError, match="Conv1D"):
        inject_adapters(copy.deepcopy(gpt2[0]), init="lora", rank=2, targets=("ln_1",))


def test_no_matching_target_lists_available(gpt2):
    """A target matching nothing raises and lists the available Linear/Conv1D names."""
    with pytest.raises(ParameterError, match=r"transformer\.h\.0\.attn\.c_attn"):
        inject_adapters(copy.deepcopy(gpt2[0]), init="lora", rank=2, targets=("q_proj",))


def test_double_injection_is_an_error(gpt2):
    """Injecting twice is an explicit error."""
    model = copy.deepcopy(gpt2[0])
    inject_adapters(model, init="lora", rank=2)
    with pytest.raises(ParameterError, match="already"):
        inject_adapters(model, init="lora", rank=2)


def test_nan_base_weight_refused_and_model_untouched(gpt2):
    """NaN in a base weight raises NonFiniteError naming it; nothing in the model changes."""
    model = copy.deepcopy(gpt2[0])
    with torch.no_grad():
        model.transformer.h[1].mlp.c_proj.weight[0, 0] = float("nan")
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(NonFiniteError, match=r"h\.1\.mlp\.c_proj"):
        inject_adapters(model, init="nlora", rank=2)
    assert not any(True for _ in adapter_modules(model))
    after = model.state_dict()
    assert all(torch.equal(state[k], after[k]) or (state[k].isnan() == after[k].isnan()).all() for k in state)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("init", ["pissa", "nlora", "inttune"])
def test_low_precision_base(dtype, init):
    """fp16/bf16 base: factors computed in fp32, stored in the base dtype, finite, output ≈ unchanged."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 48), nn.GELU(), nn.Linear(48, 32)).to(dtype)
    x = torch.randn(4, 64).to(dtype)
    ref = net(x).float()
    inject_adapters(net, init=init, rank=4, targets=("0", "2"))
    for _, m in adapter_modules(net):
        assert m.lora_A.dtype == dtype and m.lora_B.dtype == dtype
        assert all(torch.isfinite(t).all() for t in (m.lora_A, m.lora_B, m.base.weight))
    tol = {torch.float16: 2e-2, torch.bfloat16: 1e-1}[dtype]
    assert (net(x).float() - ref).abs().max() <= tol * ref.abs().max()


def test_report_has_conditioning_and_errors(minilm):
    """The report gives ‖B‖, ‖N‖, ‖A‖, cond(N) and the core's error/bound per module; the default nlora N is
    perfectly conditioned (balance='sqrt': N = I) and the outer factors are bounded by ‖W‖^{1/2}."""
    model, _, _ = _fresh(minilm)
    report = inject_adapters(model, init="nlora", rank=8)
    for row in report.rows:
        W = minilm[0].get_submodule(row.name).weight.detach()
        assert math.isclose(row.cond_N, 1.0, rel_tol=1e-5)
        sigma1 = torch.linalg.matrix_norm(W, ord=2).item()
        assert row.norm_B <= math.sqrt(sigma1) * (1 + 1e-4) and row.norm_A <= math.sqrt(sigma1) * (1 + 1e-4)
        assert 0 < row.error <= row.bound < 1


@pytest.mark.parametrize("init", ["nlora", "pissa_fast", "inttune", "slora", "lora", "nlora:adaptive"])
def test_batched_whole_model_init_equals_per_layer(minilm, init):
    """Issue #6: stacking same-shape weights into one batched core call (per-module generators) gives the same
    factors, to fp32 tolerance, as initialising layer by layer (init_batch_bytes=1)."""
    batched, _, _ = _fresh(minilm)
    per_layer, _, _ = _fresh(minilm)
    rb = inject_adapters(batched, init=init_arg(init), rank=8)
    rp = inject_adapters(per_layer, init=init_arg(init), rank=8, init_batch_bytes=1)
    assert [r.name for r in rb.rows] == [r.name for r in rp.rows]
    for (name, a), (_, b) in zip(adapter_modules(batched), adapter_modules(per_layer)):
        for x, y in ((a.lora_A, b.lora_A), (a.lora_B, b.lora_B), (a.lora_N, b.lora_N), (a.base.weight, b.base.weight)):
            if x is None:
                assert y is None
                continue
            # norm-wise: fp32 rounding of the batched vs single BLAS paths, amplified by the singular-gap
            # conditioning of the top-r subspace (signs are canonical, see kernels.sign_fixed)
            assert torch.linalg.norm(x - y) <= 1e-3 * torch.linalg.norm(y) + 1e-6, name
    for x, y in zip(rb.rows, rp.rows):
        assert math.isclose(x.error, y.error, rel_tol=1e-4, abs_tol=1e-6) or (math.isnan(x.error) and math.isnan(y.error))


def test_injection_progress_reports_every_chunk(minilm):
    """Issue #6: ``progress(done, total)`` is called once per batched chunk, counting up to (modules, modules);
    one module per chunk (init_batch_bytes=1) gives one call per module."""
    calls, per_module = [], []
    batched, _, _ = _fresh(minilm)
    rep = inject_adapters(batched, init="nlora", rank=4, progress=lambda d, t: calls.append((d, t)))
    single, _, _ = _fresh(minilm)
    inject_adapters(single, init="nlora", rank=4, init_batch_bytes=1, progress=lambda d, t: per_module.append((d, t)))
    n = len(rep.rows)
    assert calls[-1] == (n, n) and all(t == n for _, t in calls)
    assert [d for d, _ in calls] == sorted({d for d, _ in calls}) and len(calls) == len({r.shape for r in rep.rows})
    assert per_module == [(i, n) for i in range(1, n + 1)]
