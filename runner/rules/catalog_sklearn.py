"""The rules of what the host reads in scikit-learn, joblib, skops and NumPy files (AL940-AL942:
object arrays that unpickle, array and archive headers that could not be read, types a skops
archive would build), as rows the rule table (runner.rules.catalog) splices in: id, RuleName
member, title, Severity member, evidence; and SIGNS, the TamperKind each static finding carries,
with its rule and message. Plain data: this module imports nothing of Airlock."""

from __future__ import annotations

Row = tuple[str, str, str, str, str]

ROWS: tuple[Row, ...] = (
    (
        "AL940",
        "NUMPY_OBJECT_ARRAY",
        "NumPy array holds pickled objects",
        "LOW",
        "static: an .npy file or .npz member of dtype object (loading it unpickles, as "
        "allow_pickle=True does); the pickle's imports are judged as any pickle's",
    ),
    (
        "AL941",
        "ARRAY_HEADER_MALFORMED",
        "Array or archive header could not be read",
        "MEDIUM",
        "static: an .npy header, a joblib compressed stream or a skops schema that is cut "
        "short, past its read bound, or claims more bytes than the file holds: what it holds "
        "was not checked",
    ),
    (
        "AL942",
        "SKOPS_UNTRUSTED_TYPE",
        "skops archive builds types skops does not trust by default",
        "LOW",
        "static: the types a skops archive's schema.json names that skops does not trust by "
        "default (what skops.io.get_untrusted_types lists: what a user is asked to pass as "
        "trusted=); low, as each type is also judged as a pickle import by its full path "
        "(AL611, AL612), which says how bad it is: a decision tree skops leaves untrusted is "
        "ordinary, posix.system is not",
    ),
)
# TamperKind value: (RuleName member, the finding's message)
SIGNS: dict[str, tuple[str, str]] = {
    "numpy-object-array": (
        "NUMPY_OBJECT_ARRAY",
        "a NumPy array holds pickled objects: loading it unpickles",
    ),
    "array-header-malformed": (
        "ARRAY_HEADER_MALFORMED",
        "an array or archive header could not be read: what it holds was not checked",
    ),
    "skops-untrusted-type": (
        "SKOPS_UNTRUSTED_TYPE",
        "the skops archive builds types skops does not trust by default",
    ),
}
