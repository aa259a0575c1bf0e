"""Crashes: ``testio-mirror sync`` killed with SIGKILL at a random moment, then restarted.

Each trial serves a sandbox in this process and runs the real CLI as child processes against it.
A child to be killed writes its output into a FIFO that this process can fill (``OutputGate``):
at the chosen moment the FIFO is filled, so the child blocks at its next line of output (a
progress line follows every commit) and cannot finish; a random hold later it is killed through
its own handle. A kill therefore lands anywhere: during start-up, in a request, in a transaction,
or right after a commit. The moment is "when the k-th API request of the child arrives" (k at
most the fewest requests the sync still has to make, so it always lands before the end; k = 0:
at a random moment of start-up) plus the hold, both from a seeded ``random.Random`` whose seed
and plans every failure message names.

After the kill the mirror is read as the dead process left it (``Committed``), the sync is run
again to completion, and:

- ``PRAGMA integrity_check`` is ok and no foreign key dangles;
- no run stays ``running``: killed ones (that got as far as starting) are ``interrupted``, the
  last is ``success``;
- the mirror equals the sandbox (with bugs in the trials that sync them);
- the restart fetched nothing that was committed before the kill (docs/sync.md: "a killed run
  loses nothing it committed and is not fetched again"; a resumed listing "continues ... from
  the page after the last one committed, then an incremental pass from page 1"). Precisely, no
  request of the restart asks for

  * a page of a product's listing other than page 1 (the documented look at the head) whose
    tests were all committed, or the boundary probe of a committed test's slot;
  * a committed test on its own (``exploratory_tests/{id}``: the sweep after a full listing);
  * the features of a product whose features were committed;
  * the bugs of a test whose bug list was committed;

  and a restart that finishes lists each product as its listing state says: only page 1 when the
  listing had completed; pages N, N+1, ... (in any order: a full listing may ask for several at
  once) and then page 1 when it had committed the pages before N; pages 1, 2, ... when nothing
  was committed. The product list and the reject reasons are asked once per run, by design.

Two more tests kill at exact moments, where the random ones land only now and then: between an
incremental listing's last commit and its completion, and after the page before a short last page.

Quick form (``make test``): ``kill_trials`` (5) single kills and one restart killed too; long form
(``make reliability``): 50 and 10, on larger data.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from testio_mirror.sandbox import (
    DatasetSpec,
    FaultRule,
    RequestRecord,
    SandboxKnobs,
    SandboxServer,
)
from tests.conftest import SandboxFactory
from tests.helpers.mirror_equality import mirror_differences
from tests.helpers.polling import wait_for
from tests.helpers.reliability_ledger import Ledger, current_scale

SCALE = current_scale()
PAGE_SIZE = 25
BUG_BATCH_SIZE = 15
LATENCY_MS = 30.0  # per request: a sync lasts long enough to be killed in the middle
STARTUP_WINDOW = 0.8  # seconds: a kill planned before any request lands in this much start-up
CHILD_TIMEOUT = 120.0
STATE_TIMEOUT = 20.0  # for a state a child blocked on its output is bound to reach
BASE_SEED = 20261121
RESTART_KILL_TRIALS = max(1, SCALE.kill_trials // 5)
HEAD_CHECK_SPEC = DatasetSpec(
    seed=7, products=1, section_products=0, tests_per_product=40, bugs_per_test=1
)
ROUND_END_SPEC = DatasetSpec(
    seed=8, products=1, section_products=0, tests_per_product=35, bugs_per_test=1
)


# -- what the mirror held when a sync died --------------------------------------------------------


@dataclass(frozen=True)
class Listing:
    """A product's ``listing_state`` row."""

    next_page: int
    complete: bool
    full_listing: bool


@dataclass(frozen=True)
class Committed:
    """What a killed sync had committed, read from the database after the process died."""

    tests: frozenset[int]
    tests_with_bugs: frozenset[int]
    products_with_features: frozenset[int]
    listings: dict[int, Listing]


