"""The static pre-flight: what the artifact is, established on the host before any sandbox
starts, by reading bytes only (never unpickling, never importing the model's code):

- the format, by content (runner.worker.shared.formats);
- the imports every pickle in it would perform, through the memo too (runner.static.pickles);
- signs of tampering: zip CRCs, local against central headers, bytes no member owns or after
  the archive, torch members never referenced, zip bombs, pickle+zip polyglots, bytes after a
  pickle's STOP, safetensors headers, ONNX external data and symlinks (runner.static.tamper).

The reading runs in a child process under a time bound and an address-space bound, so a file
built to stall or exhaust a parser costs a finding (AL703), not the run. The bound is kept by
the host: a child still running at its bound is killed there, and a result that arrives after it
is a timeout, however long the caller took to ask. What the walk of the model's tree finds (a
FIFO, a socket, a device, a symlink loop, a sparse file, a tree too deep or too large) and a
format detection that reached its read bound are findings too (AL704 to AL708), also when the
child did not finish:

    python -m runner.static.preflight MODEL     # the same checks, as JSON on stdout
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import UsageError
from runner.static import signs
from runner.static.pickles import FileRead, Import, read_file
from runner.static.tamper import Tamper, TamperKind, check, check_model, pickle_notes
from runner.static.walking import tree_tamper
from runner.worker.shared import tree
from runner.worker.shared.formats import Format, FormatError, ReadLimit, detect

if TYPE_CHECKING:
    from runner.integrity.trust import SignatureCheck, TrustPolicy

GIB = 1 << 30
TIME_BASE_S = 30.0
TIME_PER_GIB_S = 30.0  # reading and CRC-checking runs at several hundred MB/s here
MEMORY_BYTES = 1 * GIB
MAX_IMPORTS = 500


@dataclass(frozen=True)
class StaticResult:
    format: str  # a Format value, or "unknown"
    reason: str  # what decided the format
    primary: str = ""  # the weights file read, inside a directory
    tamper: list[Tamper] = field(default_factory=list)
    imports: list[Import] = field(default_factory=list)
    format_error: str = ""  # the bytes are no model Airlock recognises
    aborted: str = ""  # why the checks did not finish
    seconds: float = 0.0
    bounds: str = ""


@dataclass(frozen=True)
class Identity:
    format: str  # a Format value, or "unknown"
    reason: str  # what decided it
    primary: Path  # the weights file (inside a directory), or the path itself
    error: str = ""  # why the bytes are no model Airlock recognises
    limited: tuple[str, ...] = ()  # where detection stopped at its read bound


def identify(path: Path) -> Identity:
    """The format by content (a bounded read of a few headers); a damaged or unknown file is
    'unknown', with the reason. OSError (an unreadable path) is the caller's to handle."""
    try:
        det = detect(path)
    except ReadLimit as e:
        return Identity("unknown", f"damaged: {e}", path, str(e), (str(e),))
    except FormatError as e:
        return Identity("unknown", f"damaged: {e}", path, str(e))
    limited = tuple(f"{u}: format detection stopped at its read bound" for u in det.unread)
    return Identity(det.format.value, det.reason, det.path, limited=limited)


def host_checks(path: Path, ident: Identity) -> list[Tamper]:
    """What the host finds without reading the model's contents: the walk of its tree and
    where detection stopped at its bound (cheap and bounded, so also done when the child
    did not finish)."""
    return tree_tamper(path) + [Tamper(TamperKind.DETECT_LIMIT, m) for m in ident.limited[:10]]


