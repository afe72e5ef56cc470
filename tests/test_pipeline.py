"""Fine-tuning pipeline: CLI validation, kill -9 + resume, 2-process torchrun, config mismatch, corrupt checkpoint.
Issue #4. Real model (all-MiniLM-L6-v2), real data (Rotten Tomatoes), real subprocesses."""

from __future__ import annotations

import json
import math
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from nlora_linalg import CheckpointError, ConfigMismatchError, finetune
from nlora_linalg.pipeline.cli import main, parse_args

TINY = ["--model", "minilm", "--task", "rotten_tomatoes", "--init", "nlora", "--rank", "4", "--batch-size", "8",
        "--max-length", "32", "--val-size", "40", "--test-size", "60", "--train-size", "200", "--eval-size", "40",
        "--eval-every", "4", "--no-zero-shot", "--no-progress", "--lr", "1e-3", "--device", "cpu"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _cli(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "nlora_linalg.pipeline.cli", *args], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _summary(out: pathlib.Path) -> dict:
    return json.loads((out / "summary.json").read_text())


@pytest.mark.parametrize("argv, needle", [
    (["--model", "gpt5"], "minilm"),
    (["--task", "imdb"], "rotten_tomatoes"),
    (["--init", "dora"], "nlora_paper"),
    (["--lr", "0"], "lr"),
    (["--lr=-1e-3"], "lr"),
    (["--batch-size", "0"], "batch_size"),
    (["--steps", "0"], "steps"),
    (["--landmarks", "adaptive", "--init", "lora"], "--landmarks"),
    (["--landmarks", "sideways"], "sideways"),
])
def test_cli_rejects_bad_input_with_named_argument(argv, needle, capsys):
    """Bad CLI input exits with code 2 and an error naming the argument (and the known names, where relevant)."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error" in err and needle in err


def test_cli_parses_into_validated_configs():
    """--landmarks builds an NLoRA init with that landmark rule; the rest lands in the matching config fields."""
    config, resume = parse_args(["--init", "inttune", "--landmarks", "leverage", "--rank", "6", "--lr", "3e-4",
                                 "--targets", "query,value", "--resume"])
    assert resume and config.adapter.rank == 6 and config.train.lr == 3e-4
    assert config.adapter.init.method.sketch == "leverage" and config.adapter.targets == ("query", "value")
    assert config.adapter.trainable_factors == frozenset({"N"})


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """An uninterrupted 40-step run (subprocess), the reference for resume."""
    out = tmp_path_factory.mktemp("ref") / "run"
    proc = _cli([*TINY, "--steps", "40", "--out", str(out)])
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    return out


def test_sigkill_then_resume_gives_identical_final_metrics(reference_run, tmp_path):
    """Kill a real training subprocess with SIGKILL after a checkpoint, resume it: the final summary (losses,
    accuracies) equals the uninterrupted run with the same seed."""
    out = tmp_path / "run"
    proc = _cli([*TINY, "--steps", "40", "--checkpoint-every", "5", "--out", str(out)])
    deadline = time.time() + 600
    while not (out / "checkpoints" / "step-000010.pt").exists():
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "summary.json").exists(), "the run must have been killed before finishing"
    resumed = _cli([*TINY, "--steps", "40", "--checkpoint-every", "5", "--out", str(out), "--resume"])
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-2000:]
    a, b = _summary(reference_run), _summary(out)
    assert b["resumed_from"] is not None and 10 <= b["resumed_from"] < 40
    assert a["losses"] == b["losses"]
    assert (a["test_accuracy"], a["val_accuracy"]) == (b["test_accuracy"], b["val_accuracy"])
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "loss" in r]
    assert steps == list(range(1, 41)) and records[-1].get("test_accuracy") == b["test_accuracy"]
    assert steps == sorted(steps) and len(steps) == len(set(steps)), "metrics.jsonl must have no duplicated steps"


def test_resume_with_different_config_names_fields(reference_run, tmp_path):
    """--resume onto a run folder with a different config raises ConfigMismatchError listing the fields."""
    out = tmp_path / "run"
    shutil.copytree(reference_run, out)
    config, _ = parse_args([*TINY, "--steps", "40", "--lr", "5e-4", "--rank", "2", "--out", str(out)])
    with pytest.raises(ConfigMismatchError, match=r"train\.lr.*|adapter\.rank"):
        finetune(config, resume=True)


def test_corrupt_checkpoint_is_a_clear_error_and_previous_is_kept(tmp_path):
    """A truncated newest checkpoint gives a CheckpointError naming it; the previous good checkpoint stays."""
    out = tmp_path / "run"
    proc = _cli([*TINY, "--steps", "7", "--checkpoint-every", "2", "--out", str(out)])
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    ckpts = sorted((out / "checkpoints").glob("step-*.pt"))
    assert [p.name for p in ckpts] == ["step-000004.pt", "step-000006.pt"]
    ckpts[-1].write_bytes(ckpts[-1].read_bytes()[:100])
    config, _ = parse_args([*TINY, "--steps", "7", "--checkpoint-every", "2", "--out", str(out)])
    with pytest.raises(CheckpointError, match="step-000006.pt") as info:
        finetune(config, resume=True)
    assert "step-000004.pt" in str(info.value) and ckpts[0].exists()


def test_torchrun_two_processes_match_one_process(reference_run, tmp_path):
    """torchrun --nproc_per_node=2 (gloo) with the same global batch gives the same loss curve as 1 process
    (model dropout off; tolerance 1e-4 relative: only reduction order and per-rank padding differ)."""
    pytest.importorskip("torch.distributed.run")
    args = [*TINY, "--steps", "4", "--model-dropout", "0.0", "--eval-every", "0"]
    one = tmp_path / "one"
    p1 = _cli([*args, "--out", str(one)])
    _, err = p1.communicate(timeout=600)
    assert p1.returncode == 0, err[-2000:]
    two = tmp_path / "two"
    p2 = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29531",
                         "-m", "nlora_linalg.pipeline.cli", *args, "--out", str(two)],
                        env=ENV, capture_output=True, text=True, timeout=600)
    assert p2.returncode == 0, p2.stderr[-3000:]
    l1, l2 = _summary(one)["losses"], _summary(two)["losses"]
    assert len(l1) == len(l2) == 4
    for a, b in zip(l1, l2):
        assert abs(a - b) <= 1e-4 * abs(a), (l1, l2)


@pytest.mark.parametrize("task", ["rotten_tomatoes", "arithmetic"])
def test_causal_lm_tasks_run_end_to_end(task, tmp_path):
    """SmolLM2-135M: label-word scoring (classification) and exact-match generation (arithmetic) train and
    evaluate through finetune(); accuracies are fractions of the held-out examples, the adapter is saved."""
    config, _ = parse_args(["--model", "smollm2-135m", "--task", task, "--init", "inttune", "--rank", "4",
                            "--targets", r"model\.layers\.(0|1)\.self_attn\.(q|v)_proj", "--steps", "2",
                            "--batch-size", "2", "--max-length", "48", "--val-size", "4", "--test-size", "6",
                            "--train-size", "16", "--eval-size", "4", "--eval-every", "0", "--lr", "1e-2",
                            "--no-progress", "--device", "cpu", "--out", str(tmp_path / task)])
    result = finetune(config)
    assert len(result.losses) == 2 and all(math.isfinite(x) for x in result.losses)
    for acc in (result.test_accuracy, result.val_accuracy, result.zero_shot_accuracy):
        assert acc * 6 == round(acc * 6) or acc * 4 == round(acc * 4)
    assert result.trainable_params == 4 * 16  # IntTune: Σ r² over the 4 adapted projections
    assert (tmp_path / task / "adapter" / "adapter.safetensors").exists()


def test_local_model_folder_works_like_a_registered_name(tmp_path):
    """--model accepts any local HF folder (here the MiniLM package folder); its architecture decides the task."""
    from nlora_linalg import minilm_path

    args = [a for a in TINY if a not in ("minilm",)]
    args[args.index("--model") + 1: args.index("--model") + 1] = [str(minilm_path())]
    config, _ = parse_args([*args, "--steps", "2", "--out", str(tmp_path / "local")])
    assert config.model.kind() == "encoder"
    result = finetune(config)
    assert len(result.losses) == 2 and 0.0 <= result.test_accuracy <= 1.0


def test_label_word_prompt_keeps_its_question_when_truncated():
    """Non-regression (issue #5): a text longer than max_length loses its start, never the template's question at
    the end (the scored position), so the class logits are read where the label word follows."""
    from nlora_linalg.pipeline.data import DataConfig, Example, load_dataset
    from nlora_linalg.pipeline.tasks import PROMPTS, ModelConfig, build_task

    data = load_dataset(DataConfig("rotten_tomatoes", val_size=8, test_size=8, train_size=16))
    task = build_task(ModelConfig("smollm2-135m", max_length=24), data, torch.device("cpu"))
    long_text = " ".join(["a remarkably long and winding review"] * 20)
    batch = task.collate([Example(long_text, 1), Example("short", 0)])
    assert batch["input_ids"].shape[1] == 24
    question = PROMPTS["rotten_tomatoes"][0].split("{text}")[1]
    for row in batch["input_ids"]:
        assert task.tokenizer.decode(row[-8:]).endswith(question.strip()[-30:])
