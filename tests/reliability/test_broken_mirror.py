"""Broken mirrors: another process writing, a damaged file, a full disk, a symlinked file.

Each test works on its own copy of one mirror synced from a sandbox (``synced``), and checks
what a user and an agent see:

- another process holding a write transaction (``WriteHolder``, a child process with its own
  sqlite3 connection) leaves queries and ``testio-mirror status`` answering (WAL readers take no
  write lock); what must write (opening a new mirror) answers that the mirror is busy, never
  that it may be damaged, and serves once the other writer is done;
- a file damaged in the middle (pages overwritten with seeded garbage) makes ``sync`` exit with
  its own code and one line saying what to do, no traceback, and tools answer without a path
  or an exception's text; ``status`` shows the path;
- a full disk (a real small tmpfs, mounted in a user and mount namespace of the child:
  ``unshare --user --map-root-user --mount``, which needs no root) makes ``sync`` exit with its
  own code saying the disk is full, and keeps what was committed;
- a ``mirror.db`` (or ``-wal``) that is a symlink is refused, naming the file, and its target
  is neither changed in mode nor written.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testio_mirror.cli.exit_codes import EXIT_DISK_FULL, EXIT_MIRROR_DAMAGED, EXIT_OK
from testio_mirror.sandbox import DatasetSpec
from testio_mirror.settings import Settings
from tests.helpers.command_line import env_without_testio, run_command
from tests.helpers.mcp_session import Mirrored, call, call_error, connect, synced_sandbox
from tests.helpers.reliability_ledger import Ledger, current_scale
from tests.helpers.settings import make_settings

JSON = dict[str, Any]
SCALE = current_scale()
# Seeds of the garbage a damaged file gets: more of them in the long form.
DAMAGE_SEEDS = range(1, 4 if SCALE.form == "quick" else 13)
DATASET = DatasetSpec(seed=17, products=2, section_products=1, tests_per_product=40)
BUSY_TIMEOUT = 1.0  # seconds a writer waits for another: the busy answers come quickly
CHILD_TIMEOUT = 60.0
QUERIES: list[tuple[str, JSON]] = [
    ("list_products", {}),
    ("list_tests", {}),
    ("list_bugs", {}),
    ("search", {"query": "login"}),
    ("bug_stats", {"group_by": "severity"}),
    ("sync_status", {}),
]

HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA journal_mode = WAL")
conn.execute("BEGIN " + sys.argv[2])
print("held", flush=True)
sys.stdin.readline()
conn.rollback()
conn.close()
print("released", flush=True)
"""


class WriteHolder:
    """Another process holding a write transaction on a database until released."""

    def __init__(self, database: Path, mode: str = "IMMEDIATE") -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(database), mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "held"

    def release(self) -> None:
        if self.process.poll() is not None:
            return
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline().strip() == "released"
        self.process.wait(timeout=CHILD_TIMEOUT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=CHILD_TIMEOUT)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def holders() -> Iterator[list[WriteHolder]]:
    started: list[WriteHolder] = []
    yield started
    for holder in started:
        holder.stop()


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mirrored]:
    home = tmp_path_factory.mktemp("synced") / "home"
    with synced_sandbox(DATASET, home, include_bugs=True) as mirrored:
        yield mirrored


