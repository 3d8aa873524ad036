"""Bad input: one line naming the file and position (or option), exit 4, nothing queued."""

from __future__ import annotations

import fnmatch

import pytest

from sweeprun.testing import SweepProject

PARAMS = "model:\n  alpha: 0.1\n  degree: 1\nseed: 0\n"


@pytest.mark.parametrize(
    ("spec", "args", "expected"),
    [
        (
            "cmd: echo\nsweeps:\n  g:\n    matrix:\n      model.alpha: [1, 2\n",
            (),
            "sweeps.yaml:6:1: invalid YAML: *",
        ),
        ("cmd: echo\nbogus: 1\n", (), "sweeps.yaml:2:1: unknown key 'bogus' in the spec (valid: *"),
        (
            "cmd: echo\nsweeps:\n  g:\n    matrix:\n      model.alpah: [1, 2]\n",
            (),
            "sweeps.yaml:5:7: sweep 'g': unknown param key 'model.alpah' in params.yaml"
            " (did you mean 'model.alpha'?)",
        ),
        (
            "cmd: echo\nsweeps:\n  g:\n    matrixx:\n      model.alpha: [1]\n",
            (),
            "sweeps.yaml:4:5: unknown key 'matrixx' in sweep 'g' (valid: matrix, *",
        ),
        (
            "cmd: echo\nsweeps:\n  g:\n    matrix:\n      model.alpha: 3\n",
            (),
            "sweeps.yaml:5:7: sweep 'g': matrix key 'model.alpha' must be a list of values",
        ),
        (
            "cmd: echo\nsweeps:\n  g:\n    matrix:\n      model.alpha: [1]\n"
            "      exclude: [{seed: 1}]\n",
            (),
            "sweeps.yaml:6:17: sweep 'g': exclude entry 1 names 'seed', which is not a matrix key",
        ),
        ("cmd: [1]\n", (), "sweeps.yaml:1:6: 'cmd' must be a string or a list of strings*"),
        ("cmd: echo\ncmd: again\n", (), "sweeps.yaml:2:1: duplicate key 'cmd'"),
        (
            "sweeps: {}\n",
            (),
            "sweeps.yaml:1:1: nothing to run: add a top-level 'cmd:', 'stages:' or 'pipeline:'",
        ),
        ("cmd: echo\ndeps: 3\n", (), "sweeps.yaml:2:7: 'deps' must be a string or a list*"),
        ("cmd: echo ${model.beta}\n", (), "sweeps.yaml:1:1: stage 'main': ${model.beta} is not*"),
        (
            "cmd: echo\nparams: nope.yaml\n",
            (),
            "sweeps.yaml:2:9: params file 'nope.yaml' not found",
        ),
        (
            "cmd: echo\n",
            ("-S", "model.alpah=3"),
            "-S model.alpah=3: unknown param key 'model.alpah' in params.yaml"
            " (did you mean 'model.alpha'?)*",
        ),
        (
            "cmd: echo\n",
            ("-S", "model.alpha"),
            "-S 'model.alpha': expected [+|++|~][file:]key=value*",
        ),
        ("cmd: echo\n", ("-S", "other.yaml:x=1"), "'other.yaml:x': 'other.yaml' is not a params*"),
        (
            "cmd: echo\n",
            ("-j", "two"),
            "sweeprun: argument -j/--jobs: 'two' is not a whole number >= 1",
        ),
        ("cmd: echo\n", ("--bogus",), "sweeprun: unrecognized arguments: --bogus"),
        ("cmd: echo\n", ("-n", "a/b"), "-n/--name 'a/b': not usable as a git ref name"),
        ("cmd: echo\n", ("missing.yaml",), "missing.yaml: no such spec file or directory"),
        # Issue 12: accepted silently, or a traceback, before.
        (
            "cmd: echo\n",
            ("--run", "--timeout", "-1"),
            "sweeprun: argument --timeout: '-1' is not a number of seconds > 0",
        ),
        (
            "cmd: echo\n",
            ("--run", "--timeout", "nan"),
            "sweeprun: argument --timeout: 'nan' is not a number of seconds > 0",
        ),
        ("cmd: echo\n", ("--run", "-j", "0"), "*-j/--jobs: '0' is not a whole number >= 1"),
        ("cmd: echo\n", ("--run", "-j", "-3"), "*-j/--jobs: '-3' is not a whole number >= 1"),
        (
            "cmd: echo\n",
            ("--run", "--slots", ",,"),
            "*--slots/--gpus: ',,' is not a list like 0,1*",
        ),
        (
            "cmd: echo\n",
            ("--run", "--retries", "-1"),
            "*--retries: '-1' is not a whole number >= 0",
        ),
        (
            "cmd: echo\n",
            ("--run", "--deselect", "nope"),
            "--deselect nope: no such experiment or sweep (see --collect-only)",
        ),
        (
            "stages:\n  ../x:\n    cmd: echo\n",
            (),
            "sweeps.yaml:3:5: stage name '../x' is not usable*",
        ),
        ("cmd: echo\x00\n", (), "sweeps.yaml:1:10: invalid YAML: character #x0000 is not allowed"),
        (
            "cmd: echo\n",
            ("-S", "model.alpha=1,model.degree=2"),
            "-S 'model.alpha=1,model.degree=2': 'model.degree=2' looks like another override*",
        ),
        (
            "cmd: echo\nsweeps:\n  g:\n    matrix: {model.alpha: [1, 2]}\n"
            "    expect: {acc: '>>= 1'}\n",
            (),
            "sweeps.yaml:5:19: expect acc: '>>= 1' is not a condition*",
        ),
        (
            'cmd: echo\nsweeps:\n  g:\n    values: [{seed: "\\udc80"}]\n',
            (),
            "sweeps.yaml:4:5: sweep 'g': the value of seed is not valid Unicode*",
        ),
        (
            "cmd: echo\nsweeps:\n  r:\n    random: {n: 2, space: {model.alpha: choice(1,2)}}\n",
            (),
            "sweeps.yaml:4:28: sweep 'r': space key 'model.alpha': 'choice(1' was cut at a "
            "comma; inside {…} quote the whole call*",
        ),
        (
            "cmd: echo\nsweeps:\n  g:\n    matrix: {model.alpha: [1, 2]}\n"
            '    name: "{model.alpha"\n',
            (),
            "sweeps.yaml:5:11: name template '{model.alpha': unbalanced '{'*",
        ),
        # Issue 22, item 8: accepted silently before.
        (
            "cmd: echo\n",
            ("-S", "seed=1", "-S", "seed=2"),
            "-S seed=2: seed is set twice (also -S seed=1); give it once (a comma sweeps: "
            "-S seed=1,2)",
        ),
        (
            "cmd: echo\n",
            ("-S", "model.alpha=1", "-S", "++model={a: 1}"),
            "-S ++model={a: 1}: overlaps -S model.alpha=1 (one sets what the other replaces);*",
        ),
        (
            "cmd: echo\n",
            ("-S", "model=5"),
            "-S model=5: 'model' is a mapping in params.yaml; set its keys (-S model.KEY=…), "
            "or replace all of it with ++model=…",
        ),
        (
            "cmd: echo\n",
            ("-S", "seed="),
            "-S 'seed=': no value (an empty string is written seed='')",
        ),
        ("cmd: echo\n", ("-n", ""), "-n/--name '': an empty name (give one, or leave -n out)"),
        ("cmd: echo\n", ("run", "-n", ""), "-n/--name '': an empty name*"),
        (
            "cmd: echo\nwdir: nope\n",
            (),
            "sweeps.yaml:2:7: stage 'main': wdir 'nope' is not a directory of the repository",
        ),
        ("cmd: echo\n", ("-S", "0=5"), "-S 0=5: unknown param key '0' in params.yaml*"),
        ("cmd: echo\n", ("show", "--sweep", "nosuch"), "show --sweep nosuch: no experiment of*"),
    ],
)
def test_bad_input_is_one_line_exit_4_nothing_queued(
    sweepproject: SweepProject, spec: str, args: tuple[str, ...], expected: str
) -> None:
    sweepproject.write("params.yaml", PARAMS)
    sweepproject.write("sweeps.yaml", spec)
    sweepproject.commit()
    res = sweepproject.run(*args)
    assert res.ret == 4, res.stdout + res.stderr
    assert len(res.errlines) == 1, res.stderr
    assert res.stdout == ""
    res.fnmatch_lines([f"sweeprun: error: {expected}"], stream="stderr")
    assert sweepproject.refs() == {}
    assert sweepproject.status() == ""


