"""Models and tasks: load a (local, offline) HF model for a dataset and turn examples into batches, losses and
predictions.

Three task kinds:
* ``encoder`` × classification: ``AutoModelForSequenceClassification`` with a fresh head (head trains too).
* ``causal`` × classification: label-word scoring: the next-token logits after a prompt, restricted to the first
  token of each label word, are the class scores (no new parameters; zero-shot accuracy is meaningful).
* ``causal`` × generation: next-token loss on the answer; evaluation by greedy decoding and exact match.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from ..linalg.policy import ParameterError, UnknownNameError, fail
from .assets import minilm_path, smollm2_path
from .data import Dataset, Example

__all__ = ["ModelConfig", "MODELS", "PROMPTS", "Task", "build_task"]

#: Registered offline models: name -> (function returning a local folder, architecture kind).
MODELS: dict[str, tuple[Callable[[], pathlib.Path], str]] = {
    "minilm": (minilm_path, "encoder"),
    "smollm2-135m": (smollm2_path, "causal"),
}

#: Prompt template and label words per dataset for causal-LM tasks.
PROMPTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "rotten_tomatoes": ("Movie review: {text}\nSentiment (negative or positive):", (" negative", " positive")),
    "tweets": ("Tweet: {text}\nSentiment (negative, neutral or positive):", (" negative", " neutral", " positive")),
    "sarcasm": ("Headline: {text}\nIs it sarcastic (no or yes)?", (" no", " yes")),
    "arithmetic": ("Question: {text}\nAnswer:", ()),
}

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Which model: a name in :data:`MODELS`, a local HF folder, or a hub id ``org/name`` (needs network, so not
    here); dtype of its weights; max input tokens; dropout: None keeps the model's own, a float in [0, 1)
    overrides every dropout probability in its config."""

    name: str = "minilm"
    dtype: str = "float32"
    max_length: int = 128
    dropout: float | None = None

    def __post_init__(self) -> None:
        local = (pathlib.Path(self.name) / "config.json").exists()
        hub_id = self.name.count("/") == 1 and not pathlib.Path(self.name).exists()
        if self.name not in MODELS and not local and not hub_id:
            raise fail(UnknownNameError, "model", f"must be one of {sorted(MODELS)}, a local HF model folder or a "
                       "hub id 'org/name'", repr(self.name))
        if self.dtype not in _DTYPES:
            raise fail(ParameterError, "dtype", f"must be one of {sorted(_DTYPES)}", repr(self.dtype))
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or self.max_length < 8:
            raise fail(ParameterError, "max_length", "must be an int >= 8", repr(self.max_length))
        if self.dropout is not None and not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            raise fail(ParameterError, "model_dropout", "must be None or in [0, 1)", repr(self.dropout))

    def path(self) -> pathlib.Path | str:
        """A local folder (registered models are located or converted first), or the hub id itself."""
        if self.name in MODELS:
            return MODELS[self.name][0]()
        return pathlib.Path(self.name) if pathlib.Path(self.name).exists() else self.name

    def kind(self) -> str:
        """``causal`` when the config's architectures name a *ForCausalLM class, else ``encoder``."""
        if self.name in MODELS:
            return MODELS[self.name][1]
        from transformers import AutoConfig

        archs = AutoConfig.from_pretrained(str(self.path())).architectures or []
        return "causal" if any(a.endswith("ForCausalLM") for a in archs) else "encoder"


@dataclass
class Task:
    """A model with its task logic. ``loss(model, batch)`` -> scalar (``model`` may be the DDP wrapper);
    ``score(model, examples, batch_size, progress)`` -> accuracy (classification) or exact match (generation); ``head``
    lists the names of task-head parameters that train besides the adapters."""

    model: nn.Module
    tokenizer: object
    kind: str
    task_type: str
    collate: Callable[[list[Example]], dict]
    loss: Callable[[nn.Module, dict], Tensor]
    score: Callable[[nn.Module, list[Example], int, bool], float]
    head: tuple[str, ...]


def _dropout_overrides(cfg, p: float) -> None:
    for key in list(vars(cfg)):
        if "dropout" in key and isinstance(getattr(cfg, key), float):
            setattr(cfg, key, p)


