"""GGUF models, loaded and run with llama.cpp (xllamacpp, a prebuilt wheel) inside the sandbox.

The header is read first with the same bounded reader the host uses (a file out of its bounds
is not handed to llama.cpp). Every chat template in the metadata is then rendered over a fixed
conversation the way Python serving stacks render one, with a plain (not sandboxed) jinja2
Environment: a template that reaches Python's object model runs here, where the tracer and the
audit hook see what it does (jinja2's own compile step, run with the audit recording paused, is
not the template's doing: _render_all says why nothing of it runs there). Then llama.cpp loads
the model (CPU, the threads given, a small context) and Loaded.text completes texts greedily.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from runner.worker import audit
from runner.worker.loaders import Loaded, LoadError, Options, Spec
from runner.worker.shared import gguf_header
from runner.worker.shared.formats import Format

N_CTX = 512
SEED = 0
MAX_RENDER_CHARS = 256 << 10  # of one rendered conversation
MAX_TEXTS = 16
MAX_TEXT_CHARS = 16 << 10
MAX_NEW_TOKENS = 256
MAX_GENERATED_CHARS = 64 << 10
TOP_K = 10  # next-token log-probabilities returned for a text
CONVERSATION = (
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Hello, who are you?"},
    {"role": "assistant", "content": "I am a language model."},
    {"role": "user", "content": "What is the capital of France?"},
)
_TEMPLATE_KEY = "tokenizer.chat_template"
_warmed = False


def warm(path: Path | None) -> None:
    """Import jinja2 and xllamacpp, render a template and load and complete a tiny GGUF of our
    own (written to the scratch tmpfs from a fixed seed), before any of the model's bytes are
    read: llama.cpp's start-up (backends, threads, its HTTP front's socket) is the baseline.
    Once per process (a pooled sandbox warms before its model comes, and load warms again)."""
    global _warmed
    if _warmed:
        return
    _warmed = True
    import jinja2  # noqa: F401

    _render_all({_TEMPLATE_KEY: "{% for m in messages %}{{ m['content'] }}{% endfor %}"}, "", "")
    with tempfile.TemporaryDirectory(prefix="airlock-warm-gguf-") as tmp:
        tiny = _tiny_model(Path(tmp) / "warm.gguf")
        server = _server(tiny, 1)
        _complete(server, "ab", 2)
        del server


def load(path: Path, architecture: Path | None, threads: int, options: Options) -> Loaded:
    try:
        h = gguf_header.read_path(path, frozenset({"tokenizer.ggml.tokens"}))
    except OSError as e:
        raise LoadError(f"the GGUF file could not be read: {e.strerror}") from e
    if h.problem:
        raise LoadError(f"the GGUF header is out of bounds, not loaded: {h.problem[:300]}")
    templates = {k: v for k, v in h.values.items() if _is_template(k) and isinstance(v, str)}
    bos, eos = _special(h, "bos"), _special(h, "eos")
    rendered = _render_all(templates, bos, eos)
    try:
        server = _server(path, threads)
    except Exception as e:  # xllamacpp raises its own errors for a file llama.cpp refuses
        raise LoadError(f"llama.cpp could not load the model: {type(e).__name__}: {e}") from e
    runner = _Runner(server)
    note = _note(h, rendered)
    inputs = [Spec("input_ids", "int32", (1, -1))]
    outputs = [Spec("next_token_ids", "int32", (1, TOP_K))]
    loaded = Loaded(Format.GGUF, inputs, outputs, runner.run, note=note)
    loaded.text = runner.text
    loaded.extra["task"] = "causal-lm"
    loaded.extra["rendered"] = rendered
    return loaded


def _is_template(key: str) -> bool:
    return key == _TEMPLATE_KEY or key.startswith(_TEMPLATE_KEY + ".")


def _special(h: gguf_header.Header, which: str) -> str:
    i = h.integer(f"tokenizer.ggml.{which}_token_id")
    tokens = h.arrays.get("tokenizer.ggml.tokens")
    if i is None or tokens is None or tokens.strings is None or not 0 <= i < len(tokens.strings):
        return ""
    return tokens.strings[i]


def _note(h: gguf_header.Header, rendered: dict[str, str]) -> str:
    arch = h.string("general.architecture") or "?"
    parts = [f"GGUF v{h.version} {arch[:40]}"]
    name = h.string("general.name")
    if name:
        parts.append(repr(name[:80]))
    parts.append(f"{h.parameters():,} parameters")
    ctx = h.integer(f"{arch}.context_length")
    if ctx is not None:
        parts.append(f"trained context {ctx}")
    if rendered:
        parts.append(f"chat template(s) rendered: {', '.join(sorted(rendered))[:200]}")
    else:
        parts.append("no chat template")
    return "; ".join(parts)


# --- the chat template ------------------------------------------------------------------------


def _environment() -> Any:
    """A plain jinja2 Environment, as Python serving stacks make one for chat templates (loop
    controls, trimmed blocks, raise_exception): NOT sandboxed, on purpose."""
    import jinja2

    env = jinja2.Environment(  # noqa: S701 (a chat template renders text, not HTML)
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: time.strftime(str(fmt)[:64])
    return env


def _render_all(templates: dict[str, str], bos: str, eos: str) -> dict[str, str]:
    """Each template rendered over CONVERSATION: what it made (cut), or why it failed.

    Every template is compiled first, with the audit recording paused, and only then is any
    rendered, with it on. Compiling is jinja2's own: it makes Python source of the template and
    runs compile() and exec() on it, every time (AL603 for every chat model, if recorded). What
    a template says cannot run while compiling, and so cannot hide in that pause:
    - the generated module only imports jinja2.runtime and defines functions (root, blocks,
      macros); what it writes of the template's are repr() of constants and names the lexer
      checked (jinja2 >= 3.1.5 also escapes the name, CVE-2024-56201; we pass none);
    - the optimizer and the code generator fold constants (nodes.*.as_const): literals,
      operators, comparisons, getattr and getitem on what literals reach, and the built-in
      filters and tests on those. Call has no as_const, and Name never folds: no callable the
      template names is called, and no global (cycler, lipsum, namespace, raise_exception) or
      context value (messages) is reached. What literals reach without a call is builtin types,
      their C methods and descriptors: getattr, getitem, str() and comparisons on them run no
      Python code of anyone's and raise no audit event (a type's [] makes a GenericAlias). A
      constant that costs (9**9**9, 'a' * 10**10) costs at compile time: the load deadline or
      the memory limit, both the host's findings. The tracer, which is never paused, sees any
      syscall anyway;
    - nothing of the model's has run before the compiles end (the header is read by our own
      code), so no thread of a template's can use the pause: that is why all are compiled
      before the first is rendered.
    Rendering runs the compiled functions, where every reach into Python a template makes
    (cycler.__init__.__globals__, |attr) happens, recorded."""
    env = _environment()
    keys = sorted(templates)[:16]
    with audit.paused():
        compiled = {key: _compile(env, templates[key]) for key in keys}
    out: dict[str, str] = {}
    for key in keys:
        template = compiled[key]
        out[key] = template if isinstance(template, str) else _render(template, bos, eos)
    return out


def _compile(env: Any, source: str) -> Any:
    """The template, or why jinja2 refused it (a syntax error, nesting too deep)."""
    try:
        return env.from_string(source)
    except Exception as e:  # TemplateSyntaxError, RecursionError, MemoryError, ...
        return f"(the template did not compile: {type(e).__name__}: {str(e)[:200]})"


def _render(template: Any, bos: str, eos: str) -> str:
    try:
        parts: list[str] = []
        size = 0
        for chunk in template.generate(
            messages=[dict(m) for m in CONVERSATION],
            add_generation_prompt=True,
            bos_token=bos,
            eos_token=eos,
            tools=None,
        ):
            parts.append(chunk)
            size += len(chunk)
            if size > MAX_RENDER_CHARS:
                break
        return "".join(parts)[:MAX_RENDER_CHARS]
    except Exception as e:  # the template's own failure (raise_exception, a type error, ...)
        return f"(the template raised {type(e).__name__}: {str(e)[:200]})"


# --- llama.cpp --------------------------------------------------------------------------------


def _server(path: Path, threads: int) -> Any:
    import xllamacpp as xl

    params = xl.CommonParams()
    params.model.path = str(path)
    params.n_ctx = N_CTX
    params.n_parallel = 1
    params.cpuparams.n_threads = max(1, threads)
    params.cpuparams_batch.n_threads = max(1, threads)
    params.n_threads_http = 1
    params.warmup = False
    # The chat template is rendered here, in Python (above): llama.cpp's own template engine
    # is given a built-in one instead of the model's, so it never parses the model's.
    params.use_jinja = False
    params.chat_template = "chatml"
    params.ui = False
    params.verbosity = -1
    params.sampling.seed = SEED
    return xl.Server(params)


def _complete(server: Any, prompt: str | list[int], n: int, logprobs: int = 0) -> dict[str, Any]:
    request: dict[str, Any] = {
        "prompt": prompt,
        "max_tokens": n,
        "temperature": 0.0,
        "top_k": 1,
        "seed": SEED,
    }
    if logprobs:
        request["logprobs"] = logprobs
    reply = server.handle_completions(request)
    if not isinstance(reply, dict) or "error" in reply or not reply.get("choices"):
        error = reply.get("error") if isinstance(reply, dict) else reply
        raise ValueError(f"llama.cpp refused the completion: {str(error)[:300]}")
    return reply


class _Runner:
    def __init__(self, server: Any) -> None:
        self.server = server

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Token ids in ([1, n]): the TOP_K most likely next token ids."""
        ids = feed.get("input_ids")
        if ids is None or ids.ndim != 2 or ids.shape[0] != 1 or not 0 < ids.shape[1] <= N_CTX:
            raise ValueError(f"input_ids must be int32 of shape [1, n], 0 < n <= {N_CTX}")
        reply = _complete(self.server, [int(i) for i in ids[0]], 1, TOP_K)
        top = _top(reply)
        return {"next_token_ids": np.array([[i for i, _ in top]], np.int32)}

    def text(self, texts: list[str], max_new_tokens: int, max_seconds: float) -> Any:
        from runner.worker.loaders_hf import TextError, TextOut

        if not texts or len(texts) > MAX_TEXTS or any(len(t) > MAX_TEXT_CHARS for t in texts):
            raise TextError(f"give 1 to {MAX_TEXTS} texts of at most {MAX_TEXT_CHARS} characters")
        out = TextOut("causal-lm")
        rows: list[list[float]] = []
        deadline = time.monotonic() + max(0.1, max_seconds)
        for t in texts:
            n = min(max(max_new_tokens, 0), MAX_NEW_TOKENS)
            reply = _complete(self.server, t, max(n, 1), TOP_K)
            out.tokens += int(reply.get("usage", {}).get("prompt_tokens", 0))
            rows.append([lp for _, lp in _top(reply)] + [float("-inf")] * TOP_K)
            if n:
                out.generated.append(str(reply["choices"][0].get("text", ""))[:MAX_GENERATED_CHARS])
            if time.monotonic() > deadline:
                break
        out.outputs["next_token_top_logprobs"] = np.array([r[:TOP_K] for r in rows], np.float32)
        return out


