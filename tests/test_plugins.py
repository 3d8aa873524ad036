"""Plugins: sweepconf.py, -p, entry points, misspelled hooks, crashes — end to end."""

from __future__ import annotations

import os
from pathlib import Path

from sweeprun.testing import SweepProject

SWEEPCONF = """
import sweeprun

@sweeprun.hookimpl
def sweeprun_report_header(config):
    return ["project: demo-header"]

@sweeprun.hookimpl
def sweeprun_job_env(config, record):
    return {"FROM_SWEEPCONF": record.name.upper()}

@sweeprun.hookimpl
def sweeprun_make_name(experiment, template, config):
    return "custom-" + str(experiment.point["model.degree"]) + "-" + str(
        experiment.point["model.alpha"]).replace(".", "p")
"""


def test_root_sweepconf_hooks_win_over_builtins(sweepproject: SweepProject) -> None:
    sweepproject.quickstart(cmd="sh -c 'echo $FROM_SWEEPCONF > who.txt'")
    sweepproject.write(
        "sweeps.yaml",
        sweepproject.read("sweeps.yaml").replace("metrics: [metrics.json]", "metrics: [who.txt]"),
    )
    sweepproject.write("sweepconf.py", SWEEPCONF)
    sweepproject.commit("conf")
    res = sweepproject.run("--run", "-j", "2", "-k", "degree=1")
    assert res.ret == 0, res.stdout + res.stderr
    res.fnmatch_lines(["plugins: sweepconf.py", "project: demo-header", "collected 2*"])
    names = sorted(r["name"] for r in sweepproject.records())
    assert names == ["custom-1-0p5", "custom-1-1p5"]
    rec = next(r for r in sweepproject.records() if r["name"] == "custom-1-0p5")
    assert sweepproject.git("show", f"{rec['commit']}:who.txt") == "CUSTOM-1-0P5\n"


def test_sweepconf_below_root_applies_to_specs_there(sweepproject: SweepProject) -> None:
    sweepproject.quickstart()
    sweepproject.write("sub/params.yaml", "model:\n  alpha: 1\n  degree: 2\n")
    sweepproject.write("sub/sweeps.yaml", sweepproject.read("sweeps.yaml"))
    sweepproject.write("sub/train.py", sweepproject.read("train.py"))
    sweepproject.write("sub/sweepconf.py", SWEEPCONF)
    sweepproject.commit("sub")
    res = sweepproject.run("sub/sweeps.yaml", "--collect-only")
    assert res.ret == 0, res.stderr
    res.fnmatch_lines(["*name=custom-1-0p5*"])
    res = sweepproject.run("sweeps.yaml", "--collect-only")
    assert "custom-" not in res.stdout


def test_misspelled_hook_fails(sweepproject: SweepProject) -> None:
    sweepproject.quickstart()
    sweepproject.write(
        "sweepconf.py",
        """
        import sweeprun

        @sweeprun.hookimpl
        def sweeprun_sesionstart(session):
            pass
    """,
    )
    res = sweepproject.run()
    assert res.ret == 4
    assert len(res.errlines) == 1
    res.fnmatch_lines(
        [
            "sweeprun: error: *sweepconf.py: unknown hook "
            "'sweeprun_sesionstart' (did you mean 'sweeprun_sessionstart'?)"
        ],
        stream="stderr",
    )


def test_plugin_crash_names_the_plugin(sweepproject: SweepProject) -> None:
    sweepproject.quickstart()
    sweepproject.write(
        "sweepconf.py",
        """
        import sweeprun

        @sweeprun.hookimpl
        def sweeprun_collection_finish(session):
            raise RuntimeError("plugin bug")
    """,
    )
    res = sweepproject.run()
    assert res.ret == 3
    res.fnmatch_lines(
        [
            "RuntimeError: plugin bug",
            "sweeprun: internal error in plugin '*sweepconf.py' "
            "(*sweepconf.py:5, in sweeprun_collection_finish)",
        ],
        stream="stderr",
    )
    assert sweepproject.refs() == {}


def test_disable_builtin_terminal_reporter(sweepproject: SweepProject) -> None:
    sweepproject.quickstart()
    res = sweepproject.run("-p", "no:terminal", "--run", "-j", "2")
    assert res.ret == 0
    assert res.stdout == ""
    assert len(sweepproject.records()) == 6


def test_p_loads_module_and_entry_points_load(sweepproject: SweepProject, tmp_path: Path) -> None:
    sweepproject.quickstart()
    site = tmp_path / "site"
    (site / "myplug-1.0.dist-info").mkdir(parents=True)
    (site / "myplug-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: myplug\nVersion: 1.0\n"
    )
    (site / "myplug-1.0.dist-info" / "entry_points.txt").write_text("[sweeprun]\nmyplug = myplug\n")
    (site / "myplug.py").write_text(
        "import sweeprun\n\n@sweeprun.hookimpl\ndef sweeprun_report_header(config):\n"
        "    return 'from entry point'\n"
    )
    (site / "extra.py").write_text(
        "import sweeprun\n\n@sweeprun.hookimpl\ndef sweeprun_report_header(config):\n"
        "    return 'from -p'\n"
    )
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    res = sweepproject.run_subprocess("--collect-only", "-p", "extra", env=env)
    assert res.ret == 0, res.stderr
    res.fnmatch_lines(["plugins: *extra*", "from *", "from *"])
    assert "from entry point" in res.stdout and "from -p" in res.stdout
    assert "myplug" in res.stdout
    res = sweepproject.run_subprocess("--collect-only", "-p", "no:myplug", env=env)
    assert "from entry point" not in res.stdout
    res = sweepproject.run_subprocess("-p", "nosuchplugin", env=env)
    assert res.ret == 4
    assert "-p nosuchplugin: cannot import plugin module" in res.stderr


def test_python_api_main_and_experiments(sweepproject: SweepProject) -> None:
    import sweeprun
    from sweeprun import api

    sweepproject.quickstart()
    res = sweepproject.run("--run", "-j", "2")  # goes through sweeprun._core.cli.main
    assert res.ret == 0
    recs = api.experiments(sweepproject.path)
    assert len(recs) == 6 and all(r["state"] == "success" for r in recs)
    assert callable(sweeprun.main)
