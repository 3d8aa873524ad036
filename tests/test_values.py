"""``${key}`` values reach programs as exact argument bytes and never as shell code."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sweeprun.run.command import run_command
from sweeprun.spec.template import display, prepare
from sweeprun.testing import SweepProject

ECHO = "import json, sys; json.dump(sys.argv[1:], open(sys.argv[1], 'w'))"

# Command forms a user writes: bare, double-quoted, single-quoted, inside an option,
# inside a pipeline (which needs /bin/sh), after an assignment (also /bin/sh).
FORMS = [
    "{py} echo.py out.json ${{b}}",
    '{py} echo.py out.json "${{b}}"',
    "{py} echo.py out.json '${{b}}'",
    "{py} echo.py out.json --x=${{b}}",
    '{py} echo.py out.json "--x=${{b}}" | cat',
    "A=1 {py} echo.py out.json x${{b}}y",
    "{py} echo.py out.json '${{b}}' && true",
]
EXPECTED = {
    0: "{v}",
    1: "{v}",
    2: "{v}",
    3: "--x={v}",
    4: "--x={v}",
    5: "x{v}y",
    6: "{v}",
}
HOSTILE = [
    "$(touch PWNED)",
    "`touch PWNED`",
    '"; touch PWNED; "',
    "'; touch PWNED; '",
    "a b  c",
    "*",
    "$HOME",
    "${HOME}",
    "\\",
    "a\nb; touch PWNED",
    "",
    " ",
    "&& touch PWNED",
    "日本語 ✓",
    "x" * 5000,
]


def _run(tmp_path: Path, form: str, value: str) -> list[str]:
    (tmp_path / "echo.py").write_text(ECHO)
    out = tmp_path / "out.json"
    out.unlink(missing_ok=True)
    cmd = form.format(py=sys.executable)
    with open(tmp_path / "log", "wb") as log:
        rc = run_command(cmd, tmp_path, {"PATH": "/usr/bin:/bin"}, log, 30, values={"b": value})
    assert rc == 0, (tmp_path / "log").read_text()
    got: list[str] = json.loads(out.read_text())
    return got[1:]


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("form", range(len(FORMS)))
def test_value_arrives_exactly_and_runs_no_code(tmp_path: Path, form: int, value: str) -> None:
    got = _run(tmp_path, FORMS[form], value)
    assert got == [EXPECTED[form].format(v=value)]
    assert not (tmp_path / "PWNED").exists()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    value=st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=30
    )
    | st.sampled_from(["$(", "`", "'", '"', ";", "&", "\n", "*?[", "~", "${x}", "\\'"]),
    form=st.integers(0, len(FORMS) - 1),
)
def test_any_value_in_any_form(tmp_path: Path, value: str, form: int) -> None:
    got = _run(tmp_path, FORMS[form], value)
    assert got == [EXPECTED[form].format(v=value)]
    assert not (tmp_path / "PWNED").exists()


# A ${key} inside the script of an inner shell (issue 24, item 4): 6 of 37 hostile values
# ran code there (a canary file appeared), 25 were changed.
INNER_FORMS = [
    'sh -c "{py} echo.py out.json ${{b}}"',
    "bash -c '{py} echo.py out.json \"${{b}}\"'",
    "sh -c \"{py} echo.py out.json '${{b}}'\"",
    'sh -c "{py} echo.py out.json \\"x${{b}}y\\""',
    'eval "{py} echo.py out.json ${{b}}"',
    "eval {py} echo.py out.json ${{b}}",
    'true && sh -ec "{py} echo.py out.json ${{b}}"',
    "exec bash -c '{py} echo.py out.json \"$1\"' sh ${{b}}",
    'sh -c "{py} echo.py out.json ${{b}}" && sh -c "cat out.json > /dev/null"',
    'bash -o pipefail -c "{py} echo.py out.json ${{b}} | cat"',
    "env X=1 sh -c '{py} echo.py out.json \"${{b}}\"'",
]
INNER_EXPECTED = {3: "x{v}y"}


# The values that ran code or were changed in inner shells, and quotes of each kind (the
# hypothesis test below tries any text).
INNER_HOSTILE = [
    *(v for v in HOSTILE if "PWNED" in v or v in ("a b  c", "${HOME}", "")),
    *("'", "a'b\"c"),
]


@pytest.mark.parametrize("value", INNER_HOSTILE)
@pytest.mark.parametrize("form", range(len(INNER_FORMS)))
def test_a_value_in_an_inner_shell_is_data_there(tmp_path: Path, form: int, value: str) -> None:
    got = _run(tmp_path, INNER_FORMS[form], value)
    assert got == [INNER_EXPECTED.get(form, "{v}").format(v=value)]
    assert not (tmp_path / "PWNED").exists()


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    value=st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=30
    )
    | st.sampled_from(["$(", "`", "'", '"', ";", "&", "\n", "*?[", "~", "${x}", "\\'"]),
    form=st.integers(0, len(INNER_FORMS) - 1),
)
def test_any_value_in_any_inner_shell_form(tmp_path: Path, value: str, form: int) -> None:
    got = _run(tmp_path, INNER_FORMS[form], value)
    assert got == [INNER_EXPECTED.get(form, "{v}").format(v=value)]
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize(
    "cmd",
    [
        'ssh host "python e.py ${b}"',
        "ssh -p 22 host python e.py ${b}",
        "sh -c 'echo '\"'\"'${b}'",
        'sudo sh -c "echo ${b}"',  # sudo resets the environment: the value would be lost
        'docker run img sh -c "echo ${b}"',
        'env -i sh -c "echo ${b}"',
    ],
)
def test_a_value_a_remote_shell_would_run_is_refused_when_queued(
    sweepproject: SweepProject, cmd: str
) -> None:
    p = sweepproject
    p.write("params.yaml", "b: x\n")
    p.write("sweeps.yaml", f"params: params.yaml\ncmd: {json.dumps(cmd)}\n")
    p.commit()
    res = p.run("-S", "b=1")
    assert res.ret == 4
    (line,) = res.errlines
    assert line.startswith("sweeprun: error: sweeps.yaml:2:") and "stage 'main'" in line
    assert not p.refs()


def test_a_shell_or_eval_named_as_an_argument_is_no_inner_shell() -> None:
    assert prepare(f"{sys.executable} e.py eval ${{b}}", {"b": "$(x)"}).argv == [
        sys.executable, "e.py", "eval", "$(x)"
    ]  # fmt: skip
    assert prepare("sh -c 'echo \"$1\"' sh ${b}", {"b": "$(x)"}).argv == [
        "sh", "-c", 'echo "$1"', "sh", "$(x)"
    ]  # fmt: skip


def test_a_shell_command_gets_values_as_variables_not_text() -> None:
    p = prepare("echo ${b} | cat", {"b": "$(id)"})
    assert p.argv is None
    assert "$(id)" not in p.script
    assert p.script == 'echo "${SWEEPRUN_VALUE_1}" | cat'
    assert p.env == {"SWEEPRUN_VALUE_1": "$(id)"}
    assert display("echo ${b} | cat", {"b": "a b"}) == "echo 'a b' | cat"


def test_hostile_values_end_to_end(sweepproject: SweepProject) -> None:
    """Through the CLI: the three quotings of the issue, with ``$(touch …)`` as the value."""
    p = sweepproject
    p.write("params.yaml", "b: x\n")
    p.write("echo.py", ECHO)
    p.write(
        "sweeps.yaml",
        f"""
        params: params.yaml
        stages:
          bare:
            cmd: {sys.executable} echo.py bare.json ${{b}}
            metrics: [bare.json]
          dq:
            cmd: {sys.executable} echo.py dq.json "${{b}}"
            metrics: [dq.json]
          sq:
            cmd: {sys.executable} echo.py sq.json '${{b}}'
            metrics: [sq.json]
        """,
    )
    p.commit()
    value = '"$(touch PWNED)"'
    res = p.run("sweeps.yaml", "-S", f"b='{value}'", "--run")
    assert res.ret == 0, res.stdout + res.stderr
    (rec,) = p.records()
    for name in ("bare", "dq", "sq"):
        assert rec["metrics"][f"{name}.json"] == [f"{name}.json", value]
    assert not list(p.base.rglob("PWNED"))


def test_a_value_with_a_nul_byte_is_a_located_error(sweepproject: SweepProject) -> None:
    p = sweepproject
    p.write("params.yaml", 'b: "a\\0b"\n')
    p.write("sweeps.yaml", "params: params.yaml\ncmd: echo ${b}\n")
    p.commit()
    res = p.run("sweeps.yaml")
    assert res.ret == 4
    assert "sweeps.yaml:2:1: stage 'main': the value of ${b}" in res.stderr
    assert "NUL" in res.stderr
    assert p.refs() == {}