def _top(reply: dict[str, Any]) -> list[tuple[int, float]]:
    """The first generated position's top log-probabilities: (token id, log-probability)."""
    try:
        first = reply["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
        pairs = [(int(e["id"]), float(e["logprob"])) for e in first[:TOP_K]]
    except (KeyError, IndexError, TypeError, ValueError):
        return [(0, float("-inf"))] * TOP_K
    return pairs + [(0, float("-inf"))] * (TOP_K - len(pairs))


# --- the tiny model warm() runs ---------------------------------------------------------------


def _tiny_model(path: Path) -> Path:
    """A one-layer llama of byte tokens, 8-wide, fixed seed: llama.cpp loads and runs it."""
    import gguf

    rng = np.random.default_rng(0)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    w = gguf.GGUFWriter(str(path), "llama")
    for add, value in (
        (w.add_context_length, 64),
        (w.add_embedding_length, 8),
        (w.add_block_count, 1),
        (w.add_feed_forward_length, 16),
        (w.add_head_count, 1),
        (w.add_head_count_kv, 1),
        (w.add_rope_dimension_count, 8),
        (w.add_bos_token_id, 1),
        (w.add_eos_token_id, 2),
        (w.add_unk_token_id, 0),
    ):
        add(value)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * len(tokens))
    w.add_token_types([2, 3, 3] + [6] * 256)
    shapes = {"token_embd.weight": (len(tokens), 8), "output.weight": (len(tokens), 8)}
    shapes.update({f"blk.0.attn_{p}.weight": (8, 8) for p in ("q", "k", "v", "output")})
    shapes.update({"blk.0.ffn_gate.weight": (16, 8), "blk.0.ffn_up.weight": (16, 8)})
    shapes["blk.0.ffn_down.weight"] = (8, 16)
    for name in ("blk.0.attn_norm.weight", "blk.0.ffn_norm.weight", "output_norm.weight"):
        w.add_tensor(name, np.ones(8, np.float32))
    for name, shape in shapes.items():
        w.add_tensor(name, (rng.standard_normal(shape) * 0.2).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
