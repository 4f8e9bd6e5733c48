"""Generate runner/rules/pickle_allowed_sklearn.py: the scikit-learn, NumPy and SciPy classes a
pickled estimator names (and runner/rules/skops_trusted.py: what each skops loader trusts by
default), from the pinned scikit-learn in the dev venv (the host product never
installs scikit-learn; it reads this list).

    .venv/bin/python scripts/gen_sklearn_allowed.py          # rewrite the module
    .venv/bin/python scripts/gen_sklearn_allowed.py --check  # exit 1 when it is stale

A pickle's REDUCE can call any allowed global with arguments of the file's choosing, so only
classes are listed, never scikit-learn's functions at large (sklearn.datasets.fetch_openml
reaches the network; sklearn.utils has helpers that run code):

- estimators: every class under sklearn that subclasses BaseEstimator (their __init__ only
  stores parameters, as scikit-learn's own checks demand), but for the test and mocking
  helpers (which take callables to run);
- what fitted estimators hold: kernels, losses and links, distance metrics (not PyFuncDistance,
  which calls a function), KD and ball trees, decision trees (sklearn.tree._tree.Tree), the
  histogram boosting predictor, optimisers, CV splitters, scorers, metadata requests, Bunch and
  a few node and triplet classes, each by its base class or by name below;
- the metric functions the scorer registry names (what a fitted search's scorer_ holds): pure
  computations over the arrays they are given;
- NumPy's scalar types (an estimator's dtype parameter, np.float64) and SciPy's sparse matrix
  and array classes (fitted attributes that are sparse).

A zoo of fitted estimators is pickled and every sklearn, numpy and scipy global they name must
be on the list (or on runner.rules.pickle_allowed's own), or the script fails.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import io
import pickle
import pickletools
import pkgutil
import sys
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "runner" / "rules" / "pickle_allowed_sklearn.py"
SKOPS_TARGET = ROOT / "runner" / "rules" / "skops_trusted.py"
SKIP_MODULES = (".tests", "sklearn.externals", "sklearn._build_utils", "conftest")
SKIP_ESTIMATOR_MODULES = ("sklearn.utils._mocking", "sklearn.utils._testing")
SKIP_ESTIMATOR_MODULES += ("sklearn.utils.estimator_checks", "sklearn.utils._test_common")
# non-estimator classes fitted estimators hold, by base class (module, name)
HELD_BASES = (
    ("sklearn.gaussian_process.kernels", "Kernel"),
    ("sklearn._loss.loss", "BaseLoss"),
    ("sklearn._loss.link", "BaseLink"),
    ("sklearn._loss._loss", "CyLossFunction"),
    ("sklearn.metrics._dist_metrics", "DistanceMetric"),
    ("sklearn.neighbors._ball_tree", "BinaryTree64"),
    ("sklearn.neighbors._ball_tree", "BinaryTree32"),
    ("sklearn.neighbors._kd_tree", "BinaryTree64"),
    ("sklearn.neighbors._kd_tree", "BinaryTree32"),
    ("sklearn.neural_network._stochastic_optimizers", "BaseOptimizer"),
    ("sklearn.model_selection._split", "BaseCrossValidator"),
    ("sklearn.model_selection._split", "BaseShuffleSplit"),
    ("sklearn.metrics._scorer", "_BaseScorer"),
)
HELD_NAMES = (
    "sklearn._loss._loss.CyHalfMultinomialLoss",
    "sklearn._loss.link.Interval",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.cluster._birch._CFNode",
    "sklearn.cluster._birch._CFSubcluster",
    "sklearn.cluster._bisect_k_means._BisectingTree",
    "sklearn.compose._column_transformer.make_column_selector",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.gaussian_process.kernels.Hyperparameter",
    "sklearn.impute._iterative._ImputerTriplet",
    "sklearn.metrics._scorer._MultimetricScorer",
    "sklearn.metrics._scorer._PassthroughScorer",
    "sklearn.tree._tree.Tree",
    "sklearn.utils._bunch.Bunch",
    "sklearn.utils._metadata_requests.MetadataRequest",
    "sklearn.utils._metadata_requests.MethodMetadataRequest",
    "sklearn.utils._metadata_requests.MetadataRouter",
)
NEVER = ("PyFuncDistance",)  # calls the function it is given
# functions fitted estimators hold or their pickles call, each named: pure computations over
# the arrays they are given, or (newObj) cls.__new__(cls) of a class the pickle names itself
HELD_FUNCTIONS = (
    "sklearn.cluster._kmeans._kmeans_single_lloyd",  # BisectingKMeans._kmeans_single
    "sklearn.cluster._kmeans._kmeans_single_elkan",
    "sklearn.neighbors._ball_tree.newObj",  # the trees' __reduce__
    "sklearn.neighbors._kd_tree.newObj",
)


def _path(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def _modules() -> list[Any]:
    import sklearn

    found = []
    for info in pkgutil.walk_packages(sklearn.__path__, "sklearn."):
        if any(s in info.name for s in SKIP_MODULES):
            continue
        try:
            found.append(importlib.import_module(info.name))
        except Exception:  # noqa: S112 - optional dependencies (matplotlib, pandas): not pickled
            continue
    return found


def sklearn_classes() -> set[str]:
    from sklearn.base import BaseEstimator

    bases = tuple(getattr(importlib.import_module(m), n) for m, n in HELD_BASES)
    out: set[str] = set()
    for mod in _modules():
        for obj in vars(mod).values():
            if not inspect.isclass(obj) or obj.__module__ != mod.__name__:
                continue
            path = _path(obj)
            if any(n in obj.__name__ for n in NEVER):
                continue
            estimator = issubclass(obj, BaseEstimator) and not mod.__name__.startswith(
                SKIP_ESTIMATOR_MODULES
            )
            if not (estimator or issubclass(obj, bases) or path in HELD_NAMES):
                continue
            out.add(path)
            # Cython's pickle helper: checks the checksum and that the type subclasses it
            if hasattr(mod, f"__pyx_unpickle_{obj.__name__}"):
                out.add(f"{mod.__name__}.__pyx_unpickle_{obj.__name__}")
    return out | set(HELD_FUNCTIONS)


def scorer_functions() -> set[str]:
    from sklearn.metrics import _scorer

    out = set()
    for scorer in _scorer._SCORERS.values():
        func = getattr(scorer, "_score_func", None)
        if inspect.isfunction(func) and func.__module__.startswith("sklearn.metrics"):
            out.add(_path(func))
    return out


def numpy_scipy() -> set[str]:
    import numpy as np
    import scipy.sparse as sp

    out = {_path(t) for t in set(np.sctypeDict.values())}
    out -= {_path(np.void)}  # numpy.void(n) allocates n bytes
    for name in dir(sp):
        obj = getattr(sp, name)
        if inspect.isclass(obj) and name.endswith(("_matrix", "_array")):
            out.add(_path(obj))
    return out


def skops_defaults() -> dict[str, list[str]]:
    """What each skops loader trusts by default (its node's _get_trusted default), by name:
    the host's read of schema.json reports what is left, as skops.io.get_untrusted_types."""
    import collections

    import numpy as np
    import scipy.sparse as sp
    from skops.io import _trusted_types as t
    from skops.io._audit import get_type_paths
    from skops.io._sklearn import ALLOWED_LOSSES

    table: dict[str, list[Any]] = {
        "DictNode": [dict, "collections.OrderedDict"],
        "DefaultDictNode": [collections.defaultdict],
        **{n: [k] for n, k in (("ListNode", list), ("SetNode", set), ("TupleNode", tuple))},
        **{n: [k] for n, k in (("SliceNode", slice), ("BytesNode", bytes))},
        "BytearrayNode": [bytearray],
        "FunctionNode": t.SCIPY_UFUNC_TYPE_NAMES + t.NUMPY_UFUNC_TYPE_NAMES,
        "TypeNode": t.PRIMITIVE_TYPE_NAMES + t.CONTAINER_TYPE_NAMES + t.NUMPY_DTYPE_TYPE_NAMES,
        "ObjectNode": t.SKLEARN_ESTIMATOR_TYPE_NAMES + t.SKLEARN_INTERNAL_TYPE_NAMES,
        "NdArrayNode": [np.ndarray, *t.NUMPY_DTYPE_TYPE_NAMES],
        "MaskedArrayNode": [np.ma.MaskedArray],
        "RandomStateNode": [np.random.RandomState],
        "RandomGeneratorNode": [np.random.Generator],
        "SparseMatrixNode": [sp.spmatrix, sp.sparray],
        "LossNode": sorted(ALLOWED_LOSSES, key=_path),
    }
    return {k: sorted(set(get_type_paths(v))) for k, v in table.items()}


def zoo() -> list[Any]:
    """Fitted estimators of many kinds, to check the list against what pickles name."""
    import numpy as np
    from sklearn import (
        calibration,
        cluster,
        compose,
        decomposition,
        ensemble,
        feature_extraction,
        gaussian_process,
        impute,
        linear_model,
        model_selection,
        naive_bayes,
        neighbors,
        neural_network,
        pipeline,
        preprocessing,
        svm,
        tree,
    )

    rng = np.random.RandomState(0)
    X, y = rng.rand(60, 4), rng.randint(0, 3, 60)
    yr = X @ np.array([1.0, -2.0, 0.5, 3.0])
    models: list[Any] = [
        linear_model.LogisticRegression().fit(X, y),
        linear_model.SGDClassifier().fit(X, y),
        linear_model.Ridge().fit(X, yr),
        linear_model.PoissonRegressor().fit(X, np.abs(yr)),
        ensemble.RandomForestClassifier(n_estimators=3).fit(X, y),
        ensemble.GradientBoostingClassifier(n_estimators=3).fit(X, y),
        ensemble.GradientBoostingRegressor(n_estimators=3).fit(X, yr),
        ensemble.HistGradientBoostingClassifier(max_iter=3).fit(X, y),
        ensemble.HistGradientBoostingRegressor(max_iter=3).fit(X, yr),
        ensemble.IsolationForest(n_estimators=3).fit(X),
        ensemble.AdaBoostClassifier(n_estimators=3).fit(X, y),
        ensemble.VotingClassifier([("a", tree.DecisionTreeClassifier())]).fit(X, y),
        tree.DecisionTreeRegressor().fit(X, yr),
        svm.SVC(probability=True).fit(X, y),
        neighbors.KNeighborsClassifier(algorithm="kd_tree").fit(X, y),
        neighbors.KNeighborsClassifier(algorithm="ball_tree").fit(X, y),
        neighbors.KernelDensity().fit(X),
        naive_bayes.GaussianNB().fit(X, y),
        neural_network.MLPClassifier(max_iter=5).fit(X, y),
        cluster.KMeans(n_clusters=2, n_init=1).fit(X),
        cluster.Birch().fit(X),
        cluster.BisectingKMeans(n_clusters=2).fit(X),
        decomposition.PCA(2).fit(X),
        gaussian_process.GaussianProcessClassifier().fit(X, y),
        impute.SimpleImputer().fit(X),
        calibration.CalibratedClassifierCV(linear_model.LogisticRegression(), cv=2).fit(X, y),
        model_selection.GridSearchCV(
            linear_model.LogisticRegression(), {"C": [1.0]}, cv=model_selection.KFold(2)
        ).fit(X, y),
        pipeline.make_pipeline(preprocessing.StandardScaler(), svm.SVC()).fit(X, y),
        compose.ColumnTransformer(
            [("s", preprocessing.StandardScaler(), [0, 1])], remainder="passthrough"
        ).fit(X),
        preprocessing.OneHotEncoder().fit(rng.randint(0, 3, (20, 2))),
        feature_extraction.text.TfidfVectorizer().fit(["apple bee cat", "bee cat dog", "dog eel"]),
    ]
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401

    models.append(impute.IterativeImputer(max_iter=2).fit(X))
    return models


def globals_of(obj: Any) -> set[str]:
    data = pickle.dumps(obj, protocol=4)
    out, strings = set(), []
    for op, arg, _ in pickletools.genops(io.BytesIO(data)):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE"):
            strings.append(arg)
        elif op.name == "STACK_GLOBAL":
            out.add(f"{strings[-2]}.{strings[-1]}")
        elif op.name == "GLOBAL":
            out.add(arg.replace(" ", "."))
    return out


def _packed(names: list[str]) -> list[str]:
    lines, line = [], ""
    for n in names:  # several to a line, so the module stays short
        if line and len(line) + 1 + len(n) > 99:
            lines.append(line)
            line = ""
        line = f"{line} {n}".strip()
    return [*lines, line]


def _header(what: str) -> str:
    import numpy
    import scipy
    import sklearn
    import skops

    return (
        '"""Generated by scripts/gen_sklearn_allowed.py from scikit-learn '
        f"{sklearn.__version__},\nNumPy {numpy.__version__}, SciPy {scipy.__version__} and "
        f"skops {skops.__version__}; do not edit by hand. {what}\n"
        '(see the script for what is listed and why)."""\n\n'
        "from __future__ import annotations\n\n"
    )


def render(names: set[str]) -> str:
    body = "\n".join(_packed(sorted(names)))
    return (
        _header("The classes (and the few functions)\na pickled scikit-learn estimator names")
        + f'_NAMES = """\n{body}\n"""\n'
        + "SKLEARN_ALLOWED: frozenset[str] = frozenset(_NAMES.split())\n"
    )


def render_skops(skops: dict[str, list[str]]) -> str:
    trusted = "\n".join(f"[{k}]\n" + "\n".join(_packed(v)) for k, v in sorted(skops.items()))
    return (
        _header("What each skops loader trusts by\ndefault")
        + f'_SKOPS = """\n{trusted}\n"""\n'
        + "# skops loader -> the types it trusts by default\n"
        + "SKOPS_TRUSTED: dict[str, frozenset[str]] = {\n"
        + '    block.split("]", 1)[0]: frozenset(block.split("]", 1)[1].split())\n'
        + '    for block in _SKOPS.split("[")[1:]\n'
        + "}\n"
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="exit 1 when the module is stale")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    names = sklearn_classes() | scorer_functions() | numpy_scipy()
    sys.path.insert(0, str(ROOT))
    import runner.rules.pickle_allowed as base

    known = names | set(base.BASE_ALLOWED) | {"joblib.numpy_pickle.NumpyArrayWrapper"}
    missing = set()
    for model in zoo():
        missing |= {
            g for g in globals_of(model) if g.split(".")[0] in ("sklearn", "numpy", "scipy")
        } - known
    if missing:
        print("pickled estimators name globals the list lacks:", sorted(missing))
        return 1
    texts = {TARGET: render(names), SKOPS_TARGET: render_skops(skops_defaults())}
    if args.check:
        stale = [p.name for p, t in texts.items() if not p.exists() or p.read_text() != t]
        print(f"stale: {', '.join(stale)}" if stale else "current")
        return 1 if stale else 0
    for path, text in texts.items():
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
