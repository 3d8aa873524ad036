"""The results index (``.git/sweeprun/results.idx``) never shows what the refs do not say.

Every check compares ``show --json`` with the refs read directly (``for-each-ref``), after
changes made behind sweeprun's back with git itself, straight after the previous read (the
same clock tick, where stamps cannot tell), on a damaged index, and where none can be
written.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from sweeprun.model import EXPS, Record, is_record, parse_message, public_record
from sweeprun.store.git import discover, for_each_ref
from sweeprun.store.resultsindex import MAGIC, NAME
from sweeprun.testing import SweepProject

TRAIN = """
import json, yaml
json.dump({"m": yaml.safe_load(open("params.yaml"))["x"] * 2}, open("m.json", "w"))
"""
SPEC = """
params: params.yaml
cmd: python3 train.py
metrics: [m.json]
sweeps:
  g:
    values: [{x: 1}, {x: 2}, {x: 3}, {x: 4}, {x: 5}]
"""


@pytest.fixture
def project(sweepproject: SweepProject) -> SweepProject:
    sweepproject.write("params.yaml", "x: 0\n")
    sweepproject.write("sweeps.yaml", SPEC)
    sweepproject.write("train.py", TRAIN)
    sweepproject.commit()
    res = sweepproject.run("--run", "-j", "2")
    assert res.ret == 0, res.stdout + res.stderr
    return sweepproject


def truth(p: SweepProject) -> list[dict[str, Any]]:
    """The finished experiments as the refs say, without the index."""
    out = []
    for ref, sha, message in for_each_ref(p.path, [EXPS.rstrip("/")]):
        meta = parse_message(message)
        if meta is not None and is_record(meta):
            out.append(public_record(Record(ref=ref, commit=sha, raw=meta)))
    return sorted(out, key=lambda r: r["ref"])


def shown(p: SweepProject) -> list[dict[str, Any]]:
    res = p.run("show", "--json", "-A")
    assert res.ret == 0, res.stderr
    return sorted(json.loads(res.stdout), key=lambda r: r["ref"])


def columns_agree(p: SweepProject) -> None:
    """The index's columns (kept over refreshes) say what flattening each record says."""
    from sweeprun.commands import listing
    from sweeprun.report import table

    found, done = listing.rows(discover(p.path), all_baselines=True)
    order = [(-r.queued_at, r.id) for r in done.rows]
    assert order == sorted(order)  # newest first, however rows were appended or removed
    full, columnar = listing.parse(found, done), listing.frame(found, done)
    assert [r["name"] for r in columnar] == [r["name"] for r in full]
    for section in ("params", "metrics"):
        names = table.flat_columns(full, section)
        assert table.flat_columns(columnar, section) == names
        for name in names:
            assert table.column(columnar, section, name) == table.column(full, section, name)


def index(p: SweepProject) -> Path:
    return discover(p.path).state_dir / NAME


def test_changes_behind_sweeprun_s_back_show_at_once(project: SweepProject) -> None:
    """Random ref changes with git itself, each read straight after: always the truth."""
    rng = random.Random(7)
    assert shown(project) == truth(project) and len(truth(project)) == 5
    assert index(project).read_bytes().startswith(MAGIC)
    for step in range(40):
        refs = [r["ref"] for r in truth(project)]
        commits = [r["commit"] for r in truth(project)]
        op = rng.choice(["move", "delete", "copy", "pack", "none"])
        if op == "move" and refs:  # a ref pointed at another experiment's commit
            project.git("update-ref", rng.choice(refs), rng.choice(commits))
        elif op == "delete" and len(refs) > 2:
            project.git("update-ref", "-d", rng.choice(refs))
        elif op == "copy" and refs:  # a new ref (another name, maybe another baseline dir)
            base = rng.choice(refs).rsplit("/", 2)[0]
            sub = rng.choice(["", "0" * 40 + "/"])
            project.git("update-ref", f"{base}/{sub}copy-{step}", rng.choice(commits))
        elif op == "pack":  # refs move into packed-refs: loose files and dirs disappear
            project.git("pack-refs", "--all")
        assert shown(project) == truth(project), (step, op)
        columns_agree(project)
    # the last read was trusted: reading again changes nothing
    assert shown(project) == truth(project)


