"""``sweeprun queue status | logs | kill | retry | remove | start | stop``: managing the queue
while it drains, and the background workers that drain it."""

from __future__ import annotations

import argparse
import signal
import time
from typing import TYPE_CHECKING

from sweeprun._core import worker
from sweeprun._core.argtypes import positive_seconds
from sweeprun._core.exitcode import ExitCode
from sweeprun._core.registry import examples_epilog
from sweeprun.commands.results import remove_records, resolve
from sweeprun.exceptions import UsageError
from sweeprun.hookspec import hookimpl
from sweeprun.model import FAILED_STATES, QUEUE
from sweeprun.report.safe import shown
from sweeprun.run.workspace import running_command
from sweeprun.store.git import RefConflict
from sweeprun.store.records import ExpStore

if TYPE_CHECKING:
    from sweeprun._core.config import Config
    from sweeprun._core.registry import CommandRegistry


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _status(config: Config, store: ExpStore) -> int:
    records = store.records()
    store.set_aside_damaged()
    orphans = {r.key for r in store.orphans()}
    counts: dict[str, int] = {}
    for r in records:
        counts[r.state] = counts.get(r.state, 0) + 1
    out = config.stdout
    out.write(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "the queue is empty")
    out.write("\n")
    now = time.time()
    claims = store.leases()
    for r in records:
        if r.state not in ("queued", "running"):
            continue
        runner = ""
        if r.state == "running":
            lease = next(iter(claims.get(r.key, [])), None)
            if lease is not None:
                runner = f"  runner {lease.host}:{lease.pid}"
                since = now - lease.started
            else:
                since = now - float(r.meta.get("queued_at", now))
            if r.key in orphans:
                runner += "  (orphaned: its runner is gone; --run-all takes it back)"
        else:
            since = now - float(r.meta.get("queued_at", now))
        out.write(shown(f"{r.state:8s} {r.name:14s} {_age(since):>4s}  {r.id}{runner}") + "\n")
    for w in worker.live_workers(config.repo.state_dir):
        out.write(
            f"worker pid {w.pid}  -j {w.jobs}  {w.backend}  up {_age(now - w.started)}  "
            f"running {w.running}  done {w.done}  failed {w.failed}  {w.state}\n"
        )
    return ExitCode.OK


def _logs(config: Config, store: ExpStore) -> int:

    (rec,) = resolve(store, [config.getoption("name")])
    path = store.repo.state_dir / "logs" / f"{rec.key}.log"
    if not path.is_file():
        tail = rec.meta.get("log_tail")
        if tail:
            config.stdout.write(tail + "\n")
            return ExitCode.OK
        raise UsageError(f"queue logs: {rec.name} has no log yet ({rec.state})")
    follow = bool(config.getoption("follow"))
    with open(path, errors="replace") as f:
        while True:
            chunk = f.read()
            if chunk:
                config.stdout.write(chunk)
                config.stdout.flush()
            if not follow:
                return ExitCode.OK
            states = {r.key: r.state for r in store.records(QUEUE, "refs/sweeprun/running")}
            if rec.key not in states:  # finished: print what is left and stop
                config.stdout.write(f.read())
                return ExitCode.OK
            time.sleep(0.2)


def _kill(config: Config, store: ExpStore) -> int:

    recs = resolve(store, config.getoption("names"))
    sig = signal.SIGKILL if config.getoption("force") else signal.SIGINT
    grace = config.getoption("grace")
    if not (grace >= 0 and grace < float("inf")):  # also refuses nan
        raise UsageError(f"queue kill --grace {grace}: give a number of seconds >= 0")
    for rec in recs:
        if rec.state != "running":
            raise UsageError(f"queue kill: {rec.name} is {rec.state}, not running")
    sent = []
    for rec in recs:
        proc = running_command(store.repo.common_dir, rec.key)
        if proc is None:
            raise UsageError(
                f"queue kill: {rec.name} has no running command right now "
                "(between stages?); try again"
            )
        if proc.signal_tree(sig):
            sent.append((rec, proc))
            config.stdout.write(f"sent {sig.name} to {rec.name} (process group {proc.pid})\n")
    # A program may ignore SIGINT (or take too long over it): it is killed after the grace
    # period, as on Ctrl+C.
    deadline = time.monotonic() + grace
    while sig != signal.SIGKILL and time.monotonic() < deadline:
        if not any(proc.tree_alive() for _, proc in sent):
            break
        time.sleep(0.05)
    for rec, proc in sent:
        if sig != signal.SIGKILL and proc.signal_tree(signal.SIGKILL):
            config.stdout.write(f"{rec.name} still ran after {grace:g} s: sent SIGKILL\n")
    return ExitCode.OK