def read_committed(database: Path) -> Committed:
    """The mirror as a dead process left it, read through a read-only connection (which neither
    checkpoints nor repairs anything the restart should find for itself)."""
    if not database.exists():
        return Committed(frozenset(), frozenset(), frozenset(), {})
    with contextlib.closing(sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)) as conn:
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }

        def ids(table: str, sql: str) -> frozenset[int]:
            if table not in tables:
                return frozenset()
            return frozenset(int(row[0]) for row in conn.execute(sql))

        listings: dict[int, Listing] = {}
        if "listing_state" in tables:
            for pid, next_page, complete, full in conn.execute(
                "SELECT product_id, next_page, complete, full_listing FROM listing_state"
            ):
                listings[int(pid)] = Listing(int(next_page), bool(complete), bool(full))
        return Committed(
            tests=ids("tests", "SELECT id FROM tests WHERE deleted_at IS NULL"),
            tests_with_bugs=ids("tests", "SELECT id FROM tests WHERE bugs_fetched_at IS NOT NULL"),
            products_with_features=ids(
                "products", "SELECT id FROM products WHERE features_fetched_at IS NOT NULL"
            ),
            listings=listings,
        )


def requests_left(committed: Committed, order: dict[int, list[int]], bugs: bool) -> int:
    """The fewest API requests a sync must still make from what is committed: a kill planned
    within them lands before the sync could end."""
    needed = 1  # the product list
    for pid, tests in order.items():
        if pid not in committed.products_with_features:
            needed += 1
        listing = committed.listings.get(pid)
        if listing is None:
            needed += max(1, math.ceil(len(tests) / PAGE_SIZE))
        else:
            needed += 1 if listing.complete else 2  # page 1; or the resumed page, then page 1
    if bugs:
        every_test = {t for tests in order.values() for t in tests}
        unfetched = len(every_test - committed.tests_with_bugs)
        needed += 1 + math.ceil(unfetched / BUG_BATCH_SIZE)  # reject reasons, bug batches
    return needed


# -- what a restart asked for ---------------------------------------------------------------------


def _listing_request(record: RequestRecord) -> tuple[int, int, int] | None:
    """``(product, page, per_page)`` of a request for a product's test listing."""
    parts = record.path.split("/")
    if len(parts) != 3 or parts[0] != "products" or parts[2] != "exploratory_tests":
        return None
    query = parse_qs(record.query)
    return int(parts[1]), int(query["page"][0]), int(query["per_page"][0])


def refetches(
    requests: list[RequestRecord], committed: Committed, order: dict[int, list[int]]
) -> list[str]:
    """Every request that asked again for something committed before the kill (module
    docstring); empty when there is none."""
    problems: list[str] = []
    for record in requests:
        parts = record.path.split("/")
        listing = _listing_request(record)
        if listing is not None:
            pid, page, per_page = listing
            tests = order.get(pid, [])
            if per_page != PAGE_SIZE:
                # A boundary probe (upstream/paging_probes.py) covers a boundary between two
                # pages read in this run: never one of tests all committed before the kill.
                slots = tests[(page - 1) * per_page : page * per_page]
                if slots and committed.tests.issuperset(slots):
                    problems.append(f"probe of page {page} at {per_page} of product {pid}")
            elif page != 1:
                shown = tests[(page - 1) * per_page : page * per_page]
                if shown and committed.tests.issuperset(shown):
                    problems.append(f"page {page} of product {pid} (all {len(shown)} tests)")
        elif parts[0] == "products" and parts[-1] == "features":
            if int(parts[1]) in committed.products_with_features:
                problems.append(f"features {record.path}")
        elif len(parts) == 2 and parts[0] == "exploratory_tests":
            if int(parts[1]) in committed.tests:
                problems.append(f"test {parts[1]} on its own")
        elif parts == ["bugs"]:
            asked = parse_qs(record.query).get("filter_test_cycle_ids", [""])[0]
            again = sorted({int(t) for t in asked.split(",") if t} & committed.tests_with_bugs)
            if again:
                problems.append(f"bugs of tests {again[:5]} ({len(again)} tests)")
    return problems