def test_name_template_collision_is_an_error_at_queue_time(sweepproject: SweepProject) -> None:
    sweepproject.write("params.yaml", PARAMS)
    sweepproject.write(
        "sweeps.yaml",
        """
        cmd: echo
        sweeps:
          g:
            matrix:
              model.alpha: [1, 2]
            name: "fixed"
    """,
    )
    sweepproject.commit()
    res = sweepproject.run()
    assert res.ret == 4
    res.fnmatch_lines(
        [
            "sweeprun: error: sweeps.yaml:6:11: experiment name 'fixed' is already "
            "used by 'g[model.alpha=1]'*"
        ],
        stream="stderr",
    )
    assert sweepproject.refs() == {}


def test_name_clash_with_existing_experiment(sweepproject: SweepProject) -> None:
    sweepproject.quickstart()
    assert sweepproject.run("-k", "alpha=0.5 and degree=1", "-n", "best").ret == 0
    res = sweepproject.run("-k", "alpha=1.5 and degree=1", "-n", "best")
    assert res.ret == 4
    res.fnmatch_lines(
        ["sweeprun: error: -n/--name: experiment name 'best' is already used*"], stream="stderr"
    )
    assert len(sweepproject.refs()) == 1


def test_not_a_repository_and_no_commit(sweepproject: SweepProject, tmp_path: object) -> None:
    res = sweepproject.run()  # repo exists but has no commit
    assert res.ret == 4
    res.fnmatch_lines(["sweeprun: error: *: the repository has no commit yet*"], stream="stderr")
    (sweepproject.path / ".git").rename(sweepproject.path / "not-git")
    res = sweepproject.run()
    assert res.ret == 4
    res.fnmatch_lines(["sweeprun: error: *: not inside a git work tree*"], stream="stderr")


