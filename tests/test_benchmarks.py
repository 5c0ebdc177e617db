"""The asv suite imports everywhere and skips itself without a GPU."""

import json
from pathlib import Path

import pytest

from benchmarks.benchmarks import SeedDemoBlockOn
from harness.gpu import gpu_available


def test_asv_conf_is_valid_json():
    conf = json.loads((Path(__file__).parent.parent / "asv.conf.json").read_text())
    assert conf["benchmark_dir"] == "benchmarks" and conf["version"] == 1


@pytest.mark.skipif(gpu_available(), reason="a GPU is present")
def test_setup_raises_not_implemented_without_gpu():
    with pytest.raises(NotImplementedError, match="no GPU"):
        SeedDemoBlockOn().setup("direct", "thread")