def listing_shape(
    requests: list[RequestRecord], committed: Committed, order: dict[int, list[int]]
) -> list[str]:
    """How a finished restart's listing of each product differs from what its listing state
    says it must be (module docstring); empty when every product was listed as it should. A
    full listing may ask for several pages at once, so pages are compared as a set, except the
    look at the head, which comes after the rest."""
    arrivals: dict[int, list[tuple[float, int]]] = {pid: [] for pid in order}
    for record in requests:
        listing = _listing_request(record)
        # Pages only: boundary probes (a few slots, any other per_page) are not pages.
        if listing is not None and listing[2] == PAGE_SIZE:
            arrivals.setdefault(listing[0], []).append((record.at, listing[1]))
    problems: list[str] = []
    for pid, timed in arrivals.items():
        asked = [page for _, page in sorted(timed)]
        state = committed.listings.get(pid)
        if state is None:
            wanted = "pages 1, 2, ..."
            ok = bool(asked) and sorted(asked) == list(range(1, len(asked) + 1))
        elif state.complete:
            wanted = "page 1 only"
            ok = asked == [1]
        else:
            first = state.next_page
            wanted = f"pages {first}, {first + 1}, ... then page 1"
            resumed = sorted(asked[:-1])
            ok = (
                asked[-1:] == [1]
                and bool(resumed)
                and resumed == list(range(first, first + len(resumed)))
            )
        if not ok:
            problems.append(f"product {pid} ({state}): asked pages {asked}, not {wanted}")
    return problems


# -- child processes ------------------------------------------------------------------------------


class OutputGate:
    """A child's stdout and stderr through a FIFO that this process can fill: once it is full,
    the child blocks at its next line (a progress line follows every commit) and cannot finish,
    so a kill lands before the end, possibly right between a commit and what follows it."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path, 0o600)
        self._reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self.child_end: int | None = os.open(path, os.O_WRONLY)
        # A file description of its own: non-blocking here, while the child's end blocks.
        self._filler = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        self._captured = bytearray()

    def release_child_end(self) -> None:
        """Close this process's copy of the child's end, once the child holds its own."""
        if self.child_end is not None:
            os.close(self.child_end)
            self.child_end = None

    def drain(self) -> None:
        """Read what the child wrote so far (never while shut: that would let it go on)."""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self._reader, 65536):
                self._captured += chunk

    def shut(self) -> None:
        """Fill the FIFO: the child's next write blocks."""
        self.drain()
        for size in (4096, 1):  # whole pages, then byte by byte to the last one
            with contextlib.suppress(BlockingIOError):
                while True:
                    os.write(self._filler, b"\0" * size)

    def close(self) -> None:
        self.release_child_end()
        self.drain()
        os.close(self._filler)
        os.close(self._reader)

    def text(self) -> str:
        return self._captured.replace(b"\0", b"").decode(errors="replace")


@dataclass
class Run:
    """One ``testio-mirror sync`` child."""

    number: int
    process: subprocess.Popen[bytes]
    started: float  # Unix time just before it was spawned: all its requests arrived later
    arrivals_before: int
    gate: OutputGate | None
    log: Path | None

    def output(self) -> str:
        """The end of what it wrote, for failure messages."""
        text = self.gate.text() if self.gate is not None else ""
        if self.log is not None and self.log.exists():
            text = self.log.read_text(errors="replace")
        return text[-3000:]


@dataclass(frozen=True)
class KillPlan:
    """When to kill a child: shut its output when its ``arrivals``-th API request arrives (0:
    ``startup`` seconds after it starts, or at its first request if that comes sooner), then
    kill it ``hold`` seconds later."""

    arrivals: int
    startup: float
    hold: float

    @classmethod
    def draw(cls, rng: random.Random, requests_left: int) -> KillPlan:
        arrivals = rng.randint(0, requests_left)
        startup = round(rng.uniform(0, STARTUP_WINDOW), 3) if arrivals == 0 else 0.0
        hold = round(rng.uniform(0, 2 * LATENCY_MS / 1000), 3)
        return cls(arrivals, startup, hold)

    def __str__(self) -> str:
        when = f"request {self.arrivals}" if self.arrivals else f"start-up + {self.startup}s"
        return f"shut at {when}, kill {self.hold}s later"