def examine(path: Path) -> StaticResult:
    """Every static check, in this process (no bounds: see `bounded`)."""
    start = time.monotonic()
    ident = identify(path)
    if ident.error:
        tamper = check(path, None) if path.is_file() else []
        target: Path | None = path if path.is_file() else None
    else:
        fmt = Format(ident.format)
        tamper = check_model(path, ident.primary, fmt)
        target = ident.primary if fmt in (Format.PICKLE, Format.TORCH) else None
    read = read_file(target) if target is not None else FileRead([], [])
    tamper += [t for t in pickle_notes(read.notes) if t not in tamper]  # raw: read once
    extra = signs.examine(ident.primary, Format(ident.format)) if not ident.error else None
    tamper += extra.tamper if extra else []  # parser abuse, code in metadata, torch.package
    imports, cut = kept_imports(read.imports + (extra.imports if extra else []))
    tamper += cut
    return StaticResult(
        format=ident.format,
        reason=ident.reason,
        primary=str(ident.primary),
        tamper=host_checks(path, ident) + tamper,
        imports=imports,
        format_error=ident.error,
        seconds=time.monotonic() - start,
    )


def kept_imports(imports: list[Import]) -> tuple[list[Import], list[Tamper]]:
    """The imports the report lists: each (module, name, member) once, the worst first (so a
    dangerous one is never the one cut), at most MAX_IMPORTS; past that, a Tamper entry says
    how many were left out."""
    seen: dict[tuple[str, str, str], Import] = {}
    for i in imports:
        seen.setdefault((i.module, i.name, i.member), i)
    rank = {i: _rank(i) for i in seen.values()}
    unique = sorted(seen.values(), key=lambda i: -rank[i])  # stable: the file's order in a rank
    if len(unique) <= MAX_IMPORTS:
        return unique, []
    left = len(unique) - MAX_IMPORTS
    evidence = f"{len(unique)} distinct imports: the {left} most ordinary are not listed"
    return unique[:MAX_IMPORTS], [Tamper(TamperKind.PICKLE_IMPORT_CAP, evidence)]


def _rank(i: Import) -> int:
    from runner.rules.pickle_globals import classify_global  # the host's judgement of a name

    if i.module == "?" or i.name == "?":
        return 99
    sev = classify_global(i.module, i.name)
    return -1 if sev is None else sev.rank


def time_bound(path: Path) -> float:
    """30 s plus 30 s per GiB of the model's regular files (its tree walked with bounds)."""
    try:
        size = sum(e.size for e in tree.scan(path).files)
    except OSError:
        size = 0
    return TIME_BASE_S + TIME_PER_GIB_S * size / GIB


_clock = time.monotonic  # what the bound is measured with


def _seconds(t: float) -> str:
    return f"{t:.0f}" if t >= 10 else f"{t:.2g}"


