"""Tiny benign Hugging Face repositories of Airlock's own, loaded and run once before the
model is: what transformers does the first time (lazy imports, dataclasses it generates,
native libraries, the remote-code module cache) is then the baseline (runner.worker.loaders_hf).

The repositories are written under the scratch tmpfs, from a config and a word list: nothing
is read from the model's files, and nothing here is the model's code."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "airlock", "."]
_REMOTE_CONFIG = """from transformers import PretrainedConfig


class WarmConfig(PretrainedConfig):
    model_type = "airlock-warm"
"""
_REMOTE_MODEL = """import torch
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

from .configuration_warm import WarmConfig


class WarmModel(PreTrainedModel):
    config_class = WarmConfig

    def __init__(self, config):
        super().__init__(config)
        self.embed = torch.nn.Embedding(16, 4)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        return BaseModelOutput(last_hidden_state=self.embed(input_ids))
"""
_done = False


def run_once() -> None:
    global _done
    if _done:
        return
    _done = True
    with tempfile.TemporaryDirectory(prefix="airlock-warm-hf-") as tmp:
        _run(Path(tmp))


def _tokenizer(where: Path) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(_WORDS)}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))  # noqa: S106
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=raw,
        unk_token="[UNK]",  # noqa: S106
        pad_token="[PAD]",  # noqa: S106
        eos_token="[SEP]",  # noqa: S106
    )
    tok.save_pretrained(where)
    return tok


def _run(root: Path) -> None:
    import torch
    import transformers as tf

    bert = tf.BertConfig(
        vocab_size=len(_WORDS),
        hidden_size=4,
        max_position_embeddings=16,
        num_hidden_layers=1,
        num_attention_heads=1,
        intermediate_size=8,
    )
    gpt2 = tf.GPT2Config(
        vocab_size=len(_WORDS), n_positions=16, n_embd=4, n_layer=1, n_head=1, eos_token_id=7
    )
    builds = [
        ("encoder", tf.BertModel(bert), tf.AutoModel),
        (
            "classifier",
            tf.BertForSequenceClassification(bert),
            tf.AutoModelForSequenceClassification,
        ),
        ("causal", tf.GPT2LMHeadModel(gpt2), tf.AutoModelForCausalLM),
    ]
    for name, model, auto in builds:
        where = root / name
        model.save_pretrained(where)
        _tokenizer(where)
        loaded = auto.from_pretrained(str(where), local_files_only=True).eval()
        tok = tf.AutoTokenizer.from_pretrained(str(where), local_files_only=True)
        enc = tok(["hello world", "airlock"], padding=True, return_tensors="pt")
        with torch.no_grad():
            loaded(**{k: v for k, v in enc.items() if k != "token_type_ids"})
            if name == "causal":
                loaded.generate(**enc, max_new_tokens=2, do_sample=False, pad_token_id=0)
    _remote(root / "remote")


def _remote(where: Path) -> None:
    """The remote-code path: auto_map, the module cache, trust_remote_code."""
    import torch
    import transformers as tf
    from safetensors.torch import save_file

    where.mkdir()
    (where / "configuration_warm.py").write_text(_REMOTE_CONFIG)
    (where / "modeling_warm.py").write_text(_REMOTE_MODEL)
    config = {
        "architectures": ["WarmModel"],
        "model_type": "airlock-warm",
        "auto_map": {
            "AutoConfig": "configuration_warm.WarmConfig",
            "AutoModel": "modeling_warm.WarmModel",
        },
    }
    (where / "config.json").write_text(json.dumps(config))
    save_file({"embed.weight": torch.zeros(16, 4)}, str(where / "model.safetensors"))
    model = tf.AutoModel.from_pretrained(str(where), trust_remote_code=True, local_files_only=True)
    with torch.no_grad():
        model(input_ids=torch.zeros(1, 2, dtype=torch.long))