class Lab:
    """One trial: a sandbox, a data directory, and the sync children run against them, each
    stopped through its own handle."""

    def __init__(
        self, sandbox: SandboxServer, root: Path, *, bugs: bool, counted: str = "*"
    ) -> None:
        self.sandbox = sandbox
        self.root = root
        self.home = root / "home"
        self.workdir = root / "cwd"  # no stray .env file is read from here
        self.workdir.mkdir(parents=True)
        self.bugs = bugs
        self.order: dict[int, list[int]] = sandbox.world.snapshot()["product_tests"]
        # Counts arrivals of the requests matching ``counted`` (and delays them by nothing): the
        # request log only has a request once it is answered.
        self.arrivals = sandbox.faults.add(
            FaultRule(kind="hang", path=counted, times=None, hang_seconds=0.0)
        )
        self.runs: list[Run] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TESTIO_")}
        self.env.update(
            {
                "TESTIO_CUSTOMER_API_BASE_URL": sandbox.base_url,
                "TESTIO_CUSTOMER_API_TOKEN": sandbox.token,
                "TESTIO_MIRROR_HOME": str(self.home),
                "TESTIO_PAGE_SIZE": str(PAGE_SIZE),
                "TESTIO_BUG_BATCH_SIZE": str(BUG_BATCH_SIZE),
                "TESTIO_SYNC_LOCK_TIMEOUT_SECONDS": "30",
                "TESTIO_LOG_LEVEL": "WARNING",
            }
        )

    @property
    def database(self) -> Path:
        return self.home / "mirror.db"

    def committed(self) -> Committed:
        return read_committed(self.database)

    def start(self, *, gated: bool) -> Run:
        number = len(self.runs)
        gate = OutputGate(self.root / f"run{number}.fifo") if gated else None
        log = None if gated else self.root / f"run{number}.log"
        # --steps: a line after every commit, where a shut output stops the child.
        args = [sys.executable, "-m", "testio_mirror", "sync", "--steps"]
        args += ["--bugs"] if self.bugs else []
        with contextlib.ExitStack() as stack:
            if gate is not None:
                out: Any = gate.child_end
            else:
                assert log is not None
                out = stack.enter_context(log.open("wb"))
            started = time.time()
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.workdir,
            )
        if gate is not None:
            gate.release_child_end()
        run = Run(number, process, started, self.arrivals.fired, gate, log)
        self.runs.append(run)
        return run

    def arrived(self, run: Run) -> int:
        """API requests of ``run`` that have arrived at the sandbox (answered or not)."""
        return self.arrivals.fired - run.arrivals_before

    def kill_at(
        self,
        run: Run,
        shut: Callable[[], bool],
        hold: float = 0.0,
        then: Callable[[], bool] | None = None,
    ) -> None:
        """Shut ``run``'s output once ``shut()`` holds, and kill it ``hold`` seconds later (or
        once ``then()`` holds)."""
        gate = run.gate
        assert gate is not None

        def reached() -> bool:
            gate.drain()
            return run.process.poll() is not None or shut()

        wait_for(reached, CHILD_TIMEOUT)
        gate.shut()
        if then is not None:
            wait_for(lambda: run.process.poll() is not None or then(), STATE_TIMEOUT)
        time.sleep(hold)
        self.stop(run)

    def kill(self, plan: KillPlan) -> Run:
        """Start a child and kill it as ``plan`` says."""
        run = self.start(gated=True)
        if plan.arrivals == 0:
            deadline = run.started + plan.startup
            self.kill_at(run, lambda: time.time() >= deadline or self.arrived(run) > 0, plan.hold)
        else:
            self.kill_at(run, lambda: self.arrived(run) >= plan.arrivals, plan.hold)
        return run

    def finish(self) -> Run:
        """A child left to run to its end."""
        run = self.start(gated=False)
        run.process.wait(CHILD_TIMEOUT)
        return run

    def stop(self, run: Run) -> None:
        if run.process.poll() is None:
            run.process.send_signal(signal.SIGKILL)
        run.process.wait(CHILD_TIMEOUT)
        if run.gate is not None:
            run.gate.drain()

    def stop_all(self) -> None:
        for run in self.runs:
            try:
                self.stop(run)
            finally:
                if run.gate is not None:
                    run.gate.close()

    def requests_of(self, run: Run) -> list[RequestRecord]:
        """The API requests ``run`` made: those that arrived between its start and the next
        child's (a killed child's last requests may be logged late, but arrived before)."""
        until = min((r.started for r in self.runs if r.started > run.started), default=math.inf)
        return [r for r in self.sandbox.requests.records() if run.started <= r.at < until]


LabFactory = Callable[..., Lab]


@pytest.fixture
def new_lab(make_sandbox: SandboxFactory, tmp_path: Path) -> Iterator[LabFactory]:
    """Labs whose children are all stopped when the test ends (before their sandboxes)."""
    labs: list[Lab] = []

    def make(
        spec: DatasetSpec = SCALE.dataset, *, bugs: bool, counted: str = "*", latency: float = 0
    ) -> Lab:
        sandbox = make_sandbox(spec, SandboxKnobs(latency_ms=latency or LATENCY_MS))
        lab = Lab(sandbox, tmp_path / f"lab{len(labs)}", bugs=bugs, counted=counted)
        labs.append(lab)
        return lab

    try:
        yield make
    finally:
        for lab in labs:
            lab.stop_all()