def test_nothing_collected_is_exit_5(sweepproject: SweepProject) -> None:
    sweepproject.quickstart()
    res = sweepproject.run("-k", "nomatch")
    assert res.ret == 5
    res.fnmatch_lines(["collected 0 experiments"])
    assert sweepproject.refs() == {}


def test_an_unparseable_metrics_file_fails_the_experiment(sweepproject: SweepProject) -> None:
    """Written but unreadable metrics are not a success whose numbers are missing."""
    p = sweepproject
    p.write("params.yaml", PARAMS)
    p.write("w.py", "open('m.json', 'w').write('{\"acc\": 0.9,')\n")
    p.write("sweeps.yaml", "cmd: python3 w.py\nmetrics: [m.json]\n")
    p.commit()
    res = p.run("--run")
    assert res.ret == 1, res.stdout
    (rec,) = p.records()
    assert rec["state"] == "failed"
    assert rec["message"].startswith("metrics file 'm.json' is not JSON (")


def test_s_on_a_swept_key_says_the_grid_shrinks(sweepproject: SweepProject) -> None:
    p = sweepproject
    p.write("params.yaml", PARAMS)
    p.write(
        "sweeps.yaml",
        "cmd: echo\nsweeps:\n  g:\n    matrix: {model.alpha: [1, 2, 3], model.degree: [1, 2]}\n",
    )
    p.commit()
    res = p.run("sweeps.yaml::g", "-S", "model.alpha=5", "--collect-only")
    assert res.ret == 0
    assert res.stderr.strip() == (
        "sweeprun: warning: -S model.alpha sets a key that sweep 'g' in sweeps.yaml varies: "
        "its 6 points become 2 (-k selects points without merging them)"
    )