def build_task(model_cfg: ModelConfig, data: Dataset, device: torch.device) -> Task:
    """Load the model for ``data`` and return its :class:`Task`."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    path, kind = model_cfg.path(), model_cfg.kind()
    hf_cfg = AutoConfig.from_pretrained(str(path))
    if model_cfg.dropout is not None:
        _dropout_overrides(hf_cfg, float(model_cfg.dropout))
    tok = AutoTokenizer.from_pretrained(str(path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    dtype = _DTYPES[model_cfg.dtype]
    if kind == "encoder":
        if data.task_type != "classification":
            raise fail(ParameterError, "task", "encoder models support classification datasets only", data.name)
        hf_cfg.num_labels = len(data.label_names)
        model = AutoModelForSequenceClassification.from_pretrained(str(path), config=hf_cfg, dtype=dtype)
        head = tuple(n for n, _ in model.named_parameters() if n.startswith(("classifier", "score")) or "pooler" in n)
        return _encoder_task(model.to(device), tok, model_cfg.max_length, device, head)
    model = AutoModelForCausalLM.from_pretrained(str(path), config=hf_cfg, dtype=dtype).to(device)
    template, words = PROMPTS[data.name]
    if data.task_type == "classification":
        return _label_word_task(model, tok, template, words, model_cfg.max_length, device)
    return _generation_task(model, tok, template, model_cfg.max_length, device)


def _batched(examples: list[Example], size: int, progress: bool = False):
    """Evaluation batches of examples of similar length (sorted by text length), so little compute goes to
    padding; every score is a count over examples, so the order does not change it."""
    examples = sorted(examples, key=lambda e: len(e.text))
    chunks = [examples[i : i + size] for i in range(0, len(examples), size)]
    if not progress:
        return chunks
    from tqdm.auto import tqdm

    return tqdm(chunks, desc="eval", leave=False)


def _encoder_task(model, tok, max_length, device, head) -> Task:
    def collate(exs):
        enc = tok([e.text for e in exs], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return {**{k: v.to(device) for k, v in enc.items()}, "labels": torch.tensor([e.label for e in exs], device=device)}

    def loss(net, batch):
        return net(**batch).loss

    @torch.no_grad()
    def score(net, exs, batch_size, progress=False):
        correct = 0
        for chunk in _batched(exs, batch_size, progress):
            b = collate(chunk)
            logits = net(**{k: v for k, v in b.items() if k != "labels"}).logits
            correct += int((logits.argmax(-1) == b["labels"]).sum())
        return correct / len(exs)

    return Task(model, tok, "encoder", "classification", collate, loss, score, head)


def _label_word_task(model, tok, template, words, max_length, device) -> Task:
    word_ids = torch.tensor([tok(w, add_special_tokens=False).input_ids[0] for w in words], device=device)
    if len(set(word_ids.tolist())) != len(words):
        raise fail(ParameterError, "label words", "must start with distinct tokens", words)

    def collate(exs):
        tok.padding_side = "left"  # the scored position is the last one for every row
        tok.truncation_side = "left"  # a long text loses its start, never the template's question at the end
        enc = tok([template.format(text=e.text) for e in exs], padding=True, truncation=True, max_length=max_length,
                  return_tensors="pt")
        return {**{k: v.to(device) for k, v in enc.items()}, "labels": torch.tensor([e.label for e in exs], device=device)}

    def class_logits(net, batch):
        out = net(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (b, t, V)
        return out[:, -1, :].float().index_select(-1, word_ids)  # (b, classes)

    def loss(net, batch):
        return nn.functional.cross_entropy(class_logits(net, batch), batch["labels"])

    @torch.no_grad()
    def score(net, exs, batch_size, progress=False):
        correct = 0
        for chunk in _batched(exs, batch_size, progress):
            b = collate(chunk)
            correct += int((class_logits(net, b).argmax(-1) == b["labels"]).sum())
        return correct / len(exs)

    return Task(model, tok, "causal", "classification", collate, loss, score, ())


def _generation_task(model, tok, template, max_length, device) -> Task:
    eos = tok.eos_token or ""

    def collate(exs):
        tok.padding_side = "right"
        tok.truncation_side = "right"
        prompts = [template.format(text=e.text) for e in exs]
        full = [p + " " + str(e.label) + eos for p, e in zip(prompts, exs)]
        enc = tok(full, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        labels = enc.input_ids.clone()
        for i, p in enumerate(prompts):  # loss only on the answer tokens
            labels[i, : len(tok(p).input_ids)] = -100
        labels[enc.attention_mask == 0] = -100
        return {"input_ids": enc.input_ids.to(device), "attention_mask": enc.attention_mask.to(device),
                "labels": labels.to(device)}

    def loss(net, batch):
        return net(**batch).loss

    @torch.no_grad()
    def score(net, exs, batch_size, progress=False):
        tok.padding_side = "left"
        correct = 0
        for chunk in _batched(exs, batch_size, progress):
            enc = tok([template.format(text=e.text) for e in chunk], padding=True, return_tensors="pt").to(device)
            out = net.generate(**enc, max_new_tokens=10, do_sample=False, pad_token_id=tok.pad_token_id)
            texts = tok.batch_decode(out[:, enc.input_ids.shape[1]:], skip_special_tokens=True)
            correct += sum(t.strip().split("\n")[0].strip() == str(e.label) for t, e in zip(texts, chunk))
        return correct / len(exs)

    return Task(model, tok, "causal", "generation", collate, loss, score, ())