# -- the verdict ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Soundness:
    integrity: list[str]
    dangling: list[tuple[Any, ...]]
    runs: list[str]  # statuses of the run rows, oldest first


def soundness(database: Path) -> Soundness:
    with contextlib.closing(sqlite3.connect(database)) as conn:
        return Soundness(
            integrity=[row[0] for row in conn.execute("PRAGMA integrity_check")],
            dangling=conn.execute("PRAGMA foreign_key_check").fetchall(),
            runs=[
                row[0]
                for row in conn.execute(
                    "SELECT status FROM sync_events WHERE kind = 'run' ORDER BY id"
                )
            ],
        )


def record_trial(lab: Lab, ledger: Ledger) -> list[str]:
    """Tell the ledger about the trial (before anything is asserted); returns how the mirror
    differs from the sandbox."""
    differences = mirror_differences(lab.database, lab.sandbox.world, bugs=lab.bugs)
    kills = sum(run.process.returncode == -signal.SIGKILL for run in lab.runs)
    ledger.record("crashes", trials=1, kills=kills, mismatches=len(differences))
    return differences


def assert_converged(
    lab: Lab, snapshots: list[Committed], context: str, differences: list[str]
) -> None:
    """The checks of the module docstring, after children killed (one snapshot each) and a last
    one that ran to its end."""
    *killed, final = lab.runs
    assert len(killed) == len(snapshots)
    for run in killed:
        assert run.process.returncode == -signal.SIGKILL, (
            f"{context}: run {run.number} ended by itself ({run.process.returncode}) before its "
            f"kill:\n{run.output()}"
        )
    assert final.process.returncode == 0, f"{context}: the restart failed:\n{final.output()}"
    sound = soundness(lab.database)
    assert sound.integrity == ["ok"], f"{context}: {sound.integrity}"
    assert sound.dangling == [], f"{context}: {sound.dangling}"
    assert "running" not in sound.runs, f"{context}: runs {sound.runs}"
    assert sound.runs[-1:] == ["success"], f"{context}: runs {sound.runs}"
    assert set(sound.runs[:-1]) <= {"interrupted"}, f"{context}: runs {sound.runs}"
    assert len(sound.runs) <= len(lab.runs), f"{context}: runs {sound.runs}"
    assert differences == [], f"{context}: {differences}"
    for snapshot, after in zip(snapshots, lab.runs[1:], strict=True):
        again = refetches(lab.requests_of(after), snapshot, lab.order)
        assert again == [], f"{context}: run {after.number} asked again for {again}"
    final_requests = lab.requests_of(final)
    shape = listing_shape(final_requests, snapshots[-1], lab.order)
    assert shape == [], f"{context}: {shape}"
    asked = [r.path for r in final_requests]
    assert asked.count("products") == 1, f"{context}: {asked}"
    assert asked.count("bugs/reject_reasons") == int(lab.bugs), f"{context}: {asked}"


def crash_trial(lab: Lab, seed: int, kills: int) -> tuple[list[Committed], str]:
    """``kills`` children killed in a row, each at a moment drawn from ``seed``, then one that
    runs to its end; returns what each kill left and the context for failure messages."""
    rng = random.Random(seed)
    snapshots: list[Committed] = []
    plans: list[str] = []
    committed = lab.committed()
    for _ in range(kills):
        plan = KillPlan.draw(rng, requests_left(committed, lab.order, lab.bugs))
        plans.append(str(plan))
        lab.kill(plan)
        committed = lab.committed()
        snapshots.append(committed)
    lab.finish()
    bugs = "with" if lab.bugs else "without"
    return snapshots, f"seed {seed} ({bugs} --bugs), kills: {'; '.join(plans)}"


# -- the tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("trial", range(SCALE.kill_trials), ids=lambda t: f"trial{t}")
def test_a_sync_killed_at_a_random_moment_restarts_to_the_same_mirror_without_refetching(
    new_lab: LabFactory, ledger: Ledger, trial: int
) -> None:
    lab = new_lab(bugs=trial % 2 == 0)
    snapshots, context = crash_trial(lab, BASE_SEED + trial, kills=1)
    assert_converged(lab, snapshots, context, record_trial(lab, ledger))


