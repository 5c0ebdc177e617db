"""Saving results: every run gets its own file, nothing is overwritten, killed saves leave
nothing behind for long; the commit recorded at install time; ``--version``'s text (no GPU)."""

import errno
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from harness.results import git_sha, save, store, version_string

# the module: the attribute harness.results.environment is the function environment()
env_mod = importlib.import_module("harness.results.environment")
ROOT = Path(__file__).resolve().parents[1]
SHA = "0123456789abcdef" * 2 + "01234567"


def _doc(**extra):
    """The least :func:`save` needs, on the emulator at a fixed second and commit."""
    return {"schema_version": 1, "cases": [], **extra,
            "environment": {"backend": "emu", "time_utc": "2026-11-28T01:02:03Z",
                            "pollbench": {"version": "0.1.0", "git_sha": SHA}}}


def _read(path):
    return json.loads(Path(path).read_text())


FIRST = "20261128T010203Z-0123456789ab.json"


# ---- one name per run --------------------------------------------------------------------

def test_two_saves_get_two_complete_files_and_leave_no_temporary(tmp_path):
    p1, p2 = save(_doc(run=1), tmp_path), save(_doc(run=2), tmp_path)
    assert (p1.name, p2.name) == (FIRST, "20261128T010203Z-0123456789ab-2.json")
    assert _read(p1)["run"] == 1 and _read(p2)["run"] == 2
    assert sorted(os.listdir(tmp_path / "emulator")) == sorted([p1.name, p2.name])


def test_saves_racing_in_threads_each_get_their_own_file(tmp_path):
    n = 12
    barrier, paths = threading.Barrier(n), [None] * n

    def run(i):
        barrier.wait()
        paths[i] = save(_doc(run=i), tmp_path)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(paths)) == n
    assert sorted(_read(p)["run"] for p in paths) == list(range(n))  # none overwritten
    assert len(os.listdir(tmp_path / "emulator")) == n  # and no temporary left


def test_a_stale_existence_check_never_overwrites(tmp_path, monkeypatch):
    # both writers computed the same first candidate: the other one published first
    other = tmp_path / "emulator" / FIRST
    other.parent.mkdir()
    other.write_text('{"the": "other run"}')
    monkeypatch.setattr(Path, "exists", lambda self, **kw: False)
    path = save(_doc(run="mine"), tmp_path)
    assert _read(other) == {"the": "other run"}
    assert path != other and _read(path)["run"] == "mine"


def test_a_name_taken_between_check_and_publish_is_skipped(tmp_path, monkeypatch):
    link, planted = os.link, []

    def other_run_first(src, dst, **kw):
        if not planted:  # another run publishes this very name just before us
            Path(dst).write_text('{"the": "other run"}')
            planted.append(Path(dst))
        return link(src, dst, **kw)

    monkeypatch.setattr(os, "link", other_run_first)
    path = save(_doc(run="mine"), tmp_path)
    assert planted and planted[0].name == FIRST and _read(planted[0]) == {"the": "other run"}
    assert path.name == "20261128T010203Z-0123456789ab-2.json" and _read(path)["run"] == "mine"


def test_without_hard_links_a_reserved_name_still_never_overwrites(tmp_path, monkeypatch):
    def no_links(src, dst, **kw):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    p1, p2 = save(_doc(run=1), tmp_path), save(_doc(run=2), tmp_path)
    assert p1 != p2 and _read(p1)["run"] == 1 and _read(p2)["run"] == 2
    assert len(os.listdir(tmp_path / "emulator")) == 2


# ---- stray temporary files ---------------------------------------------------------------

def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_save_removes_temporaries_of_dead_writers_only(tmp_path):
    folder = tmp_path / "emulator"
    folder.mkdir()
    host, hour_ago = store._host(), time.time() - 3600
    dead = folder / f".pollbench-{host}-{_dead_pid()}-abcd_123.tmp"
    live = folder / f".pollbench-{host}-{os.getpid()}-abcd_123.tmp"
    other_host_new = folder / f".pollbench-{host}x-{os.getpid()}-abcd_123.tmp"
    other_host_old = folder / f".pollbench-{host}x-{os.getpid()}-efgh_456.tmp"
    legacy_new = folder / f".{FIRST}.abcd_123.tmp"
    legacy_old = folder / f".{FIRST}.efgh_456.tmp"
    unrelated = folder / ".notes.tmp"
    for f in (dead, live, other_host_new, other_host_old, legacy_new, legacy_old, unrelated):
        f.write_text("partial")
    for f in (other_host_old, legacy_old, unrelated):
        os.utime(f, (hour_ago, hour_ago))
    path = save(_doc(), tmp_path)
    left = set(os.listdir(folder))
    assert {dead.name, other_host_old.name, legacy_old.name}.isdisjoint(left)
    assert left == {path.name, live.name, other_host_new.name, legacy_new.name, unrelated.name}


