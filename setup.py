"""One build step on top of pyproject.toml (which holds all the metadata): ``build_py`` and
``sdist`` record the commit the package is built from in ``harness/_build_info.json``, so
that an installed pollbench, which has no ``.git`` beside it, still names its results files
and ``--version`` by commit (``harness.results.environment.git_sha``)."""

import importlib.util
import json
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent


def _environment():
    """``harness/results/environment.py`` loaded by path: one reader of ``.git``, without
    importing the harness package (numpy, CUDA...), which need not be installed yet."""
    spec = importlib.util.spec_from_file_location(
        "_pollbench_build_environment", ROOT / "harness" / "results" / "environment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_build_info(tree: Path) -> None:
    """``tree/harness/_build_info.json``: ``{"git_sha": <the source's commit, or null>}``.
    An unpacked sdist has no ``.git`` but the file the sdist step wrote, which git_sha
    falls back to, so a wheel built from an sdist keeps the commit."""
    env = _environment()
    target = tree / env.BUILD_INFO
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)  # sdist's release tree hard-links the source's files
    target.write_text(json.dumps({"git_sha": env.git_sha(ROOT)}) + "\n")


class BuildPyWithCommit(build_py):
    """``build_py``, then the commit into the build (what a wheel or ``pip install .``
    installs)."""

    def run(self):
        super().run()
        if not getattr(self, "editable_mode", False):  # editable: git_sha reads the checkout
            _write_build_info(Path(self.build_lib))


class SdistWithCommit(sdist):
    """``sdist`` with the commit in it (``python -m build`` makes the wheel from the sdist)."""

    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        _write_build_info(Path(base_dir))


setup(cmdclass={"build_py": BuildPyWithCommit, "sdist": SdistWithCommit})
