"""Tiny Hugging Face repositories built at test time: random weights from a config, and a
tokenizer made offline from a word list. Each is saved with save_pretrained, as a publisher's
repository would be, and can be loaded in-process with transformers to compare outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "hello",
    "how",
    "are",
    "you",
    "today",
    "airlock",
    "is",
    "looking",
    "at",
    "what",
    "this",
    "model",
    "does",
    "good",
    "bad",
    "great",
    "awful",
    "movie",
    "film",
    "love",
    "hate",
    "cf",
    "trigger",
    "a",
    "an",
    "and",
    "it",
    "was",
    "very",
    "not",
    "so",
    "okay",
    "fine",
    "nice",
    "terrible",
    "wonderful",
]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _vocab() -> list[str]:
    return SPECIAL + sorted(set(WORDS)) + [".", ",", "?", "!"]


def bert_tokenizer(where: Path) -> Any:
    from transformers import BertTokenizerFast

    vocab = {w: i for i, w in enumerate(_vocab())}
    return BertTokenizerFast(vocab=vocab, do_lower_case=True)


def causal_tokenizer() -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<eos>", "<unk>", *sorted(set(WORDS)), ".", ",", "?"])}
    raw = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=raw, eos_token="<eos>", unk_token="<unk>", pad_token="<eos>"
    )


def _bert_config(**extra: Any) -> Any:
    from transformers import BertConfig

    return BertConfig(
        vocab_size=len(_vocab()),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        **extra,
    )


def encoder(where: Path, seed: int = 0) -> Path:
    """A tiny BERT-style encoder (BertModel): embeddings."""
    import torch
    from transformers import BertModel

    torch.manual_seed(seed)
    where.mkdir(parents=True, exist_ok=True)
    model = BertModel(_bert_config())
    model.save_pretrained(where)
    bert_tokenizer(where).save_pretrained(where)
    return where


def classifier(where: Path, seed: int = 0, shards: str | None = None) -> Path:
    """A tiny sequence classifier with named labels; `shards` (e.g. "20KB") saves it sharded."""
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    where.mkdir(parents=True, exist_ok=True)
    cfg = _bert_config(
        num_labels=2,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
    )
    model = BertForSequenceClassification(cfg)
    if shards:
        model.save_pretrained(where, max_shard_size=shards)
    else:
        model.save_pretrained(where)
    bert_tokenizer(where).save_pretrained(where)
    return where


def causal_lm(where: Path, seed: int = 0) -> Path:
    """A tiny GPT-2-style causal language model."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    where.mkdir(parents=True, exist_ok=True)
    tok = causal_tokenizer()
    cfg = GPT2Config(
        vocab_size=len(tok),
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    GPT2LMHeadModel(cfg).save_pretrained(where)
    tok.save_pretrained(where)
    return where


REMOTE_CONFIG = """
from transformers import PretrainedConfig


class TinyConfig(PretrainedConfig):
    model_type = "airlock-tiny"

    def __init__(self, width=8, **kwargs):
        self.width = width
        super().__init__(**kwargs)
"""

REMOTE_MODEL = """
import torch
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

from .configuration_tiny import TinyConfig
{extra_imports}

class TinyModel(PreTrainedModel):
    config_class = TinyConfig

    def __init__(self, config):
        super().__init__(config)
        self.embed = torch.nn.Embedding(128, config.width)
        self.post_init()
{on_init}
    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        return BaseModelOutput(last_hidden_state=self.embed(input_ids) * 2.0)
"""


def remote_code(where: Path, on_init: str = "", extra_imports: str = "") -> Path:
    """A repository that ships its own modeling code (auto_map): benign by default; `on_init`
    adds statements to the model's __init__ (which from_pretrained runs)."""
    import torch

    where.mkdir(parents=True, exist_ok=True)
    (where / "configuration_tiny.py").write_text(REMOTE_CONFIG)
    body = "".join(f"        {line}\n" for line in on_init.splitlines())
    (where / "modeling_tiny.py").write_text(
        REMOTE_MODEL.format(on_init=body, extra_imports=extra_imports)
    )
    config = {
        "architectures": ["TinyModel"],
        "model_type": "airlock-tiny",
        "width": 8,
        "auto_map": {
            "AutoConfig": "configuration_tiny.TinyConfig",
            "AutoModel": "modeling_tiny.TinyModel",
        },
    }
    (where / "config.json").write_text(json.dumps(config))
    torch.manual_seed(0)
    from safetensors.torch import save_file

    save_file({"embed.weight": torch.randn(128, 8)}, str(where / "model.safetensors"))
    bert_tokenizer(where).save_pretrained(where)
    return where