def test_a_killed_save_leaves_only_a_temporary_which_the_next_save_removes(tmp_path):
    # the writer dies (SIGKILL) once the data is in the temporary file, before publishing
    script = textwrap.dedent(f"""
        import json, os, signal
        from harness.results import save
        os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)
        save(json.loads({json.dumps(_doc())!r}), {str(tmp_path)!r})
    """)
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True)
    assert r.returncode == -9, r.stderr
    folder = tmp_path / "emulator"
    (left,) = os.listdir(folder)
    assert re.fullmatch(r"\.pollbench-.+-\d+-[a-z0-9_]+\.tmp", left)
    path = save(_doc(), tmp_path)
    assert os.listdir(folder) == [path.name] and path.name == FIRST


# ---- the commit when not run from a checkout ---------------------------------------------

def _build_info(root: Path, sha):
    (root / "harness").mkdir(parents=True, exist_ok=True)
    (root / "harness" / "_build_info.json").write_text(json.dumps({"git_sha": sha}))


def test_git_sha_falls_back_to_the_commit_recorded_at_install(tmp_path, monkeypatch):
    installed = tmp_path / "site-packages"
    _build_info(installed, SHA)
    assert git_sha(installed) == SHA
    monkeypatch.setattr(env_mod, "SOURCE_ROOT", installed)  # as if pollbench were there
    assert git_sha() == SHA
    _build_info(installed, None)  # built from a tree that was not a checkout
    assert git_sha(installed) is None
    (installed / "harness" / "_build_info.json").write_text("not json")
    assert git_sha(installed) is None
    # a checkout says what it is now, whatever a build recorded
    _build_info(installed, SHA)
    (installed / ".git" / "refs" / "heads").mkdir(parents=True)
    (installed / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (installed / ".git" / "refs" / "heads" / "main").write_text("f" * 40 + "\n")
    assert git_sha(installed) == "f" * 40


def _tiny_source_tree(tmp_path: Path) -> Path:
    """setup.py, environment.py and just enough around them for setuptools."""
    src = tmp_path / "src"
    (src / "harness" / "results").mkdir(parents=True)
    shutil.copy(ROOT / "setup.py", src)
    shutil.copy(ROOT / "harness" / "results" / "environment.py", src / "harness" / "results")
    (src / "harness" / "__init__.py").write_text("")
    (src / "harness" / "results" / "__init__.py").write_text("")
    (src / "pyproject.toml").write_text(textwrap.dedent("""
        [project]
        name = "pollbench"
        version = "0.1.0"
        [tool.setuptools.packages.find]
        include = ["harness*"]
    """))
    return src


def test_setup_py_records_the_commit_in_the_build_and_the_sdist(tmp_path):
    pytest.importorskip("setuptools")
    src = _tiny_source_tree(tmp_path)

    def build_py():
        out = tmp_path / "build"
        shutil.rmtree(out, ignore_errors=True)
        r = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(out)],
                           cwd=src, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return _read(out / "harness" / "_build_info.json")

    assert build_py() == {"git_sha": None}  # not a checkout: no crash, no commit
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text(SHA + "\n")  # a detached checkout
    assert build_py() == {"git_sha": SHA}
    r = subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path)],
                       cwd=src, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with tarfile.open(tmp_path / "pollbench-0.1.0.tar.gz") as tar:
        info = tar.extractfile("pollbench-0.1.0/harness/_build_info.json")
        assert json.loads(info.read()) == {"git_sha": SHA}  # a wheel built from it keeps it
    assert not (src / "harness" / "_build_info.json").exists()  # the source tree untouched


# ---- --version ---------------------------------------------------------------------------

def test_version_string(monkeypatch):
    real = version_string()
    assert re.fullmatch(r"pollbench \S+ \(git ([0-9a-f]{12}|unknown)\)", real)
    if (ROOT / ".git").exists():
        assert real.endswith(f"(git {git_sha(ROOT)[:12]})")
    monkeypatch.setattr(env_mod, "git_sha", lambda root=None: SHA)
    monkeypatch.setattr(env_mod, "_version", lambda dist: "9.8.7")
    assert version_string() == "pollbench 9.8.7 (git 0123456789ab)"
    monkeypatch.setattr(env_mod, "git_sha", lambda root=None: None)
    assert version_string() == "pollbench 9.8.7 (git unknown)"
    monkeypatch.setattr(env_mod, "_version", lambda dist: None)  # not installed: pyproject's
    pyproject = (ROOT / "pyproject.toml").read_text()
    version = re.search(r'(?m)^version = "([^"]+)"', pyproject)[1]
    assert version_string() == f"pollbench {version} (git unknown)"