def test_a_damaged_index_is_rebuilt(project: SweepProject) -> None:
    expected = truth(project)
    assert shown(project) == expected
    path = index(project)
    good = path.read_bytes()
    damages = [
        good[: len(good) // 2],  # truncated (a crash while writing is renamed in, never)
        good.replace(b'"m": 2', b'"m": 9'),  # a changed byte: the digest catches it
        b"garbage\n",
        MAGIC + b"{}\n",
        MAGIC + b'{"count": 1, "digest": "x", "stamp": {}}\n[]\n',
        b"",
    ]
    for damaged in damages:
        assert damaged != good
        path.write_bytes(damaged)
        assert shown(project) == expected
        # rebuilt at once, or (a record's line damaged: found only when it is read, then
        # read from its commit) removed, and rebuilt by the next read
        assert shown(project) == expected
        assert path.read_bytes().startswith(MAGIC)


def test_a_damaged_record_line_is_read_from_its_commit(project: SweepProject) -> None:
    """The records' JSON lines are checked only when asked for (tables never need them):
    a byte changed there is caught then, the records are read from their commits, and
    the index is removed so that the next read rebuilds it."""
    from sweeprun.commands import listing

    expected = truth(project)
    assert shown(project) == expected
    path = index(project)
    good = path.read_bytes()
    path.write_bytes(good.replace(b'"m": 4', b'"m": 7'))
    found, done = listing.rows(discover(project.path), all_baselines=True)
    table = listing.frame(found, done)  # fields and columns: their checksum matched
    assert sorted(r["name"] for r in table) == sorted(r["name"] for r in expected)
    assert path.exists()
    assert sorted(listing.parse(found, done), key=lambda r: r["ref"]) == expected
    assert not path.exists()
    assert shown(project) == expected and path.read_bytes().startswith(MAGIC)


def test_results_are_read_where_no_index_can_be_written(project: SweepProject) -> None:
    expected = truth(project)
    path = index(project)
    path.unlink(missing_ok=True)
    path.mkdir()  # neither readable nor replaceable as a file
    assert shown(project) == expected
    project.git("update-ref", "-d", expected[0]["ref"])
    assert shown(project) == expected[1:]
    assert path.is_dir() and not [p for p in path.parent.iterdir() if p.suffix == ".tmp"]


def test_new_results_of_a_run_are_read_and_kept(project: SweepProject) -> None:
    assert len(shown(project)) == 5
    before = index(project).stat().st_mtime_ns
    project.write("sweeps.yaml", SPEC.replace("{x: 5}]", "{x: 5}, {x: 6}]"))
    res = project.run("--run")
    assert res.ret == 0, res.stdout + res.stderr
    got = shown(project)
    # the workspace changed (sweeps.yaml): six new experiments beside the five
    assert got == truth(project) and len(got) == 11
    assert index(project).stat().st_mtime_ns != before  # refreshed and written back
    assert sorted(r["metrics"]["m.json"]["m"] for r in got) == [2, 2, 4, 4, 6, 6, 8, 8, 10, 10, 12]


def test_a_stamp_from_the_index_file_s_own_tick_is_never_trusted(project: SweepProject) -> None:
    """Timestamps are as coarse as the filesystem's clock: a directory changed in the tick
    the index was written could change again unseen. Such a stamp matches nothing."""
    from sweeprun.store import resultsindex

    common = discover(project.path).common_dir
    exps = common / EXPS.rstrip("/")
    mtime = exps.stat().st_mtime_ns
    older = resultsindex._stamp(common, fs_now=mtime + 1)
    assert older["refs/sweeprun/exps"] == resultsindex._stat(exps)
    same_tick = resultsindex._stamp(common, fs_now=mtime)
    assert same_tick["refs/sweeprun/exps"] == resultsindex.RACY
    assert resultsindex._restamp(common, same_tick) != same_tick  # so the next read refreshes


MIXED_TRAIN = """
import json, sys, yaml
p = yaml.safe_load(open("params.yaml"))
if p["train"]["lr"] < 0:
    sys.exit("negative lr")
json.dump({"acc": p["train"]["lr"] * 2, "seed": 5, "curve": {"last": [1, None]}},
          open("metrics.json", "w"))
"""
MIXED_SPEC = """
params: [params.yaml, data.json]
cmd: python3 train.py
metrics: [metrics.json]
sweeps:
  g:
    matrix: {train.lr: [0.1, 0.2, -1], train.layers.0: [8, 16]}
  later:
    values: [{train.lr: 0.3}, {data.json:noise: 0.5}]
"""


def test_the_index_s_columns_are_the_records_flattened(sweepproject: SweepProject) -> None:
    """Tables and charts read the index's columns; they must say what flattening each
    full record says: nested lists, nulls, a key in two files, a param and a metric of the
    same name, failed results without metrics, queued experiments (not in the index)."""
    from sweeprun.commands import listing
    from sweeprun.report import table

    p = sweepproject
    p.write("params.yaml", "train:\n  lr: 0.1\n  layers: [8, 4]\nseed: 0\nnote: null\n")
    p.write("data.json", '{"noise": 0.1, "seed": 1}\n')
    p.write("train.py", MIXED_TRAIN)
    p.write("sweeps.yaml", MIXED_SPEC)
    p.commit()
    res = p.run("sweeps.yaml::g", "--run", "-j", "2")
    assert res.ret == 1  # the lr=-1 experiments fail
    assert p.run("sweeps.yaml::later").ret == 0  # queued, not run
    found, done = listing.rows(discover(p.path), all_baselines=True)
    full = listing.parse(found, done)
    columnar = listing.frame(found, done)
    assert isinstance(columnar, table.RecordList) and not isinstance(full, table.RecordList)
    assert {r["state"] for r in full} == {"success", "failed", "queued"}
    for plain, cols in [
        (full, columnar),
        ([full[0], *full], table.prepend([full[0]], columnar)),
        ([full[i] for i in (3, 1, 0)], table.subset(columnar, [3, 1, 0])),
    ]:
        for section in ("params", "metrics"):
            names = table.flat_columns(plain, section)
            assert table.flat_columns(cols, section) == names
            assert table.files(cols, section) == table.files(plain, section)
            for name in names:
                assert table.column(cols, section, name) == table.column(plain, section, name)
                key = name.rpartition(":")[2]
                assert table.files(cols, section, key) == table.files(plain, section, key)
    assert "data.json:seed" in table.flat_columns(full, "params")
    assert "curve.last[1]" in table.flat_columns(full, "metrics")
    shown = p.run("show", "-A")
    assert shown.ret == 0
    header = shown.stdout.splitlines()[0].split()
    assert "train.layers[0]" in header and "curve.last[1]" in header, header
    queued = [line for line in shown.stdout.splitlines() if " queued " in line]
    assert len(queued) == 2 and all(line.rstrip().endswith("-") for line in queued)


def test_a_killed_writer_s_temporary_index_is_removed(project: SweepProject) -> None:
    import os
    import time

    from sweeprun.store.resultsindex import LEFTOVER_AGE

    state = index(project).parent
    old, young = state / f"{NAME}.dead.tmp", state / f"{NAME}.busy.tmp"
    for tmp in (old, young):
        tmp.write_bytes(b"half an index")
    past = time.time() - LEFTOVER_AGE - 60
    os.utime(old, (past, past))
    project.git("update-ref", "-d", truth(project)[0]["ref"])  # so that show refreshes
    assert shown(project) == truth(project)
    assert not old.exists() and young.exists()  # a younger one may be being written


def test_results_are_packed_as_they_accumulate(
    sweepproject: SweepProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past PACK_AFTER loose result refs a run packs them (git pack-refs): listing
    100,000 loose refs takes seconds, packed ones a tenth of one; nothing is lost."""
    from sweeprun.store import transitions

    monkeypatch.setattr(transitions, "PACK_AFTER", 2)
    p = sweepproject
    p.write("params.yaml", "lr: 0\n")
    p.write(
        "sweeps.yaml",
        "params: params.yaml\ncmd: echo ${lr}\nsweeps:\n  g:\n"
        "    values: [{lr: 1}, {lr: 2}, {lr: 3}, {lr: 4}]\n",
    )
    p.commit()
    assert p.run("--run", "-q").ret == 0
    exps = p.path / ".git/refs/sweeprun/exps"
    assert not [f for d in exps.iterdir() for f in d.iterdir()] if exps.exists() else True
    packed = (p.path / ".git/packed-refs").read_text()
    assert packed.count("refs/sweeprun/exps/") == 4
    assert len(p.records()) == 4
    assert p.run("sweeps.yaml::g", "--run", "-q", "-S", "lr=5").ret == 0  # one more, loose
    assert len(p.records()) == 5 and len(list(exps.rglob("*"))) >= 1


def test_queueing_does_not_make_show_read_the_results_again(project: SweepProject) -> None:
    """The index is stamped on what result refs change, not on refs/sweeprun/ (whose time
    moves whenever queue/ appears or empties): queueing and then show reuse the index;
    a new result refreshes it."""
    assert shown(project) == truth(project)
    before = index(project).stat()
    assert project.run("-S", "x=9", "-q").ret == 0  # queued: refs/sweeprun/queue/ made
    assert [r for r in shown(project) if r["state"] != "queued"] == truth(project)
    after = index(project).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert project.run("--run-all", "-q").ret == 0
    assert shown(project) == truth(project) and len(truth(project)) == 6
    grown = index(project).stat()
    assert grown.st_ino == before.st_ino and grown.st_size > before.st_size  # appended to


def test_a_new_result_is_appended_to_the_index_not_rewritten(project: SweepProject) -> None:
    """A refresh after a run appends a segment with what changed (at 100,000 results,
    rewriting the 90 MB index took seconds): the old bytes stay as they were."""
    assert shown(project) == truth(project)
    path = index(project)
    before, old = path.stat(), path.read_bytes()
    assert project.run("-S", "x=9", "--run", "-q").ret == 0
    assert shown(project) == truth(project) and len(truth(project)) == 6
    after = path.stat()
    assert after.st_ino == before.st_ino
    new = path.read_bytes()
    assert new.startswith(old) and 0 < len(new) - len(old) < 4096
    # a changed ref and a deleted one: appended too, and read back as the refs say
    refs = truth(project)
    project.git("update-ref", refs[0]["ref"], refs[1]["commit"])
    project.git("update-ref", "-d", refs[2]["ref"])
    assert shown(project) == truth(project) and len(truth(project)) == 5
    assert path.stat().st_ino == before.st_ino
    columns_agree(project)


def test_a_torn_append_is_ignored_and_the_index_rewritten(project: SweepProject) -> None:
    """A writer killed mid-append leaves a segment its digest refuses: what was whole is
    read, the refs decide the rest, and the next refresh rewrites the file."""
    assert shown(project) == truth(project)
    path = index(project)
    whole = len(path.read_bytes())
    assert project.run("-S", "x=9", "--run", "-q").ret == 0
    assert shown(project) == truth(project)
    grown = path.read_bytes()
    for cut in (whole + 1, (whole + len(grown)) // 2, len(grown) - 1):
        path.write_bytes(grown[:cut])
        assert shown(project) == truth(project) and len(truth(project)) == 6
        assert not path.read_bytes().startswith(grown[:whole])  # rewritten, not appended to
        path.write_bytes(grown)


def test_appended_segments_are_folded_in_past_a_share_of_the_rows(
    project: SweepProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each reader applies every appended segment; past COMPACT_MIN_ROWS appended rows
    (or a share of the rows) the refresh writes one whole index again."""
    from sweeprun.store import resultsindex

    monkeypatch.setattr(resultsindex, "COMPACT_MIN_ROWS", 3)
    assert shown(project) == truth(project)
    path = index(project)
    inodes = {path.stat().st_ino}
    refs = truth(project)
    for i in range(6):
        project.git("update-ref", f"{refs[0]['ref']}-copy{i}", refs[i % 5]["commit"])
        assert shown(project) == truth(project)
        inodes.add(path.stat().st_ino)
        columns_agree(project)
    assert 2 <= len(inodes) <= 3  # appended to, then rewritten, then appended to again
    monkeypatch.setattr(resultsindex, "COMPACT_SEGMENTS", 2)  # and past so many segments
    before = path.stat().st_ino
    project.git("update-ref", "-d", refs[1]["ref"])
    assert shown(project) == truth(project)
    assert path.stat().st_ino != before


def test_readers_and_writers_at_once_never_see_a_torn_index(project: SweepProject) -> None:
    """Processes refreshing the index while refs change (each appending, or writing it
    whole, or finding the file changed under them): every read says a state the refs had,
    and the last one says what they say."""
    import subprocess
    import sys

    refs = truth(project)
    every = {r["ref"] for r in refs}
    reader = (
        "import json, sys\n"
        "from sweeprun.commands import listing\n"
        "from sweeprun.store.git import discover\n"
        "for _ in range(25):\n"
        "    rows = listing.load_records(discover('.'), all_baselines=True)\n"
        "    print(json.dumps(sorted(r['ref'] for r in rows)))\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", reader], cwd=project.path, stdout=subprocess.PIPE)
        for _ in range(3)
    ]
    i = 0
    while any(proc.poll() is None for proc in procs) and i < 300:  # change refs meanwhile
        ref = f"{refs[0]['ref']}-busy{i}"
        every.add(ref)
        project.git("update-ref", ref, refs[i % 5]["commit"])
        if i % 4 == 3:
            project.git("pack-refs", "--all")
        i += 1
    states = set()
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        for line in out.decode().splitlines():
            seen = json.loads(line)
            assert set(seen) <= every and len(seen) >= 5
            states.add(len(seen))
    assert len(states) > 1  # the reads did see the refs change
    assert shown(project) == truth(project) and len(truth(project)) == 5 + i
    columns_agree(project)