def test_a_long_templated_name_is_cut_to_a_valid_ref(sweepproject: SweepProject) -> None:
    """'a'*199 + '.b' used to be cut to end in '.': publishing failed, exit 3, the ref stayed
    running."""
    p = sweepproject
    value = "a" * 199 + ".b"
    p.write("params.yaml", "x: a\n")
    p.write(
        "sweeps.yaml",
        f'cmd: echo\nsweeps:\n  g:\n    values: [{{x: {value}}}]\n    name: "{{x}}"\n',
    )
    p.commit()
    res = p.run("--run")
    assert res.ret == 0, res.stdout + res.stderr
    (rec,) = p.records()
    assert rec["state"] == "success" and rec["name"] == "a" * 199


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("show", "--precision", "-2"), "*--precision: '-2' is not a whole number >= 1"),
        (("show", "--precision", "0"), "*--precision: '0' is not a whole number >= 1"),
        (("report", "--max-rows", "-3"), "*--max-rows: '-3' is not a whole number >= 0"),
    ],
)
def test_numeric_options_of_show_and_report(
    sweepproject: SweepProject, args: tuple[str, ...], expected: str
) -> None:
    sweepproject.write("params.yaml", PARAMS)
    sweepproject.write("sweeps.yaml", "cmd: echo\n")
    sweepproject.commit()
    res = sweepproject.run(*args)
    assert res.ret == 4, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and fnmatch.fnmatch(lines[0], expected), lines


def test_every_empty_answer_says_why(sweepproject: SweepProject) -> None:
    """Issue 22, item 8: each of these printed "no experiments (queue some …)"."""
    sp = sweepproject
    sp.quickstart()
    assert sp.run("sweeps.yaml", "-k", "degree=1", "--run", "-q").ret == 0
    res = sp.run("show", "-k", "zzz")
    assert (res.ret, res.stdout) == (0, "0 of 2 experiments match -k zzz\n")
    res = sp.run("show", "--sweep", "nosuch")
    assert res.ret == 4
    assert res.stderr == (
        "sweeprun: error: show --sweep nosuch: no experiment of that sweep here (sweeps: grid)\n"
    )
    assert sp.run("show", "--csv", "-k", "zzz").stdout == "Experiment,State\n"
    assert sp.run("show", "--md", "-k", "zzz").stdout == "| Experiment | State |\n|---|---|\n"
    assert sp.run("show", "--json", "-k", "zzz").stdout == "[]\n"
    sp.write("notes.txt", "a new commit\n")
    sp.commit("next")
    res = sp.run("show")
    assert res.stdout == (
        "no experiments at this baseline; 2 experiments at other baselines (show -A lists them)\n"
    )
    res = sp.run("show", "--sweep", "grid")
    assert res.ret == 4 and "(sweeps: none; other baselines: show -A)" in res.stderr


def test_set_param_warnings_count_right_and_follow_the_selection(
    sweepproject: SweepProject,
) -> None:
    sp = sweepproject
    sp.quickstart()
    res = sp.run("sweeps.yaml::grid", "-S", "model.alpha=1,2", "--collect-only")
    assert "collected 6 experiments (-S inside the selected sweeps of sweeps.yaml)" in res.stdout
    assert res.stderr == (
        "sweeprun: warning: -S model.alpha sets a key that sweep 'grid' in sweeps.yaml varies: "
        "its 6 points become 6 (-k selects points without merging them)\n"
    )
    sp.write(
        "sweeps.yaml",
        sp.read("sweeps.yaml") + "  other:\n    matrix:\n      seed: [1, 2]\n",
    )
    sp.commit("two sweeps")
    res = sp.run("-S", "model.alpha=1", "-k", "other", "--collect-only")
    assert res.ret == 0
    assert res.stderr == ""  # grid was deselected: nothing to say about it