class Pending:
    """A static read running in its bounded child process; `result()` waits for it.

    A reader thread waits for the child for as long as its bound allows and kills it there, so
    the bound holds however late the caller asks; a result that came after the bound (the
    child's own clock or the host's says so) is a timeout, never accepted."""

    def __init__(
        self, path: Path, timeout_s: float | None = None, memory_bytes: int = MEMORY_BYTES
    ) -> None:
        self.path = path
        self.memory_bytes = memory_bytes
        self.timeout = timeout_s if timeout_s is not None else time_bound(path)
        self.bounds = f"{_seconds(self.timeout)} s, {memory_bytes >> 20} MiB"
        self._result: StaticResult | None = None
        self._output: tuple[bytes, bytes] = (b"", b"")
        self._late = False
        self._proc = _take_spare() or _spawn()
        self.start = _clock()
        assert self._proc.stdin is not None
        try:  # the child reads its orders, then bounds itself before it opens the model
            self._proc.stdin.write(f"{memory_bytes}\n{path.resolve()}\n".encode())
            self._proc.stdin.close()
        except BrokenPipeError:
            pass  # the child died: result() reports it
        self._proc.stdin = None  # done with: communicate() must not flush it
        self._reader = threading.Thread(target=self._collect, name="airlock-static", daemon=True)
        self._reader.start()
        _replace_spare()

    def _collect(self) -> None:
        remaining = max(0.0, self.timeout - (_clock() - self.start))
        try:
            self._output = self._proc.communicate(timeout=remaining)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._output = self._proc.communicate()
            self._late = True
        except (OSError, ValueError):  # the pipes were closed under it (cancelled)
            self._proc.kill()
            self._proc.wait()
        if _clock() - self.start > self.timeout:
            self._late = True

    def result(self) -> StaticResult:
        if self._result is None:
            try:
                self._result = self._wait()
            except BaseException:
                self._proc.kill()
                self._reader.join()
                raise
        return self._result

    def cancel(self) -> None:
        """Stop the read (Ctrl-C, or a sandbox that failed before it needed the result)."""
        if self._result is None:
            self._proc.kill()
            self._reader.join()
            self._result = StaticResult(
                format="unknown", reason="", aborted="cancelled", bounds=self.bounds
            )

    def _wait(self) -> StaticResult:
        self._reader.join()
        out, errs = self._output
        late = f"it took longer than its time bound ({_seconds(self.timeout)} s)"
        code = self._proc.returncode
        if self._late:
            aborted = late
        elif code == 0:
            try:
                decoded = _decode(out, self.bounds)
            except (ValueError, KeyError, TypeError) as e:
                aborted = f"its output did not parse ({type(e).__name__})"
            else:
                if decoded.seconds <= self.timeout:
                    return decoded
                aborted = late  # by the child's own clock
        elif code == EXIT_MEMORY:
            aborted = f"it exceeded its memory bound ({self.memory_bytes >> 20} MiB)"
        else:
            tail = errs.decode(errors="replace").strip().splitlines()[-1:]
            aborted = f"it crashed (exit {code}): {tail}"
        return self._fallback(aborted)

    def _fallback(self, aborted: str) -> StaticResult:
        """The child did not finish: the format and the walk's findings, from the host."""
        try:
            ident = identify(self.path)
        except OSError as e:
            ident = Identity("unknown", f"unreadable: {e.strerror}", self.path, str(e.strerror))
        return StaticResult(
            format=ident.format,
            reason=ident.reason,
            primary=str(ident.primary),
            tamper=host_checks(self.path, ident),
            format_error=ident.error,
            aborted=aborted,
            seconds=_clock() - self.start,
            bounds=self.bounds,
        )


_spares: dict[str, Any] = {"keep": 0, "next": None}
_spares_lock = threading.Lock()


def keep_spare(keep: bool = True) -> None:
    """Keep one reader process started ahead, so a static read does not wait for Python to
    start: pools and batches, which open many sandboxes, call keep_spare() and, when done,
    keep_spare(False) (counted, so they can overlap). A spare left at exit reads end-of-file
    and quits."""
    with _spares_lock:
        _spares["keep"] = max(0, _spares["keep"] + (1 if keep else -1))
        spare = None
        if not _spares["keep"]:
            spare, _spares["next"] = _spares["next"], None
    if spare is not None:
        spare.kill()
        spare.communicate()


def _spawn() -> subprocess.Popen[bytes]:
    # no user site, no inherited environment but PATH, started in /; Airlock's own package
    # is put on the path whether it is installed or not
    here = str(Path(__file__).resolve().parents[2])
    return subprocess.Popen(
        [sys.executable, "-s", "-m", "runner.static.preflight", "-"],
        cwd="/",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": here},
    )


def _take_spare() -> subprocess.Popen[bytes] | None:
    with _spares_lock:
        spare, _spares["next"] = _spares["next"], None
    return spare if spare is not None and spare.poll() is None else None


def _replace_spare() -> None:
    """Start the next spare, when pools or batches want one."""
    if not _spares["keep"]:
        return
    fresh: subprocess.Popen[bytes] | None = _spawn()
    with _spares_lock:
        if _spares["keep"]:  # still wanted: install it, else it goes
            fresh, _spares["next"] = _spares["next"], fresh
    if fresh is not None:
        fresh.kill()
        fresh.communicate()


