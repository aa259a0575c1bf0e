"""The push killed with SIGKILL, then run again by a fresh process: every triage change reaches
TestIO exactly once.

Each trial copies a synced mirror, and a child (``tests/helpers/push_child.py``) stores a few
triage changes and pushes them to a sandbox served by this process. The child is killed through
its own handle at an exact point of one change (the target):

- ``claim``: its ``sending`` is committed, the PUT not sent (the child blocks there);
- ``record_applied``: TestIO applied it and answered, the answer not recorded (the child
  blocks there);
- ``answer_held``: the sandbox applied it and holds the answer (an ``apply_then_hang`` fault);
  the child is killed as soon as the sandbox counts the write;

or, in other trials, after a seeded random delay from the moment its changes are stored, during
a push of ten. Once the sandbox has finished every write request of the trial (nothing of the
dead child is still in flight), ``testio-mirror sync --direction up`` runs in a fresh process,
and for every change of the trial:

- the sandbox applied its write exactly once (``world.triage`` counted per bug, in this process),
  and received no more PUTs for its bug (the request log) than the change has attempts (claims):
  a PUT cut off by the kill before the sandbox read its body arrives but changes nothing, and is
  sent again after the reconcile found nothing applied;
- it ends ``applied``, by the path its state at the kill implies: left ``sending`` with the write
  applied upstream -> ``reconciled`` as applied, one attempt; left ``sending`` with nothing
  applied -> reconciled as not applied, then sent: two attempts; ``pending`` -> sent once,
  answered; ``applied`` -> nothing more;
- the mirrored bug's triage state is the sandbox's, and shows the change.

A push that sent a change a second time would show as two applied writes of its bug (and, if it
did not claim it again, as more PUTs than attempts).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import queue
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from testio_mirror.app import open_app
from testio_mirror.sandbox import DatasetSpec, FaultRule, SandboxKnobs, SandboxServer
from testio_mirror.sandbox.world import SandboxWorld
from testio_mirror.sync.models import SyncDirection, SyncOptions
from testio_mirror.triage import WIRE_SEGMENT, TriageState
from tests.conftest import SandboxFactory
from tests.helpers.command_line import env_without_testio
from tests.helpers.polling import wait_for
from tests.helpers.reliability_ledger import Ledger, current_scale
from tests.helpers.settings import make_settings
from tests.helpers.sync_runs import run_sync

SCALE = current_scale()
LONG = SCALE.form == "long"
SPEC = DatasetSpec(seed=29, products=2, section_products=0, tests_per_product=40, bugs_per_test=5)
EXACT_TRIALS = 24 if LONG else 6  # per point
RANDOM_TRIALS = 32 if LONG else 8
CHANGES_PER_TRIAL = 4
RANDOM_CHANGES = 10
LATENCY_MS = 5.0  # per request: a push of ten changes lasts long enough to be killed inside
RANDOM_WINDOW = 0.4  # seconds after the changes are stored: a push of ten ends within about this
WORKERS = 2  # trials at once (each a few child processes; this machine has two cores)
CHILD_TIMEOUT = 60.0
BASE_SEED = 20261204
CHILD_SCRIPT = Path(__file__).parents[1] / "helpers" / "push_child.py"
REASON = "not_reproducible"
POINTS = ("claim", "record_applied", "answer_held")


# -- the sandbox's side ---------------------------------------------------------------------------


class AppliedWrites:
    """Counts the triage writes the sandbox applied, per bug: ``world.triage`` wrapped (the API's
    PUT handler calls it; it runs on the sandbox's thread)."""

    def __init__(self, world: SandboxWorld) -> None:
        self._lock = threading.Lock()
        self._count: Counter[int] = Counter()
        apply = world.triage

        def counted(bug_id: int, action: Any, reason: Any = None, comment: Any = None) -> Any:
            bug = apply(bug_id, action, reason=reason, comment=comment)
            with self._lock:
                self._count[bug_id] += 1
            return bug

        world.triage = counted  # type: ignore[method-assign]

    def of(self, bug_id: int) -> int:
        with self._lock:
            return self._count[bug_id]


def fresh_changes(world: SandboxWorld, rng: random.Random) -> list[tuple[int, str]]:
    """One change for each bug of the account, ``(bug, "BUG:ACTION[:REASON]")``, asking what the
    bug does not show yet, in a seeded order: every trial takes bugs no other trial touched."""
    chosen: list[tuple[int, str]] = []
    for bug in world.snapshot()["bugs"].values():
        state = TriageState.of_bug(bug)
        if state.status == "forwarded":
            action = rng.choice(["accept", f"reject:{REASON}"])
        elif not state.known:
            action = "mark_known"
        elif not state.fixed:
            action = "mark_fixed"
        elif not state.exported:
            action = "mark_exported"
        else:
            continue
        chosen.append((bug["id"], f"{bug['id']}:{action}"))
    rng.shuffle(chosen)
    return chosen


# -- the children ---------------------------------------------------------------------------------


class Child:
    """A child process whose stdout lines are read by a thread of this process."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log, env=env
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.log = log
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.put(raw.decode(errors="replace").rstrip("\n"))
        self.lines.put(None)

    def wait_line(self, prefix: str) -> str:
        """The first line starting with ``prefix``; fails if the child ends or takes too long."""
        deadline = time.monotonic() + CHILD_TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                raise AssertionError(f"no {prefix!r} line: {self.seen}\n{self.stderr()}")
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def kill(self) -> bool:
        """SIGKILL through the handle; True when it was still running (a real kill)."""
        alive = self.process.poll() is None
        if alive:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(CHILD_TIMEOUT)
        return alive and self.process.returncode == -signal.SIGKILL

    def stderr(self) -> str:
        self._log.flush()
        return self.log.read_text(errors="replace")[-3000:]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.kill()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


# -- what the mirror holds ------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredChange:
    id: int
    bug_id: int
    action: str
    state: str
    attempts: int
    events: tuple[tuple[str, str | None], ...]  # (kind, outcome), oldest first


def read_changes(database: Path) -> dict[int, StoredChange]:
    """The outbox as the mirror holds it, read through a read-only connection."""
    with contextlib.closing(sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)) as conn:
        events: dict[int, list[tuple[str, str | None]]] = {}
        for change_id, kind, outcome in conn.execute(
            "SELECT change_id, kind, outcome FROM change_events ORDER BY id"
        ):
            events.setdefault(change_id, []).append((kind, outcome))
        return {
            row[0]: StoredChange(*row, events=tuple(events.get(row[0], [])))
            for row in conn.execute("SELECT id, bug_id, action, state, attempts FROM changes")
        }


def mirrored_triage(database: Path, bug_id: int) -> TriageState | None:
    with contextlib.closing(sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)) as conn:
        row = conn.execute("SELECT raw FROM bugs WHERE id = ?", (bug_id,)).fetchone()
    return None if row is None else TriageState.of_bug(json.loads(row[0]))


# -- one trial ------------------------------------------------------------------------------------


@dataclass
class Trial:
    """One trial: its changes (``BUG:ACTION``), how its child is killed, what it left."""

    number: int
    home: Path
    changes: list[tuple[int, str]]
    point: str  # one of POINTS, or "random"
    target: int = 0  # index of the change the exact points stop at
    delay: float = 0.0  # random: seconds after the changes were stored
    killed: bool = False
    at_kill: dict[int, StoredChange] = field(default_factory=dict)
    applied_at_kill: dict[int, int] = field(default_factory=dict)
    rules: list[FaultRule] = field(default_factory=list)

    def __str__(self) -> str:
        how = f"{self.point} of change #{self.target}"
        if self.point == "random":
            how = f"random, {self.delay:.3f}s after storing"
        return f"trial {self.number} ({how}; changes {[c for _, c in self.changes]})"

    @property
    def bug_ids(self) -> list[int]:
        return [bug for bug, _ in self.changes]

    @property
    def database(self) -> Path:
        return self.home / "mirror.db"


class PushLab:
    """A sandbox, a synced template mirror, and the trials run against them."""

    def __init__(self, sandbox: SandboxServer, root: Path, seed: int) -> None:
        self.sandbox = sandbox
        self.root = root
        self.seed = seed
        self.applied = AppliedWrites(sandbox.world)
        self.template = root / "template"
        self._pool = iter(fresh_changes(sandbox.world, random.Random(seed)))
        self._pool_lock = threading.Lock()
        self._numbers = itertools.count()
        self.children: list[Child] = []
        self._children_lock = threading.Lock()

    async def sync_template(self) -> None:
        settings = make_settings(self.sandbox, self.template)
        async with open_app(settings) as app:
            await run_sync(app, options=SyncOptions(direction=SyncDirection.DOWN))

    def trial(self, point: str, count: int, rng: random.Random) -> Trial:
        number = next(self._numbers)
        home = self.root / f"trial{number}"
        shutil.copytree(self.template, home, ignore=shutil.ignore_patterns("*.lock"))
        with self._pool_lock:
            changes = list(itertools.islice(self._pool, count))
        assert len(changes) == count, "the account has too few bugs left for the trials"
        return Trial(number, home, changes, point, target=rng.randrange(count))

    def env(self, trial: Trial) -> dict[str, str]:
        return env_without_testio(
            TESTIO_CUSTOMER_API_BASE_URL=self.sandbox.base_url,
            TESTIO_CUSTOMER_API_TOKEN=self.sandbox.token,
            TESTIO_MIRROR_HOME=str(trial.home),
            TESTIO_REFRESH_INTERVAL_SECONDS="0",
            TESTIO_RETRY_MAX_ATTEMPTS="2",
            TESTIO_RETRY_MAX_DELAY_SECONDS="0.05",
            TESTIO_LOG_LEVEL="WARNING",
        )

    def start(self, trial: Trial, args: list[str], name: str) -> Child:
        child = Child(args, self.env(trial), trial.home.parent / f"trial{trial.number}.{name}.log")
        with self._children_lock:
            self.children.append(child)
        return child

    def count_arrivals(self, trial: Trial) -> None:
        """One rule per bug of the trial counts the PUTs that arrive (answered or not); the
        ``answer_held`` target's rule holds its answer instead, and counts it too."""
        for index, bug in enumerate(trial.bug_ids):
            path = f"bugs/{bug}/*"
            if trial.point == "answer_held" and index == trial.target:  # its first PUT only
                held = FaultRule("apply_then_hang", path, "PUT", hang_seconds=60)
                trial.rules.append(self.sandbox.faults.add(held))
            counted = FaultRule("hang", path, "PUT", times=None, hang_seconds=0)
            trial.rules.append(self.sandbox.faults.add(counted))

    def in_flight(self, trial: Trial) -> int:
        """The trial's PUTs that arrived at the sandbox and are not finished yet."""
        arrived = sum(rule.fired for rule in trial.rules)
        done = sum(len(self.sandbox.requests.writes(bug)) for bug in trial.bug_ids)
        return arrived - done

    def run(self, trial: Trial, rng: random.Random) -> None:
        """Kill a pushing child as the trial says, then push again from a fresh process."""
        self.count_arrivals(trial)
        args = [sys.executable, str(CHILD_SCRIPT)]
        args += [arg for _, change in trial.changes for arg in ("--change", change)]
        if trial.point in ("claim", "record_applied"):
            args += ["--stop", trial.point, "--target", str(trial.target)]
        child = self.start(trial, args, "killed")
        child.wait_line("ENQUEUED ")
        if trial.point in ("claim", "record_applied"):
            child.wait_line(f"AT {trial.point} ")
        elif trial.point == "answer_held":
            target_bug = trial.bug_ids[trial.target]
            assert wait_for(lambda: self.applied.of(target_bug) == 1, CHILD_TIMEOUT), child.seen
        else:
            trial.delay = round(rng.uniform(0, RANDOM_WINDOW), 3)
            time.sleep(trial.delay)
        trial.killed = child.kill()
        # What the dead child left: a PUT it sent may still be on its way through the sandbox.
        assert wait_for(lambda: self.in_flight(trial) == 0, CHILD_TIMEOUT), str(trial)
        trial.at_kill = read_changes(trial.database)
        trial.applied_at_kill = {bug: self.applied.of(bug) for bug in trial.bug_ids}
        again = self.start(
            trial, [sys.executable, "-m", "testio_mirror", "sync", "--direction", "up"], "again"
        )
        code = again.process.wait(CHILD_TIMEOUT)
        assert code == 0, f"{trial}: the push again exited {code}\n{again.stderr()}"
        assert wait_for(lambda: self.in_flight(trial) == 0, CHILD_TIMEOUT), str(trial)

    def stop_all(self) -> None:
        for child in self.children:
            child.close()


def expected_path(before: StoredChange | None, applied_before: int) -> list[str]:
    """The events a change must show after the push again, given where it stood at the kill
    and whether TestIO had applied its write by then (kinds and outcomes, after ``created``)."""
    sent = ["sending:", "answer:applied", "applied:"]
    if before is None or before.state == "pending":
        return sent
    if before.state == "applied":
        return [f"{kind}:{outcome or ''}" for kind, outcome in before.events[1:]]
    assert before.state == "sending", before
    if applied_before:
        return ["sending:", "reconciled:applied", "applied:"]
    return ["sending:", "reconciled:not_applied", *sent]


def verdict(lab: PushLab, trial: Trial) -> list[str]:
    """Every way the trial breaks exactly-once; empty when it holds (module docstring)."""
    problems: list[str] = []
    final = {c.bug_id: c for c in read_changes(trial.database).values()}
    before = {c.bug_id: c for c in trial.at_kill.values()}
    world = lab.sandbox.world
    for bug_id, asked in trial.changes:
        change = final.get(bug_id)
        if change is None:
            problems.append(f"{asked}: not in the outbox")
            continue
        applied = lab.applied.of(bug_id)
        puts = len(lab.sandbox.requests.writes(bug_id))
        if applied != 1 or puts > change.attempts:
            problems.append(
                f"{asked}: TestIO applied it {applied} times; {puts} PUTs, {change.attempts} "
                "attempts"
            )
        if change.state != "applied":
            problems.append(f"{asked}: ends {change.state}")
        path = [f"{kind}:{outcome or ''}" for kind, outcome in change.events[1:]]
        wanted = expected_path(before.get(bug_id), trial.applied_at_kill.get(bug_id, 0))
        if path != wanted:
            problems.append(f"{asked}: events {path}, not {wanted}")
        if change.attempts != wanted.count("sending:"):
            problems.append(f"{asked}: {change.attempts} attempts")
        upstream = TriageState.of_bug(world.bug(bug_id))
        mirrored = mirrored_triage(trial.database, bug_id)
        if mirrored != upstream or not upstream.shows(change.action):  # type: ignore[arg-type]
            problems.append(f"{asked}: mirrored {mirrored}, TestIO {upstream}")
    return problems


def point_problems(trial: Trial) -> list[str]:
    """An exact point must leave the target ``sending`` (applied upstream after the send, not
    before it), the changes before it applied and those after it pending."""
    problems = []
    for index, bug_id in enumerate(trial.bug_ids):
        stood = next((c.state for c in trial.at_kill.values() if c.bug_id == bug_id), None)
        wanted = "applied" if index < trial.target else "pending"
        wanted = "sending" if index == trial.target else wanted
        if stood != wanted:
            problems.append(f"change #{index} was {stood} at the kill, not {wanted}")
    applied = trial.applied_at_kill[trial.bug_ids[trial.target]]
    if applied != (0 if trial.point == "claim" else 1):
        problems.append(f"the target was applied {applied} times at the kill")
    return problems


@pytest.fixture
def new_lab(make_sandbox: SandboxFactory, tmp_path: Path) -> Iterator[Any]:
    labs: list[PushLab] = []

    async def make(seed: int) -> PushLab:
        sandbox = make_sandbox(SPEC, SandboxKnobs(latency_ms=LATENCY_MS))
        lab = PushLab(sandbox, tmp_path / f"lab{len(labs)}", seed)
        labs.append(lab)
        await lab.sync_template()
        return lab

    try:
        yield make
    finally:
        for lab in labs:
            lab.stop_all()


def run_trials(lab: PushLab, trials: list[Trial]) -> None:
    rngs = {t.number: random.Random(f"{lab.seed}-{t.number}") for t in trials}
    with ThreadPoolExecutor(WORKERS) as pool:
        for done in [pool.submit(lab.run, t, rngs[t.number]) for t in trials]:
            done.result()


@pytest.mark.parametrize("point", POINTS)
async def test_a_push_killed_at_an_exact_point_sends_each_change_once(
    new_lab: Any, ledger: Ledger, point: str
) -> None:
    seed = BASE_SEED + POINTS.index(point)
    lab: PushLab = await new_lab(seed)
    rng = random.Random(seed)
    trials = [lab.trial(point, CHANGES_PER_TRIAL, rng) for _ in range(EXACT_TRIALS)]
    await asyncio.to_thread(run_trials, lab, trials)

    problems = {str(t): point_problems(t) + verdict(lab, t) for t in trials}
    problems = {name: found for name, found in problems.items() if found}
    ledger.record(
        "push kills",
        trials=len(trials),
        kills=sum(t.killed for t in trials),
        faults=sum(t.point == "answer_held" for t in trials),
        mismatches=len(problems),
    )
    assert problems == {}, f"seed {seed}"
    assert all(t.killed for t in trials)


async def test_a_push_killed_at_a_random_moment_sends_each_change_once(
    new_lab: Any, ledger: Ledger
) -> None:
    seed = BASE_SEED + 10
    lab: PushLab = await new_lab(seed)
    rng = random.Random(seed)
    trials = [lab.trial("random", RANDOM_CHANGES, rng) for _ in range(RANDOM_TRIALS)]
    await asyncio.to_thread(run_trials, lab, trials)

    problems = {str(t): verdict(lab, t) for t in trials}
    problems = {name: found for name, found in problems.items() if found}
    ledger.record(
        "push kills",
        trials=len(trials),
        kills=sum(t.killed for t in trials),
        mismatches=len(problems),
    )
    assert problems == {}, f"seed {seed}"


async def test_the_verdict_counts_a_write_sent_twice(new_lab: Any) -> None:
    """The invariants can fail: one more PUT of a change already applied, as a push that sent it
    again without a claim would make, is reported (two applied writes, more PUTs than attempts)."""
    lab: PushLab = await new_lab(BASE_SEED + 20)
    trial = lab.trial("record_applied", 2, random.Random(0))
    await asyncio.to_thread(run_trials, lab, [trial])
    assert verdict(lab, trial) == []

    bug_id, asked = trial.changes[0]
    action = asked.split(":")[1]
    segment = WIRE_SEGMENT[action]  # type: ignore[index]
    body = {"reason": REASON} if action == "reject" else {}
    async with httpx.AsyncClient(headers=lab.sandbox.auth_headers) as client:
        answer = await client.put(f"{lab.sandbox.base_url}/bugs/{bug_id}/{segment}", json=body)
    assert answer.status_code == 200
    assert wait_for(lambda: lab.in_flight(trial) == 0)
    assert verdict(lab, trial) == [f"{asked}: TestIO applied it 2 times; 2 PUTs, 1 attempts"]