@pytest.mark.parametrize("trial", range(RESTART_KILL_TRIALS), ids=lambda t: f"trial{t}")
def test_a_restart_killed_too_still_converges_without_refetching(
    new_lab: LabFactory, ledger: Ledger, trial: int
) -> None:
    lab = new_lab(bugs=trial % 2 == 0)
    snapshots, context = crash_trial(lab, BASE_SEED + 1000 + trial, kills=2)
    assert_converged(lab, snapshots, context, record_trial(lab, ledger))


def test_a_kill_between_the_head_check_and_its_completion_costs_no_relisting(
    new_lab: LabFactory, ledger: Ledger
) -> None:
    # One product of 40 tests: page 1 (25) and page 2 (15, the end). The first sync is killed
    # once page 1 is committed; the restart lists page 2, completes, then reads page 1 again
    # (the head check: all known, so the listing is done), and is killed right after committing
    # that page, before anything else. Nothing is left to list: the next run must not list the
    # pages the killed runs committed all over again.
    lab = new_lab(
        HEAD_CHECK_SPEC, bugs=False, counted="products/*/exploratory_tests", latency=100.0
    )
    context = "kills after page 1 of the first run and the head check of the restart"

    def listing() -> Listing | None:
        return lab.committed().listings.get(101)

    # Its output is shut when page 1 is asked for (answered 100 ms later), so the first run
    # blocks on the progress line that follows the commit of page 1, and is killed there.
    first = lab.start(gated=True)
    lab.kill_at(
        first,
        lambda: lab.arrived(first) >= 1,
        then=lambda: (state := listing()) is not None and state.next_page == 2,
    )
    after_first = lab.committed()

    # The restart asks for page 2 (the first of its resumed listing: no boundary probe), then
    # page 1; its output is shut when page 1 is asked for, and it is killed once the commit of
    # that page shows (an incremental listing's state), blocked on the progress line after it.
    restart = lab.start(gated=True)
    lab.kill_at(
        restart,
        lambda: lab.arrived(restart) >= 2,
        then=lambda: (state := listing()) is not None and not state.full_listing,
    )
    after_restart = lab.committed()
    lab.finish()
    differences = record_trial(lab, ledger)

    # The kills landed where they were meant to.
    assert after_first.listings[101] == Listing(2, complete=False, full_listing=True), context
    assert len(after_first.tests) == PAGE_SIZE, context
    listed = filter(None, map(_listing_request, lab.requests_of(restart)))
    assert [(page, size) for _, page, size in listed] == [(2, PAGE_SIZE), (1, PAGE_SIZE)]
    assert len(after_restart.tests) == 40, context
    assert not after_restart.listings[101].full_listing, context  # the head check's page 1
    assert_converged(lab, [after_first, after_restart], context, differences)


def test_a_listing_resumed_at_its_short_last_page_asks_for_nothing_committed(
    new_lab: LabFactory, ledger: Ledger
) -> None:
    # One product of 35 tests: pages of 25 and 10 (a round number: maybe a server's cap, maybe
    # the end). A full listing commits page 1 alone and then a window of pages at a time, so a
    # resumed listing starts after page 1: the first sync is killed once page 1 is committed,
    # and the restart resumes at page 2, the short one. It must not probe a slot of page 1
    # (nor read page 1 again because such a probe's test looks like one that slid back).
    lab = new_lab(ROUND_END_SPEC, bugs=False, counted="products/*/exploratory_tests", latency=100.0)
    context = "a kill after page 1 of 2, the last one holding 10 tests"

    def listing() -> Listing | None:
        return lab.committed().listings.get(101)

    # The window after page 1 is asked for before page 1 is stored: shut the output then, so
    # the run blocks on page 1's progress line after its commit, and kill it there.
    first = lab.start(gated=True)
    lab.kill_at(
        first,
        lambda: lab.arrived(first) >= 2,
        then=lambda: (state := listing()) is not None and state.next_page == 2,
    )
    committed = lab.committed()
    lab.finish()
    differences = record_trial(lab, ledger)

    # The kill landed where it was meant to.
    assert committed.listings[101] == Listing(2, complete=False, full_listing=True), context
    assert len(committed.tests) == PAGE_SIZE, context
    assert_converged(lab, [committed], context, differences)
