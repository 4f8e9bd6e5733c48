"""torch.package archives, loaded inside the sandbox as a user who trusts them would load them:
`torch.package.PackageImporter`, which runs the archive's packaged Python code. That is the
point: its import-time code runs here, where it is watched.

The archive's pickle (the one named `model`, else the first) is loaded, then every packaged
module is imported, so code that only an import of its own would run runs too. The importer's
own mechanism (compiling each packaged file and executing its module body) is not recorded as the
model's dynamic code, as the import of a library is not; everything that code does is.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path
from typing import Any

from runner.worker import audit

MAX_MODULES = 256  # packaged modules imported after the pickle
_PACKAGED = f"{sys.prefix}/airlock-torch-package/"  # where packaged module bodies are said to be


def layout(path: Path) -> tuple[str, list[str], list[str]]:
    """(the archive's root folder, its members that hold pickles, its modules' names)."""
    with zipfile.ZipFile(path) as zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        marker = next((i.filename for i in infos if i.filename.endswith("/.data/version")), "")
        root = marker[: -len(".data/version")]
        pickles, modules = [], []
        for info in infos:
            rel = info.filename[len(root) :]
            if not info.filename.startswith(root) or rel.startswith(".data/"):
                continue
            if rel.endswith(".py"):
                parts = rel[:-3].split("/")
                modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
            else:
                with zf.open(info) as member:
                    head = member.read(2)
                if len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
                    pickles.append(rel)
    return root, sorted(pickles), sorted(set(modules))


def _importer_class() -> Any:
    from torch.package.package_importer import PackageImporter

    class Importer(PackageImporter):
        """Compiles packaged source unrecorded, and names each module body as library code, so
        the importer's own compile and exec are no finding; nested code keeps its name."""

        def _compile_source(self, fullpath: str, mangled_filename: str) -> Any:
            with audit.paused():
                code = super()._compile_source(fullpath, mangled_filename)
            return code.replace(co_filename=_PACKAGED + mangled_filename)

    return Importer


def load(path: Path) -> tuple[Any, str]:
    """(the archive's model object, a note on what was loaded)."""
    _root, pickles, modules = layout(path)
    importer = _importer_class()(str(path))
    obj: Any = None
    note = "a torch.package archive with no pickle: its modules were imported"
    if pickles:
        named = [p for p in pickles if p.rsplit("/", 1)[-1].split(".")[0] == "model"]
        chosen = (named or pickles)[0]
        package, _, resource = chosen.rpartition("/")
        obj = importer.load_pickle(package.replace("/", "."), resource, map_location="cpu")
        note = f"torch.package resource {chosen!r}"
    failed = 0
    for name in modules[:MAX_MODULES]:
        try:
            importer.import_module(name)
        except Exception:  # a module that does not import is the archive's, not ours
            failed += 1
    if failed or len(modules) > MAX_MODULES:
        note += f"; {failed} of {min(len(modules), MAX_MODULES)} packaged modules did not import"
    return obj, note


def warm() -> None:
    """A tiny benign package of our own, exported and imported, so the library's lazy start-up
    is the baseline."""
    import io
    import warnings

    import torch
    from torch.package.package_exporter import PackageExporter

    buf = io.BytesIO()
    with warnings.catch_warnings(), PackageExporter(buf) as exporter:
        warnings.simplefilter("ignore")  # TypedStorage's deprecation, torch's own
        exporter.extern("torch.**")
        exporter.save_source_string("airlock_warm", "import torch\nSCALE = 2\n", is_package=True)
        exporter.save_pickle("airlock_warm", "w.pkl", {"w": torch.zeros(2)})
    buf.seek(0)
    importer = _importer_class()(buf)
    importer.load_pickle("airlock_warm", "w.pkl", map_location="cpu")
    importer.import_module("airlock_warm")