def copy_home(synced: Mirrored, tmp_path: Path, **overrides: Any) -> Settings:
    """A home of its own holding a copy of the synced mirror (closed, so one file)."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    shutil.copyfile(synced.settings.database_path, home / "mirror.db")
    os.chmod(home / "mirror.db", 0o600)
    knobs: dict[str, Any] = {"mirror_busy_timeout_seconds": BUSY_TIMEOUT, **overrides}
    return make_settings(synced.sandbox, home, **knobs)


def env_of(settings: Settings, **extra: str) -> dict[str, str]:
    token = settings.customer_api_token
    assert token is not None
    return {
        "TESTIO_MIRROR_HOME": str(settings.mirror_home),
        "TESTIO_CUSTOMER_API_TOKEN": token.get_secret_value(),
        "TESTIO_CUSTOMER_API_BASE_URL": str(settings.customer_api_base_url),
        "TESTIO_MIRROR_BUSY_TIMEOUT_SECONDS": str(BUSY_TIMEOUT),
        "COLUMNS": "250",
        **extra,
    }


def entity_counts(database: Path) -> dict[str, int]:
    uri = f"file:{database}?mode=ro"
    with sqlite3.connect(uri, uri=True) as conn:
        return {
            table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608
            for table in ("products", "features", "tests", "bugs")
        }


def damage(database: Path, seed: int) -> None:
    """Overwrite pages in the middle of the file with seeded garbage (the header is kept)."""
    pages = database.stat().st_size // 4096
    rng = random.Random(seed)
    with database.open("r+b") as file:
        for page in range(pages * 2 // 5, pages * 3 // 5):
            file.seek(page * 4096)
            file.write(rng.randbytes(4096))


def assert_clean_answer(text: str, settings: Settings) -> None:
    """No path, traceback or exception text in what an agent reads."""
    assert str(settings.mirror_home) not in text, text
    assert "/" + settings.database_path.name not in text, text
    for leak in ("Traceback", "sqlite3", "DatabaseError", "OperationalError", "malformed"):
        assert leak not in text, text


# 1 and 2: another process writing


async def test_queries_answer_while_another_process_writes(
    synced: Mirrored, tmp_path: Path, holders: list[WriteHolder], ledger: Ledger
) -> None:
    settings = copy_home(synced, tmp_path)
    holders.append(WriteHolder(settings.database_path))
    answers = 0
    async with connect(settings) as client:
        for tool, args in QUERIES:
            await call(client, tool, args)
            answers += 1
        products = await call(client, "list_products")
    ledger.record("broken mirror", trials=answers, faults=1)
    assert len(products["products"]) == DATASET.products


def test_status_answers_while_another_process_writes(
    synced: Mirrored, tmp_path: Path, holders: list[WriteHolder], ledger: Ledger
) -> None:
    settings = copy_home(synced, tmp_path)
    holders.append(WriteHolder(settings.database_path))
    # A mirror's timeout the reader would wait out if it took the write lock.
    done = run_command("status", **env_of(settings, TESTIO_MIRROR_BUSY_TIMEOUT_SECONDS="30"))
    ledger.record("broken mirror", faults=1)
    assert done.returncode == EXIT_OK, done.stderr
    assert "locked" not in done.stderr, done.stderr
    assert "busy" not in done.stderr, done.stderr
    assert str(settings.database_path) in " ".join(done.stdout.split())


async def test_server_opening_a_mirror_another_process_writes_recovers(
    synced: Mirrored, tmp_path: Path, holders: list[WriteHolder], ledger: Ledger
) -> None:
    # A new mirror must be created (migrations write): the opening waits for the other writer.
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    settings = make_settings(synced.sandbox, home, mirror_busy_timeout_seconds=BUSY_TIMEOUT)
    holder = WriteHolder(settings.database_path)
    holders.append(holder)
    async with connect(settings) as client:
        busy = await call_error(client, "list_tests")
        again = await call_error(client, "sync_status")
        holder.release()
        status = await call(client, "sync_status")
        tests = await call(client, "list_tests")
    ledger.record("broken mirror", trials=4, faults=1)
    for text in (busy, again):
        assert "busy" in text, text
        assert "another process" in text, text
        assert "damaged" not in text, text
        assert_clean_answer(text, settings)
    assert status["state"] == "never_synced"
    assert tests["tests"] == []


def test_sync_waiting_for_a_busy_writer_says_so(
    synced: Mirrored, tmp_path: Path, holders: list[WriteHolder], ledger: Ledger
) -> None:
    settings = copy_home(synced, tmp_path)
    holders.append(WriteHolder(settings.database_path))
    done = run_command("sync", **env_of(settings))
    ledger.record("broken mirror", faults=1)
    assert "the mirror is busy: another process is writing" in done.stderr, done.stderr
    assert "damaged" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 4, done.stderr


async def test_a_sync_that_meets_a_busy_mirror_records_it_in_the_users_words(
    synced: Mirrored, tmp_path: Path, holders: list[WriteHolder], ledger: Ledger
) -> None:
    """What a run records of a store failure (its errors, the server's last result) is the
    agent's words for it: no path, no exception class, no "internal error"."""
    settings = copy_home(synced, tmp_path).model_copy(update={"mirror_busy_timeout_seconds": 0.3})
    async with connect(settings) as client:
        holder = WriteHolder(settings.database_path)
        holders.append(holder)
        synced_text = " ".join(
            getattr(b, "text", "") for b in (await client.call_tool("sync_data", {})).content
        )
        holder.release()
        status = await call(client, "sync_status")
    ledger.record("broken mirror", trials=2, faults=1)
    assert "busy" in synced_text, synced_text
    recorded = " ".join(status["last_result"]["errors"])
    assert "busy" in recorded, status
    for text in (synced_text, recorded):
        assert_clean_answer(text, settings)
        assert "internal error" not in text, text
        assert "MirrorBusyError" not in text, text


# 3 and 5: a damaged file


@pytest.mark.parametrize("seed", DAMAGE_SEEDS)
def test_sync_on_a_damaged_mirror_exits_with_one_line(
    synced: Mirrored, tmp_path: Path, seed: int, ledger: Ledger
) -> None:
    settings = copy_home(synced, tmp_path)
    damage(settings.database_path, seed)
    done = run_command("sync", "--bugs", "--force", **env_of(settings))
    ledger.record("broken mirror", faults=1)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == EXIT_MIRROR_DAMAGED, done.stderr
    line = " ".join(done.stderr.split())
    assert "damaged" in line, done.stderr
    assert "--nuke" in line, done.stderr


def test_nuke_rebuilds_a_damaged_mirror(synced: Mirrored, tmp_path: Path, ledger: Ledger) -> None:
    settings = copy_home(synced, tmp_path)
    expected = entity_counts(settings.database_path)
    damage(settings.database_path, 4)
    done = run_command("sync", "--bugs", "--nuke", "--yes", **env_of(settings))
    ledger.record("broken mirror", faults=1)
    assert done.returncode == EXIT_OK, done.stderr
    assert entity_counts(settings.database_path) == expected


async def test_tools_on_a_damaged_mirror_name_the_problem_without_internals(
    synced: Mirrored, tmp_path: Path, ledger: Ledger
) -> None:
    settings = copy_home(synced, tmp_path)
    damage(settings.database_path, 5)
    texts: list[str] = []
    async with connect(settings) as client:
        for tool, args in [*QUERIES, ("get_test", {"test_id": 1})]:
            result = await client.call_tool(tool, args)
            if result.is_error:
                texts.append(" ".join(getattr(b, "text", "") for b in result.content))
    ledger.record("broken mirror", trials=len(QUERIES) + 1, faults=1)
    assert texts, "some tool must meet the damage"
    for text in texts:
        assert_clean_answer(text, settings)
        assert "damaged" in text, text
        assert "--nuke" in text, text
    out, err = status_with_stacks(settings)
    assert str(settings.database_path) in " ".join((out + err).split())


def status_with_stacks(settings: Settings) -> tuple[str, str]:
    """``testio-mirror status``'s output. It once in about twenty runs under load did not end
    within a minute on this damaged mirror (seen 2026-12-04, cause not found yet): when it
    hangs, every thread's stack (faulthandler, on SIGABRT) is the failure's message."""
    env = env_without_testio(**env_of(settings))
    child = subprocess.Popen(
        [sys.executable, "-X", "faulthandler", "-m", "testio_mirror", "status"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        return child.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGABRT)
        _, stacks = child.communicate()
        pytest.fail(f"status did not end within 60 s on a damaged mirror; its threads:\n{stacks}")


# 3b: a full disk


def test_sync_onto_a_full_disk_keeps_what_was_committed(
    synced: Mirrored, tmp_path: Path, ledger: Ledger
) -> None:
    source = copy_home(synced, tmp_path)
    expected = entity_counts(source.database_path)
    size = source.database_path.stat().st_size
    small = tmp_path / "small"
    small.mkdir()
    kept = tmp_path / "kept"
    kept.mkdir()
    # The child mounts a tmpfs over `small` in namespaces of its own (no root needed), copies
    # the mirror in, fills what is left but a little, syncs, then copies the files out.
    script = (
        f"set -e; mount -t tmpfs -o size={size + 256 * 1024},mode=0700 tmpfs {small}; "
        f"cp {source.database_path} {small}/mirror.db; chmod 600 {small}/mirror.db; "
        f"dd if=/dev/zero of={small}/filler bs=4096 2>/dev/null || true; "
        f"rm {small}/filler; dd if=/dev/zero of={small}/filler bs=4096 count=8 2>/dev/null; "
        f'set +e; {sys.executable} -m testio_mirror sync --bugs --force; echo "rc=$?"; '
        f"cp {small}/mirror.db* {kept}/"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESTIO_")}
    env.update(env_of(source, TESTIO_MIRROR_HOME=str(small)))
    done = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    ledger.record("broken mirror", faults=1)
    assert f"rc={EXIT_DISK_FULL}" in done.stdout, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "disk is full" in " ".join(done.stderr.split()), done.stderr
    with sqlite3.connect(kept / "mirror.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert entity_counts(kept / "mirror.db") == expected


# 4: symlinks


@pytest.mark.parametrize("name", ["mirror.db", "mirror.db-wal", "mirror.db-shm"])
def test_a_symlinked_file_is_refused_and_its_target_left_alone(
    synced: Mirrored, tmp_path: Path, name: str, ledger: Ledger
) -> None:
    settings = copy_home(synced, tmp_path)
    target = tmp_path / "target"
    original = settings.database_path.read_bytes() if name == "mirror.db" else b"precious"
    target.write_bytes(original)
    os.chmod(target, 0o644)
    link = settings.mirror_home / name
    if name == "mirror.db":
        link.unlink()
    link.symlink_to(target)
    done = run_command("status", **env_of(settings))
    synced_again = run_command("sync", **env_of(settings))
    ledger.record("broken mirror", trials=2, faults=1)
    for run in (done, synced_again):
        assert run.returncode != EXIT_OK, run.stdout
        assert "Traceback" not in run.stderr, run.stderr
        assert "symlink" in run.stderr, run.stderr
        assert name in run.stderr, run.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert target.read_bytes() == original
