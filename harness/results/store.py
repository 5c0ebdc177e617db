"""Writing, reading and validating results documents.

``jsonschema`` is imported lazily and is not a runtime dependency (it is in the ``test``
extra): the writer is the only producer of documents and the tests validate what it
writes; ``load`` validates fully when jsonschema is importable and otherwise checks the
few fields ``compare`` reads.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from pathlib import Path

from harness.errors import PollbenchError
from harness.results.environment import machine_name
from harness.results.records import SCHEMA_VERSION, SPEC_KEYS, STATUSES, one_line

SCHEMA_FILE = f"schema-v{SCHEMA_VERSION}.json"


class ResultsError(PollbenchError):
    """A results file that cannot be read, is not pollbench's, or does not match the schema."""


@functools.lru_cache(maxsize=1)
def schema() -> dict:
    """The JSON Schema of results documents (``results/schema-v1.json``)."""
    return json.loads((Path(__file__).with_name(SCHEMA_FILE)).read_text())


def validate(doc) -> None:
    """Raise :class:`ResultsError` (one line: where and what) unless ``doc`` matches the
    schema. Needs ``jsonschema`` (``pip install 'pollbench[test]'``)."""
    try:
        import jsonschema
    except ImportError:
        raise ResultsError("validating results needs jsonschema: pip install 'pollbench[test]'") from None
    validator = jsonschema.Draft202012Validator(schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    if error is not None:
        raise ResultsError(f"does not match results schema v{SCHEMA_VERSION} at "
                           f"{error.json_path}: {one_line(error.message)[:200]}")


def _check_shape(doc: dict) -> None:
    """What ``compare`` relies on, for when jsonschema is not installed."""
    cases = doc.get("cases")
    if not isinstance(cases, list) or not isinstance(doc.get("environment"), dict):
        raise ResultsError("does not match results schema v1: no environment or cases list")
    for i, c in enumerate(cases):
        spec = c.get("spec") if isinstance(c, dict) else None
        if not isinstance(spec, dict) or any(k not in spec for k in SPEC_KEYS):
            raise ResultsError(f"does not match results schema v1 at $.cases[{i}].spec")
        if c.get("status") not in STATUSES:
            raise ResultsError(f"does not match results schema v1 at $.cases[{i}].status")
        for k in ("timing", "baseline_timing"):
            t = c.get(k)
            if t is not None and not (isinstance(t, dict)
                                      and isinstance(t.get("median_ms"), (int, float))):
                raise ResultsError(f"does not match results schema v1 at $.cases[{i}].{k}")


def load(path) -> dict:
    """Read a results document; :class:`ResultsError` (one line naming ``path``) when it is
    missing, not JSON, not a pollbench results file, of another schema version, or invalid."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such file") from None
    except OSError as e:
        raise ResultsError(f"{path}: {e.strerror or e}") from None
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise ResultsError(f"{path}: not a pollbench results file (not JSON)") from None
    if not isinstance(doc, dict) or "schema_version" not in doc:
        raise ResultsError(f"{path}: not a pollbench results file (no schema_version)")
    if doc["schema_version"] != SCHEMA_VERSION:
        raise ResultsError(f"{path}: results schema version {doc['schema_version']!r}; "
                           f"this pollbench reads version {SCHEMA_VERSION}")
    try:
        try:
            import jsonschema  # noqa: F401
        except ImportError:
            _check_shape(doc)
        else:
            validate(doc)
    except ResultsError as e:
        raise ResultsError(f"{path}: {e}") from None
    return doc


def dumps(doc: dict) -> str:
    """The file's text: JSON with no NaN (``records.plain`` turned those into null)."""
    return json.dumps(doc, indent=1, allow_nan=False) + "\n"


def write_atomic(path, text: str) -> Path:
    """Write ``text`` to ``path`` so that ``path`` is either absent (or its old content) or
    complete: a temporary file in the same folder, flushed and fsynced, then renamed over
    ``path`` (``os.replace``, atomic on POSIX), then the folder fsynced. A failure removes
    the temporary file; a killed process can leave only ``.<name>.*.tmp``, never a partial
    ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would make results private
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (POSIX)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return path


def results_path(doc: dict, out_dir) -> Path:
    """``<out_dir>/<machine>/<UTC time>-<git sha>.json`` for ``doc`` (``-2``, ``-3``...
    appended if a run of the same second and commit is already there)."""
    env = doc["environment"]
    stamp = env["time_utc"].replace("-", "").replace(":", "")  # 20261128T010203Z
    sha = (env.get("pollbench") or {}).get("git_sha")
    stem = f"{stamp}-{sha[:12] if sha else 'nogit'}"
    folder = Path(out_dir) / machine_name(env)
    path, n = folder / f"{stem}.json", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}.json"
    return path


def save(doc: dict, out_dir="results") -> Path:
    """Write ``doc`` atomically under ``out_dir`` (see :func:`results_path`); its path."""
    text = dumps(doc)  # serialise first: a document that cannot be written touches no file
    return write_atomic(results_path(doc, out_dir), text)
