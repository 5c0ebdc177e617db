"""Results documents, schema version 1 (architecture §10; the fields: results/README.md).

    environment(backend, device=0) -> dict      # GPU, driver, CUDA, packages, git sha, time
    case_record(CaseResult, wall_s) -> dict     # one case; base_record() for timeout/error/skip
    document(environment, argv, config, cases) -> dict
    save(doc, out_dir) -> Path                  # atomic, exclusive: <machine>/<time>-<sha>.json
    version_string() -> str                     # "pollbench 0.1.0 (git 7fb269c1a2b3)"
    load(path) -> dict                          # ResultsError (one line) if it is not one
    validate(doc)                               # against schema-v1.json (needs jsonschema)
    compare(doc_a, doc_b) -> Comparison         # pollbench compare
"""

from harness.results.compare import Comparison, compare, median_ci
from harness.results.environment import environment, git_sha, machine_name, version_string
from harness.results.records import (
    SCHEMA_VERSION,
    STATUSES,
    base_record,
    case_record,
    document,
    one_line,
    plain,
    spec_dict,
    spec_key,
    spec_label,
)
from harness.results.store import (
    ResultsError,
    dumps,
    load,
    results_path,
    save,
    schema,
    validate,
    write_atomic,
)

__all__ = [
    "SCHEMA_VERSION",
    "STATUSES",
    "Comparison",
    "ResultsError",
    "base_record",
    "case_record",
    "compare",
    "document",
    "dumps",
    "environment",
    "git_sha",
    "load",
    "machine_name",
    "median_ci",
    "one_line",
    "plain",
    "results_path",
    "save",
    "schema",
    "spec_dict",
    "spec_key",
    "spec_label",
    "validate",
    "version_string",
    "write_atomic",
]
