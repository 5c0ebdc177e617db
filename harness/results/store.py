"""Writing, reading and validating results documents.

``jsonschema`` is imported lazily and is not a runtime dependency (it is in the ``test``
extra): the writer is the only producer of documents and the tests validate what it
writes; ``load`` validates fully when jsonschema is importable and otherwise checks the
few fields ``compare`` reads.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import json
import os
import re
import socket
import tempfile
import time
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
    if isinstance(doc, dict) and "conform_schema_version" in doc:
        raise ResultsError(f"{path}: a pollbench conform report, not the results of a run")
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


# Temporary files name their writer (``.pollbench-<host>-<pid>-<random>.tmp``) so that a
# later save can tell a killed writer's leftover from a live writer's file in progress. The
# host is part of the name because results folders may be shared (NFS): a pid says nothing
# about a process on another machine.
_TMP = re.compile(r"^\.pollbench-(?P<host>.+)-(?P<pid>\d+)-[a-z0-9_]+\.tmp$")
_OLD_TMP = re.compile(r"^\..+\.json\.[a-z0-9_]{8}\.tmp$")  # older: .<name>.json.<random>.tmp
STALE_TMP_S = 600  # a temporary file whose owner cannot be checked is a leftover after this


def _host() -> str:
    """This machine's name as a piece of a file name."""
    return re.sub(r"[^A-Za-z0-9.]+", "_", socket.gethostname())[:64] or "host"


def _fsync_dir(folder: Path) -> None:
    """Make renames, links and unlinks in ``folder`` durable (POSIX; a no-op elsewhere)."""
    with contextlib.suppress(OSError):
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _write_temp(folder: Path, text: str) -> str:
    """A new temporary file in ``folder`` holding ``text``, flushed and fsynced; its path.
    A failure removes it."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".pollbench-{_host()}-{os.getpid()}-", suffix=".tmp",
                               dir=folder)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would make results private
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def _pid_alive(pid: int) -> bool:
    """False only when ``pid`` is certainly gone: any doubt keeps its files."""
    if os.name != "posix":  # os.kill(pid, 0) on Windows is not a probe: it would signal pid
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # EPERM: alive, someone else's; absurd pid: keep
        return True
    return True


def remove_stray_temporaries(folder) -> list[Path]:
    """Remove the temporary files that killed saves left in ``folder``: ours whose writer
    (this host, that pid) no longer runs, and those of other hosts or of the old naming
    older than :data:`STALE_TMP_S`. Never one of a live writer: another run may be saving
    into ``folder`` right now. The paths removed."""
    folder, removed, host = Path(folder), [], _host()
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    now = time.time()
    for name in names:
        m = _TMP.match(name)
        try:
            if m and m["host"] == host:
                stray = not _pid_alive(int(m["pid"]))
            elif m or _OLD_TMP.match(name):
                stray = now - os.lstat(folder / name).st_mtime > STALE_TMP_S
            else:
                continue
            if stray:
                os.unlink(folder / name)
                removed.append(folder / name)
        except OSError:  # gone already (another run cleaned it), or not ours to remove
            continue
    return removed


def write_atomic(path, text: str) -> Path:
    """Write ``text`` to ``path``, replacing what is there, so that ``path`` is either its
    old content (or absent) or complete: a temporary file in the same folder, flushed and
    fsynced, then renamed over ``path`` (``os.replace``, atomic on POSIX), then the folder
    fsynced. A failure removes the temporary file; a killed process can leave only a
    ``.pollbench-<host>-<pid>-*.tmp``, never a partial ``path``. For a new results file
    that must not replace anything, :func:`save`."""
    path = Path(path)
    tmp = _write_temp(path.parent, text)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def _stem(doc: dict, prefix: str = "") -> tuple[Path, str]:
    """The folder and the name without suffix of ``doc``'s results file, relative to the
    output folder: ``(<machine>, <prefix><UTC time>-<git sha>)``."""
    env = doc["environment"]
    stamp = env["time_utc"].replace("-", "").replace(":", "")  # 20261128T010203Z
    sha = (env.get("pollbench") or {}).get("git_sha")
    return Path(machine_name(env)), f"{prefix}{stamp}-{sha[:12] if sha else 'nogit'}"


def _candidates(folder: Path, stem: str):
    """``<stem>.json``, ``<stem>-2.json``, ``<stem>-3.json``... in ``folder``."""
    yield folder / f"{stem}.json"
    for n in itertools.count(2):
        yield folder / f"{stem}-{n}.json"


def results_path(doc: dict, out_dir) -> Path:
    """``<out_dir>/<machine>/<UTC time>-<git sha>.json`` for ``doc`` (``-2``, ``-3``...
    appended if a run of the same second and commit is already there). Only a forecast:
    another run may take the name first; :func:`save` returns the one it got."""
    sub, stem = _stem(doc)
    return next(p for p in _candidates(Path(out_dir) / sub, stem) if not p.exists())


def _link_exclusive(tmp: str, path: Path) -> None:
    """Give the complete file ``tmp`` the name ``path``; FileExistsError if it is taken."""
    try:
        os.link(tmp, path)  # atomic, and fails when path exists, unlike a rename
    except FileExistsError:
        raise
    except OSError as e:
        # a file system without hard links (FAT, some network mounts): reserve the name
        # with an exclusive create, then rename the complete file over the reservation
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        try:
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(path)  # our empty reservation, not someone's results
            raise


def save(doc: dict, out_dir="results", prefix: str = "") -> Path:
    """Write ``doc`` as a new file, atomically and exclusively, under the first free name
    of ``<out_dir>/<machine>/<UTC time>-<git sha>[-N].json`` (:func:`results_path`): the
    complete, fsynced document is published with an operation that fails if the name
    exists (a hard link, not a rename), so two runs never get one name and nothing is
    overwritten. Stray temporary files of killed saves in that folder are removed first.
    ``prefix`` starts the name of another kind of document (``conform-``). The path
    written."""
    text = dumps(doc)  # serialise first: a document that cannot be written touches no file
    sub, stem = _stem(doc, prefix)
    folder = Path(out_dir) / sub
    remove_stray_temporaries(folder)
    tmp = _write_temp(folder, text)
    try:
        for path in _candidates(folder, stem):
            try:
                _link_exclusive(tmp, path)
            except FileExistsError:  # taken, perhaps a moment ago by a run started with us
                continue
            break
    finally:
        with contextlib.suppress(OSError):  # after a link, the second name; else the leftover
            os.unlink(tmp)
    _fsync_dir(folder)
    return path