def _retry(config: Config, store: ExpStore) -> int:
    """Queue failed (or named) experiments again, as they were queued."""

    records = store.records()
    if config.getoption("failed"):
        # A failed result whose point is already queued or running again (--lf) is not
        # queued a second time.
        again = {(r.baseline, r.name) for r in records if r.state in ("queued", "running")}
        chosen = [
            r for r in records if r.state in FAILED_STATES and (r.baseline, r.name) not in again
        ]
    else:
        names = config.getoption("names")
        if not names:
            raise UsageError("queue retry: name experiments or use --failed")
        chosen = resolve(store, names, records)
    for rec in chosen:
        if rec.state in ("queued", "running"):
            raise UsageError(f"queue retry: {rec.name} is {rec.state} already")
        if not rec.meta.get("queue_commit"):
            raise UsageError(f"queue retry: {rec.name} has no queued commit to run again")
    try:
        # A result gives way to the rerun's, and is kept (show --all-records).
        store.requeue(chosen)
    except RefConflict as exc:
        raise UsageError(
            f"queue retry: the queue changed meanwhile, nothing queued: {exc}"
        ) from None
    config.stdout.write(
        f"queued {len(chosen)} experiment(s) again; run them with 'sweeprun --run-all'\n"
    )
    return ExitCode.OK


def _remove_queued(config: Config, store: ExpStore) -> int:
    """``queue remove NAME…`` (DVC's spelling): ``remove --queue NAME…``; ``--all``: the
    whole queue."""
    names = config.getoption("names")
    if not names and not config.getoption("all"):
        raise UsageError("queue remove: name queued experiments, or use --all for every one")
    if names and config.getoption("all"):
        raise UsageError("queue remove: NAMEs or --all, not both")
    records = store.records(QUEUE)
    chosen = resolve(store, names, store.records()) if names else records
    for rec in chosen:
        if rec.state != "queued":
            raise UsageError(
                f"queue remove: {rec.name} is {rec.state}, not queued (nothing removed)"
            )
    return remove_records(config, store, chosen)


def _run(config: Config) -> int:
    store = ExpStore(config.repo)
    try:
        if config.getoption("action") == "start":
            return worker.start(config)
        if config.getoption("action") == "stop":
            return worker.stop(config, config.getoption("kill"), config.getoption("wait"))
        action = {
            "status": _status,
            "logs": _logs,
            "kill": _kill,
            "retry": _retry,
            "remove": _remove_queued,
        }
        return action[config.getoption("action")](config, store)
    finally:
        store.close()


def _args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help: str, *examples: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help,
            description=help,
            epilog=examples_epilog(examples),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    action(
        "status",
        "counts, and one line per queued or running entry",
        "sweeprun queue status",
        "sweeprun queue status && sweeprun --run-all   # then drain it",
    )
    logs = action(
        "logs",
        "an experiment's log",
        "sweeprun queue logs best",
        "sweeprun queue logs exp-1a2b3c4 -f          # follow it while it runs",
    )
    logs.add_argument("name")
    logs.add_argument("-f", "--follow", action="store_true", help="follow while it runs")
    kill = action(
        "kill",
        "SIGINT a running experiment, SIGKILL after --grace (--force: SIGKILL now)",
        "sweeprun queue kill exp-1a2b3c4",
        "sweeprun queue kill exp-1a2b3c4 --grace 30  # 30 s to save its work",
        "sweeprun queue kill exp-1a2b3c4 --force     # SIGKILL at once",
    )
    kill.add_argument("names", nargs="+")
    kill.add_argument(
        "--force", action="store_true", help="SIGKILL its whole process tree now (no grace)"
    )
    kill.add_argument(
        "--grace",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds a job gets to stop before it is killed (default 10)",
    )
    remove = action(
        "remove",
        "delete queued experiments (DVC's queue remove)",
        "sweeprun queue remove exp-1a2b3c4 exp-5d6e7f8",
        "sweeprun queue remove --all                 # empty the queue",
    )
    remove.add_argument("names", nargs="*", metavar="NAME")
    remove.add_argument("--all", action="store_true", help="every queued experiment")
    retry = action(
        "retry",
        "queue failed experiments again (their results are replaced, and kept)",
        "sweeprun queue retry --failed && sweeprun --run-all",
        "sweeprun queue retry exp-1a2b3c4",
    )
    retry.add_argument("names", nargs="*")
    start = action(
        "start",
        "a background worker: drains the queue, runs what is queued later (DVC's queue start)",
        "sweeprun queue start -j 4",
        "sweeprun queue start -j 2 --idle-timeout 600  # ends after 10 idle minutes",
    )
    worker.add_start_options(start)
    stop = action(
        "stop",
        "stop the background workers: running experiments finish, nothing new starts",
        "sweeprun queue stop",
        "sweeprun queue stop --kill   # interrupt them too: back in the queue, as Ctrl+C",
    )
    stop.add_argument(
        "--kill", action="store_true", help="interrupt running experiments (they are requeued)"
    )
    stop.add_argument(
        "--wait",
        type=positive_seconds,
        default=3600.0,
        metavar="S",
        help="wait this long for them to end (default 3600)",
    )
    retry.add_argument("--failed", action="store_true", help="every failed experiment")


@hookimpl
def sweeprun_add_commands(commands: CommandRegistry) -> None:
    """Register ``sweeprun queue``."""
    commands.add(
        "queue",
        "queue status, logs, kill, retry, remove; start and stop a background worker",
        _args,
        _run,
        examples=(
            "sweeprun queue status",
            "sweeprun queue logs best -f            # follow its log",
            "sweeprun queue remove exp-1a2b3c4      # DVC's spelling of remove --queue",
        ),
    )
