"""Hostile Hugging Face repositories, built at test time from the benign ones in
tests/hf_repos.py. Every payload is harmless outside the sandbox: it runs `/bin/true` through a
shell, connects to 127.0.0.1 only (port 9, refused or timed out at once), writes under the
sandbox's scratch /tmp only, and every loop is bounded."""

from __future__ import annotations

import pickle
from pathlib import Path

from tests import hf_repos

# The payload each hostile file runs: a shell and a socket to loopback.
PAYLOAD = (
    "import socket as _s, subprocess as _p\n"
    "_p.run(['/bin/sh', '-c', 'true'], timeout=5)\n"
    "_c = _s.socket()\n"
    "_c.settimeout(0.5)\n"
    "try:\n"
    "    _c.connect(('127.0.0.1', 9))\n"
    "except OSError:\n"
    "    pass\n"
    "_c.close()\n"
)


def laundered_module(where: Path) -> Path:
    """Remote code whose model __init__ writes a module of its own into transformers' module
    cache (beside the repository's code, where module bodies used to be exempt from the audit
    hook) and imports it; the written module runs the payload."""
    on_init = (
        "import importlib, os, sys\n"
        "_d = os.environ.get('HF_MODULES_CACHE', '/tmp/hf/modules')\n"
        "os.makedirs(_d, exist_ok=True)\n"
        "open(os.path.join(_d, 'airlock_laundered.py'), 'w').write(" + repr(PAYLOAD) + ")\n"
        "sys.path.insert(0, _d)\n"
        "importlib.import_module('airlock_laundered')\n"
    )
    return hf_repos.remote_code(where, on_init=on_init)


def custom_generate(where: Path) -> Path:
    """A plain GPT-2 repository (no auto_map anywhere) that ships custom_generate/generate.py:
    transformers runs it on load when remote code is trusted (as scan trusts it) and uses it
    as the model's generate()."""
    hf_repos.causal_lm(where)
    (where / "custom_generate").mkdir()
    (where / "custom_generate" / "generate.py").write_text(
        PAYLOAD + "\n\ndef generate(model, **kwargs):\n"
        "    return type(model).generate(model, **kwargs)\n"
    )
    return where


def on_second_call(where: Path) -> Path:
    """Remote code that is quiet while loading and on its first call, and runs the payload in
    forward() from its second call on (once): scan's exercise makes several text calls."""
    path = hf_repos.remote_code(where)
    modeling = path / "modeling_tiny.py"
    source = modeling.read_text()
    hook = (
        "    def forward(self, input_ids=None, attention_mask=None, **kwargs):\n"
        "        self._airlock_calls = getattr(self, '_airlock_calls', 0) + 1\n"
        "        if self._airlock_calls == 2:\n"
        + "".join(f"            {line}\n" for line in PAYLOAD.splitlines())
    )
    marker = "    def forward(self, input_ids=None, attention_mask=None, **kwargs):\n"
    assert marker in source
    modeling.write_text(source.replace(marker, hook, 1))
    return path


class _System:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, ("/bin/sh -c true",))


def pickled_weights(where: Path) -> Path:
    """A BERT repository whose weights are a pytorch_model.bin pickle with an os.system
    payload beside the tensors, and no safetensors file: transformers loads .bin files with
    weights_only, so the payload must not run, and the host's pickle walker must name it."""
    import torch

    path = hf_repos.encoder(where)
    from safetensors.torch import load_file

    state = load_file(str(path / "model.safetensors"))
    (path / "model.safetensors").unlink()
    payload = {"state": state, "x": _System()}
    with (path / "pytorch_model.bin").open("wb") as f:
        pickle.dump(payload, f, protocol=2)
    del torch
    return path


STEERING = "\x1b]0;owned\x07\x1b[2J\u202e\x1b[31m\rX\x08\u2028"


def steering_lm(where: Path) -> Path:
    """A causal LM that always generates one token, a run of terminal escapes (a title set, a
    screen clear, a colour), a bidi override, a carriage return, a backspace and a line
    separator: its generated text is what the host must neutralise before printing it."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    where.mkdir(parents=True, exist_ok=True)
    vocab = {"<eos>": 0, "<unk>": 1, "hello": 2, "world": 3, STEERING: 4}
    raw = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<eos>", unk_token="<unk>")
    cfg = GPT2Config(
        vocab_size=len(vocab),
        n_positions=32,
        n_embd=16,
        n_layer=1,
        n_head=1,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    model = GPT2LMHeadModel(cfg)
    with torch.no_grad():  # the final hidden state is all ones; only token 4 scores
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.fill_(1.0)
        model.lm_head.weight.zero_()
        model.lm_head.weight[4] = 1.0
    model.save_pretrained(where)
    tok.save_pretrained(where)
    return where
