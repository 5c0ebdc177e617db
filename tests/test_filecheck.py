"""The FileCheck helper itself: a checker that passes everything would hide every bug."""

import re

import pytest

from tests.filecheck import compile_pattern, filecheck

TEXT = """\
.version 8.0
.target sm_90
\tadd.rn.f32 %f3, %f1, %f2;
\tmul.rn.f32 %f4, %f3, 0f3F800000;
\tret;
"""


def test_check_in_order_passes():
    filecheck(TEXT, """
        CHECK: .version 8.0
        CHECK: add.rn.f32
        CHECK: ret;
    """)


def test_check_out_of_order_fails_and_shows_pattern_and_text():
    with pytest.raises(AssertionError) as e:
        filecheck(TEXT, """
            CHECK: mul.rn.f32
            CHECK: add.rn.f32
        """)
    msg = str(e.value)
    assert "pattern line 3: CHECK: add.rn.f32" in msg
    assert "ret;" in msg  # the text after the previous match is shown
    assert "no match" in msg


def test_check_next():
    filecheck(TEXT, """
        CHECK: add.rn.f32
        CHECK-NEXT: mul.rn.f32
        CHECK-NEXT: ret;
    """)
    with pytest.raises(AssertionError, match="next line"):
        filecheck(TEXT, """
            CHECK: add.rn.f32
            CHECK-NEXT: ret;
        """)


def test_check_same():
    filecheck(TEXT, """
        CHECK: mul.rn.f32
        CHECK-SAME: 0f3F800000
    """)
    with pytest.raises(AssertionError, match="same line"):
        filecheck(TEXT, """
            CHECK: add.rn.f32
            CHECK-SAME: 0f3F800000
        """)


def test_check_not_between_matches():
    filecheck(TEXT, """
        CHECK: .target
        CHECK-NOT: fma
        CHECK: ret;
    """)
    with pytest.raises(AssertionError, match="CHECK-NOT pattern found on line 4"):
        filecheck(TEXT, """
            CHECK: add.rn
            CHECK-NOT: mul
            CHECK: ret;
        """)


def test_check_not_only_looks_between_its_neighbours():
    # mul occurs, but before the first match: not in the checked range
    filecheck(TEXT, """
        CHECK: mul.rn
        CHECK-NOT: add.rn
        CHECK: ret;
    """)


def test_trailing_check_not_reaches_the_end():
    with pytest.raises(AssertionError, match="CHECK-NOT"):
        filecheck(TEXT, """
            CHECK: .target
            CHECK-NOT: ret;
        """)


def test_regex_blocks_and_literal_escaping():
    filecheck(TEXT, "CHECK: add.rn.f32 %f{{[0-9]+}}, %f{{[0-9]+}}, %f{{[0-9]+}};")
    # '.' outside {{ }} is literal: 'add.rn' must not match 'addXrn'
    with pytest.raises(AssertionError):
        filecheck("addXrn.f32", "CHECK: add.rn")
    assert compile_pattern("a.b{{c+}}") .pattern == re.escape("a.b") + "(?:c+)"


def test_blank_runs_match_any_blank_run():
    filecheck("\tld.param.u64 \t %rd1, [p];", "CHECK: ld.param.u64 %rd1, [p];")


def test_match_never_crosses_a_line():
    with pytest.raises(AssertionError):
        filecheck("add\nret", "CHECK: add{{[\\s\\S]*}}ret")


def test_bad_patterns_are_errors_not_silent_passes():
    with pytest.raises(ValueError, match="not a CHECK directive"):
        filecheck(TEXT, "CHEK: ret;")
    with pytest.raises(ValueError, match="no CHECK"):
        filecheck(TEXT, "\n  \n")
    with pytest.raises(ValueError, match="before any CHECK"):
        filecheck(TEXT, "CHECK-NEXT: ret;")
    with pytest.raises(ValueError, match="empty pattern"):
        filecheck(TEXT, "CHECK:   ")