def bounded(
    path: Path, timeout_s: float | None = None, memory_bytes: int = MEMORY_BYTES
) -> StaticResult:
    """`examine` in a child process limited to `timeout_s` (default: 30 s plus 30 s per GiB)
    and `memory_bytes` of address space. When the child does not finish, the format is still
    detected here (it reads a few headers) and `aborted` says why."""
    return Pending(path, timeout_s, memory_bytes).result()


EXIT_MEMORY = 3


# --- signatures and provenance ---------------------------------------------------------------


@dataclass(frozen=True)
class SigningOptions:
    """What to do about signatures. `signature`: the signature file, or a directory holding
    MODEL.sig files; None (or no MODEL.sig in the directory): MODEL.sig next to the model.
    `trust` None: the trust policy file (AIRLOCK_TRUST_POLICY or the user config directory)."""

    signature: Path | None = None
    trust: TrustPolicy | None = None
    require: bool = False


def find_signature(model: Path) -> Path | None:
    """The conventional place: MODEL.sig beside a file, DIR.sig beside a directory."""
    p = model.resolve()
    candidate = p.with_name(p.name + ".sig")
    return candidate if candidate.is_file() else None


def check_signature(
    model: Path, manifest_root: str, opts: SigningOptions
) -> tuple[SignatureCheck | None, list[str]]:
    """Verify the model's signature, if it has one; (None, notes) when it has none. An explicit
    signature with no trust policy anywhere is the caller's mistake (UsageError)."""
    sig = opts.signature
    if sig is not None and sig.is_dir():  # a directory of signatures: MODEL.sig in it
        named = sig / f"{model.resolve().name}.sig"
        sig = named if named.is_file() else None
    sig = sig or find_signature(model)
    if sig is None:
        return None, [
            f"the model is not signed (no signature given, none found as {model.name}.sig)"
        ] if opts.require else []
    from runner.integrity.trust import TrustPolicy, default_policy_path
    from runner.integrity.verify import verify

    trust = opts.trust
    if trust is None:
        policy_file = default_policy_path()
        if policy_file.is_file():
            trust = TrustPolicy.load(policy_file)
        elif opts.signature is None and not opts.require:
            return None, [
                f"found {sig.name} but no trust policy to verify it with; pass "
                "--trust-policy or --key"
            ]
        else:
            raise UsageError(
                f"no trust policy to verify {sig} with",
                f"pass --trust-policy FILE or --key PUBLIC.pem, or write "
                f"{policy_file} (see docs/signing.md)",
            )
    return verify(model, sig, trust, manifest_root), []


def _decode(out: bytes, bounds: str) -> StaticResult:
    d = json.loads(out)
    return StaticResult(
        format=d["format"],
        reason=d["reason"],
        primary=d["primary"],
        tamper=[Tamper(TamperKind(t["check"]), t["evidence"]) for t in d["tamper"]],
        imports=[Import(**i) for i in d["imports"]],
        format_error=d["format_error"],
        seconds=d["seconds"],
        bounds=bounds,
    )


def main(argv: list[str] | None = None) -> int:
    import resource

    ap = argparse.ArgumentParser(
        prog="python -m runner.static.preflight",
        description="Static pre-flight checks of a model, as JSON.",
    )
    ap.add_argument(
        "model",
        help="the model's path, or - to read the memory limit and the path as two lines from stdin",
    )
    ap.add_argument("--memory", type=int, default=MEMORY_BYTES, help="address-space limit in bytes")
    args = ap.parse_args(argv)
    memory, model = args.memory, args.model
    if model == "-":
        lines = sys.stdin.read().splitlines()
        if len(lines) < 2:
            return 0  # a spare that was never used
        memory, model = int(lines[0]), lines[1]
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    try:
        result = examine(Path(model))
    except MemoryError:
        return EXIT_MEMORY
    sys.stdout.write(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
