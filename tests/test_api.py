"""The notebook API: records, a DataFrame with show's columns, queue and run from Python."""

from __future__ import annotations

import math
import re

import pytest

from sweeprun import api
from sweeprun.exceptions import UsageError
from sweeprun.testing import SweepProject


def test_queue_run_and_dataframe(sweepproject: SweepProject) -> None:
    pd = pytest.importorskip("pandas")
    sweepproject.copy_example("quickstart")
    sweepproject.commit()
    queued = api.queue("sweeps.yaml::grid", ["model.degree=1,3"], repo=sweepproject.path)
    # -S model.degree=1,3 inside the sweep narrows its degrees: 2 x 2 alphas
    assert sorted(str(r["state"]) for r in queued) == ["queued"] * 4
    done = api.run("sweeps.yaml::grid", ["model.degree=1,3", "seed=1"], sweepproject.path, 2)
    assert len(done) == 4 and {str(r["state"]) for r in done} == {"success"}
    assert all(r["point"]["seed"] == 1 for r in done)
    frame = api.dataframe(sweepproject.path)
    assert len(frame) == 8  # the 4 queued and the 4 that ran
    shown = sweepproject.run("show", "--csv").outlines[0].split(",")
    assert set(shown) <= set(frame.columns)  # show's names; every param, constant or not
    assert {"data.n", "model.alpha", "rmse", "r2"} <= set(frame.columns)
    assert set(frame["State"]) == {"queued", "success"}  # plain text
    ran = frame[frame["State"] == "success"]
    assert ran["rmse"].dtype.kind == "f" and not ran["rmse"].isna().any()
    assert isinstance(frame["Created"].iloc[0], pd.Timestamp)
    queued_rows = frame[frame["State"] == "queued"]
    assert queued_rows["rmse"].map(lambda v: v is None or math.isnan(v)).all()
    assert set(api.dataframe(sweepproject.path, sweep="grid")["Sweep"]) == {"grid"}


def test_bad_input_is_a_usage_error(sweepproject: SweepProject) -> None:
    sweepproject.copy_example("quickstart")
    sweepproject.commit()
    with pytest.raises(UsageError, match=re.escape("unknown param key 'model.bogus'")):
        api.run(repo=sweepproject.path, overrides=["model.bogus=1"])
    assert not sweepproject.refs()
