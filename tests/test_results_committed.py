"""Every results document committed under results/ still validates against schema v1."""

from pathlib import Path

import pytest

from harness.results import load

# results/asv holds asv's own history (its format, not pollbench's); conform-*.json are
# `pollbench conform` reports (their own schema, checked in test_conform.py)
FILES = sorted(p for p in (Path(__file__).parent.parent / "results").glob("*/*.json")
               if p.parent.name != "asv" and not p.name.startswith("conform-"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_results_validate(path):
    doc = load(path)
    assert doc["schema_version"] == 1 and doc["cases"]
