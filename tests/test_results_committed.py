"""Every results document committed under results/ still validates against schema v1."""

from pathlib import Path

import pytest

from harness.results import load

FILES = sorted((Path(__file__).parent.parent / "results").glob("*/*.json"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_results_validate(path):
    doc = load(path)
    assert doc["schema_version"] == 1 and doc["cases"]
