"""The retrain ledger (artifacts/retrains.jsonl) stays bounded by rotation and answers as if every
line ever written were read: checked against the old whole-file reading, across thousands of
rotations, with several processes appending, and after a crash at each step of a rotation."""

from __future__ import annotations

import errno
import itertools
import json
import multiprocessing
import os
import random
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest

from ctloop import journal
from ctloop.retrain_log import DECISIONS, RetrainLog
from ctloop.util import read_json_lines

REASONS = ("rows", "drift", "quality")
SMALL = 4096  # a rotation every few dozen lines


# -- the reference: the old reading of the whole file ---------------------------------------------


def is_decision(entry: dict) -> bool:
    return "decision" in entry and isinstance(entry.get("trigger_rows"), int)


def reference_answers(entries: list[dict], triggers: set, reasons=REASONS) -> dict:
    """Every answer as the ledger gave it before rotation existed: from every line, in order."""
    decisions = [entry for entry in entries if is_decision(entry)]
    by_reason: dict[str, int] = {}
    for entry in decisions:
        for reason in entry.get("reasons") or ():
            by_reason[reason] = max(
                by_reason.get(reason, entry["trigger_rows"]), entry["trigger_rows"]
            )
    checks = [
        e["rows"] for e in entries if e.get("event") == "check" and isinstance(e.get("rows"), int)
    ]

    def attempts(trigger: int) -> int:
        count = 0
        for entry in entries:
            if entry.get("trigger_rows") != trigger:
                continue
            count = 0 if "decision" in entry else count + (entry.get("event") == "attempt")
        return count

    def streak(decision: str) -> int:
        count = 0
        for entry in reversed(decisions):
            if entry["decision"] == "superseded":
                continue
            if entry["decision"] != decision:
                break
            count += 1
        return count

    finetunes = 0
    for entry in reversed(decisions):
        trained = entry["decision"] in ("promoted", "rejected")
        if entry.get("mode") == "scratch" and trained:
            break
        finetunes += entry.get("mode") == "finetune" and trained
    return {
        "last_decision": decisions[-1] if decisions else None,
        "last_decided_trigger": max([e["trigger_rows"] for e in decisions], default=0),
        "last_checked_rows": max(checks, default=0),
        "last_trigger_for": {r: by_reason.get(r, -(10**12)) for r in reasons},
        "attempts": {t: attempts(t) for t in sorted(triggers)},
        "streak": {d: streak(d) for d in DECISIONS},
        "finetunes_since_scratch": finetunes,
        "decision_counts": dict(Counter(e["decision"] for e in decisions)),
    }


def answers(ledger: RetrainLog, triggers: set, reasons=REASONS) -> dict:
    return {
        "last_decision": ledger.last_decision(),
        "last_decided_trigger": ledger.last_decided_trigger(),
        "last_checked_rows": ledger.last_checked_rows(),
        "last_trigger_for": {r: ledger.last_trigger_for(r) for r in reasons},
        "attempts": {t: ledger.attempts(t) for t in sorted(triggers)},
        "streak": {d: ledger.streak(d) for d in DECISIONS},
        "finetunes_since_scratch": ledger.finetunes_since_scratch(),
        "decision_counts": ledger.decision_counts(),
    }


def mixed_entries(count: int, seed: int = 7) -> list[dict]:
    """What a trainer writes over a long life: checks, attempts (most decided at once, a few
    before their trigger is reached, some for an old trigger after its decision), decisions of
    every kind and mode, backlogs superseded, odd lines."""
    rng = random.Random(seed)
    entries: list[dict] = []
    trigger, rows = 20, 0
    while len(entries) < count:
        rows += rng.randint(1, 15)
        roll = rng.random()
        if roll < 0.3:
            fired = rng.sample(REASONS[1:], rng.randint(0, 2))
            entries.append(
                {"event": "check", "rows": rows, "drift_share": rng.random(), "fired": fired}
            )
        elif roll < 0.55:
            at = rng.choice([trigger] * 40 + [trigger - 20, trigger + 20])
            entries.append(
                {"trigger_rows": at, "event": "attempt", "attempt": 1, "pid": rng.randint(2, 9999)}
            )
        elif roll < 0.93:
            decision = rng.choices(DECISIONS, weights=[4, 4, 1, 2])[0]
            reasons = rng.sample(REASONS, rng.randint(0, 3))
            entries.append(
                {
                    "trigger_rows": trigger,
                    "decision": decision,
                    "mode": rng.choice(["finetune", "finetune", "finetune", "scratch", None]),
                    "reasons": reasons,
                    "version": f"v{rng.randint(1, 9999):04d}",
                    "reason": "x" * rng.randint(0, 300),  # lines of many lengths
                    "seconds": round(rng.random() * 30, 3),
                }
            )
            if rng.random() < 0.2:  # a backlog: the one before superseded
                entries.append({"trigger_rows": trigger + 20, "decision": "superseded"})
                trigger += 20
            trigger += 20
        else:  # lines the old reading tolerated: a float trigger, no trigger, another event
            entries.append(
                rng.choice(
                    [
                        {"trigger_rows": float(trigger), "event": "attempt"},
                        {"decision": "promoted", "version": "v0001"},
                        {"event": "note", "rows": rows},
                        {"trigger_rows": trigger, "event": "check"},
                    ]
                )
            )
    return [{**entry, "n": n} for n, entry in enumerate(entries)]


def triggers_of(entries: list[dict], sample: int = 40) -> set:
    """Triggers to ask `attempts` about: a sample of those written, the last ones, none."""
    found = sorted(
        {e["trigger_rows"] for e in entries if isinstance(e.get("trigger_rows"), (int, float))}
    )
    rng = random.Random(len(entries))
    return {*rng.sample(found, min(sample, len(found))), *found[-5:], 0, 10**9}


@pytest.fixture
def no_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    """Thousands of appends in a second: what these tests check is the answers, not durability
    (the real fsyncs are tested with real processes below)."""
    monkeypatch.setattr(os, "fsync", lambda descriptor: None)


def bytes_read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every read of the ledger from now on (each goes through parse_json_lines)."""
    sizes: list[int] = []
    parse = journal.parse_json_lines

    def counted(data: bytes, name: object = "a file") -> tuple[list[dict], int]:
        sizes.append(len(data))
        return parse(data, name)

    monkeypatch.setattr(journal, "parse_json_lines", counted)
    return sizes


def longest_line(entries: list[dict]) -> int:
    return max(len(json.dumps(e, separators=(",", ":"))) + 1 for e in entries)


# -- answers -------------------------------------------------------------------------------------


def test_answers_are_the_same_across_rotations(tmp_path: Path, no_fsync, monkeypatch) -> None:
    """5,000 mixed lines through a ledger that rotates every 4 KB, a torn line in the middle: a
    reader kept open, a fresh reader and an unrotated ledger give, at every step checked, the
    answers of the old whole-file reading; the file stays under the bound, the archives at 3."""
    entries = mixed_entries(5000)
    triggers = triggers_of(entries)
    ledger = RetrainLog(tmp_path / "retrains.jsonl", rotate_bytes=SMALL)
    kept_open = RetrainLog(tmp_path / "retrains.jsonl")
    unrotated = RetrainLog(tmp_path / "whole" / "retrains.jsonl", rotate_bytes=10**12)
    (tmp_path / "whole").mkdir()
    rotations = []
    write_atomic = journal.write_atomic
    monkeypatch.setattr(journal, "write_atomic", lambda *a: (rotations.append(1), write_atomic(*a)))
    bound = SMALL + longest_line(entries)
    for n, entry in enumerate(entries, 1):
        ledger.append(entry)
        unrotated.append(entry)
        assert ledger.path.stat().st_size <= bound
        if n == 2500:  # a writer killed mid-line: never acknowledged, cut by the next append
            with ledger.path.open("ab") as handle:
                handle.write(b'{"trigger_rows": 99999, "decision": "prom')
        if n % 211 == 0 or n == len(entries):
            expected = reference_answers(entries[:n], triggers)
            assert answers(kept_open, triggers) == expected, f"kept open, after {n} lines"
            assert answers(RetrainLog(ledger.path), triggers) == expected, f"fresh, after {n}"
            assert answers(unrotated, triggers) == expected, f"unrotated, after {n} lines"
    assert len(rotations) > 150
    assert len(ledger.archives()) == 3
    assert not list(tmp_path.glob(".*.tmp"))
    first = json.loads(ledger.path.read_bytes().splitlines()[0])
    assert first["event"] == "carry"

    # What callers of entries() and decisions() get: the lines since the rotation; the
    # decisions after the last one before it, so the last is the last decision.
    since = ledger.entries()
    assert since == read_json_lines(ledger.path)[0][1:] == entries[-len(since) :]
    assert all(e.get("event") != "carry" for e in since)
    decisions = ledger.decisions()
    assert decisions[0] == first["last_decision"]
    assert decisions[-1] == reference_answers(entries, triggers)["last_decision"]
    assert decisions[1:] == [e for e in since if is_decision(e)]
    assert unrotated.decisions() == [e for e in entries if is_decision(e)]
    assert sum(ledger.decision_counts().values()) == sum(map(is_decision, entries))


def test_a_fresh_reader_reads_at_most_the_bound(tmp_path: Path, no_fsync, monkeypatch) -> None:
    entries = mixed_entries(3000, seed=11)
    ledger = RetrainLog(tmp_path / "retrains.jsonl", rotate_bytes=SMALL)
    for entry in entries:
        ledger.append(entry)
    sizes = bytes_read(monkeypatch)
    fresh = RetrainLog(ledger.path)
    fresh.last_decision(), fresh.attempts(20), fresh.streak("rejected"), fresh.decision_counts()
    assert 0 < sum(sizes) <= SMALL + longest_line(entries)
    sizes.clear()
    fresh.streak("failed")  # nothing new: nothing read
    assert sum(sizes) == 0


def test_a_file_written_before_rotation_existed_is_rotated_by_the_next_append(
    tmp_path: Path, no_fsync
) -> None:
    """The ledger of a stack upgraded with 15,000 lines: read whole once, then carried."""
    entries = mixed_entries(1500, seed=3)
    path = tmp_path / "retrains.jsonl"
    path.write_bytes(b"".join(json.dumps(e).encode() + b"\n" for e in entries[:-1]))
    ledger = RetrainLog(path, rotate_bytes=SMALL)
    ledger.append(entries[-1])
    assert path.stat().st_size < SMALL
    assert len(ledger.archives()) == 1
    assert len(read_json_lines(ledger.archives()[0])[0]) == len(entries) - 1
    triggers = triggers_of(entries)
    assert answers(RetrainLog(path), triggers) == reference_answers(entries, triggers)


# -- failures: no room, a crash at each step ------------------------------------------------------


def test_a_rotation_that_fails_leaves_the_file_and_the_appends(
    tmp_path: Path, no_fsync, monkeypatch
) -> None:
    entries = mixed_entries(400, seed=5)
    triggers = triggers_of(entries)
    ledger = RetrainLog(tmp_path / "retrains.jsonl", rotate_bytes=SMALL)
    for entry in entries[:300]:
        ledger.append(entry)
    archives = ledger.archives()

    def no_room(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal, "write_atomic", no_room)
    size = ledger.path.stat().st_size
    for entry in entries[300:350]:
        ledger.append(entry)  # each tries to rotate, fails, appends all the same
    assert ledger.path.stat().st_size > max(size, SMALL), "the same file, grown"
    assert ledger.archives() == archives, "no archive of a file that was not replaced"
    assert answers(RetrainLog(ledger.path), triggers) == reference_answers(entries[:350], triggers)

    monkeypatch.undo()
    for entry in entries[350:]:
        ledger.append(entry)
    assert ledger.path.stat().st_size < SMALL + longest_line(entries)
    assert answers(RetrainLog(ledger.path), triggers) == reference_answers(entries, triggers)


def test_a_full_disk_refuses_the_line_and_keeps_the_ledger(tmp_path: Path) -> None:
    """A real tmpfs filled to its last block while a rotation is due: each rotation fails (no
    temporary file, no archive left), the lines that fit in the file's last block are appended,
    the next one raises ENOSPC like any append and leaves no part of it; the answers are those of
    the lines acknowledged; once room is made the next append rotates."""
    from harness.storage import fill, small_filesystem

    entries = mixed_entries(120, seed=9)
    with small_filesystem(tmp_path / "small", "1m") as folder:
        ledger = RetrainLog(folder / "retrains.jsonl", rotate_bytes=SMALL)
        for entry in entries:
            ledger.append(entry)
        while ledger.path.stat().st_size < SMALL:  # a rotation due at the next append
            entries.append({"event": "check", "rows": len(entries)})
            ledger.append(entries[-1])
        archives = ledger.archives()
        filler = fill(folder)
        for n in range(10_000):
            line = {"trigger_rows": 10**6 + n, "decision": "failed", "n": n}
            before = ledger.path.read_bytes()
            try:
                ledger.append(line)
            except OSError as exc:
                refused = exc
                break
            entries.append(line)
        else:
            pytest.fail("the full disk took every line")
        assert refused.errno == errno.ENOSPC
        assert n > 0, "the file's last block had room for a line or more"
        assert ledger.path.read_bytes() == before, "no part of the refused line stays"
        assert ledger.archives() == archives
        assert not list(folder.glob(".*.tmp"))
        triggers = triggers_of(entries)
        expected = reference_answers(entries, triggers)
        assert answers(RetrainLog(ledger.path), triggers) == expected

        filler.unlink()
        entries.append(line)
        ledger.append(line)
        assert len(ledger.archives()) == 3 and ledger.archives()[-1] not in archives
        assert ledger.path.stat().st_size < SMALL
        assert answers(RetrainLog(ledger.path), triggers) == reference_answers(entries, triggers)


CRASHES = ("mid-append", "after-link", "before-replace", "after-replace")


def crash_while_appending(path: str, crash: str, entries: list[dict], progress: str) -> None:
    """In a child: append `entries`, and die (os._exit, nothing cleaned up) at `crash` during
    the first rotation after the 150th line; `progress` gets each line's number before it."""
    import types

    from ctloop import journal, util

    def die(*args, **kwargs) -> None:
        os._exit(17)

    def half_then_die(descriptor: int, data: bytes, name: object = "") -> None:
        os.write(descriptor, data[: len(data) // 2])
        os._exit(17)

    ledger = RetrainLog(Path(path), rotate_bytes=SMALL)
    done = os.open(progress, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    for n, entry in enumerate(entries):
        if n == 150:
            if crash == "mid-append":
                util.write_all = half_then_die
            elif crash == "after-link":
                journal.write_atomic = die
            elif crash == "before-replace":
                util.os = types.SimpleNamespace(**{**vars(os), "replace": die})  # type: ignore
            else:
                journal.Journal._remove_old_archives = die
        os.write(done, f"{n}\n".encode())
        ledger.append(entry)
    os._exit(3)  # the crash was expected before the end


def test_a_crash_at_any_step_leaves_the_same_answers(tmp_path: Path) -> None:
    """A trainer killed in the middle of a line, after the archive link, before the rename (the
    new file written), after the rename (archives not pruned): a fresh reader and a reader kept
    open give the answers of the lines acknowledged; appending again (the line retried) cleans
    what was left and answers for every line."""
    entries = mixed_entries(400, seed=13)
    triggers = triggers_of(entries)
    context = multiprocessing.get_context("spawn")
    children = {}
    for crash in CRASHES:
        folder = tmp_path / crash
        folder.mkdir()
        RetrainLog(folder / "retrains.jsonl").append(entries[0])
        args = (str(folder / "retrains.jsonl"), crash, entries[1:], str(folder / "progress"))
        children[crash] = context.Process(target=crash_while_appending, args=args)
        children[crash].start()
    for crash, child in children.items():
        child.join(timeout=60)
        assert child.exitcode == 17, f"{crash}: the child did not die where it was meant to"
        folder = tmp_path / crash
        died_at = 1 + int((folder / "progress").read_text().split()[-1])  # in entries
        path = folder / "retrains.jsonl"
        left = {p.name for p in folder.iterdir()}
        expected = reference_answers(entries[:died_at], triggers)
        assert answers(RetrainLog(path), triggers) == expected, crash
        if crash == "before-replace":
            assert any(name.endswith(".tmp") for name in left), "the new file was left"
        if crash == "after-replace":
            assert len(RetrainLog(path).archives()) == 4, "one archive too many was left"

        ledger = RetrainLog(path, rotate_bytes=SMALL)
        for entry in entries[died_at:]:
            ledger.append(entry)
        assert answers(RetrainLog(path), triggers) == reference_answers(entries, triggers), crash
        assert not list(folder.glob(".*.tmp")), crash
        assert len(ledger.archives()) == 3, crash


# -- several processes ---------------------------------------------------------------------------


def append_many(path: str, writer: int, count: int, start) -> None:
    ledger = RetrainLog(Path(path), rotate_bytes=2048, keep_archives=10**6)
    start.wait(timeout=60)  # every writer at once
    for n in range(count):
        decision = DECISIONS[(writer + n) % len(DECISIONS)]
        ledger.append(
            {"trigger_rows": 1000 * writer + n, "decision": decision, "w": writer, "n": n}
        )
        if n % 3 == 0:
            ledger.append({"trigger_rows": 1000 * writer + n + 1, "event": "attempt", "w": writer})
        time.sleep(0.002)  # the lock polls: a writer that never pauses keeps it to itself


def test_appenders_in_several_processes_lose_nothing_across_rotations(tmp_path: Path) -> None:
    """Four processes append 120 decisions each (and attempts) while the file rotates every
    2 KB and a reader follows: every line is in exactly one file (archives kept), the carried
    counts count every decision, and the reader's count never goes back."""
    path = tmp_path / "retrains.jsonl"
    writers, count = 4, 120
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(writers)
    children = [
        context.Process(target=append_many, args=(str(path), w, count, start))
        for w in range(writers)
    ]
    for child in children:
        child.start()
    reader, seen = RetrainLog(path), [0]
    while any(child.is_alive() for child in children):
        seen.append(sum(reader.decision_counts().values()))
        time.sleep(0.002)
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    seen.append(sum(reader.decision_counts().values()))
    assert seen == sorted(seen), "a reader's count went back"
    assert seen[-1] == writers * count

    ledger = RetrainLog(path)
    assert len(ledger.archives()) > 10, "it rotated while they appended"
    lines = [e for f in [*ledger.archives(), path] for e in read_json_lines(f)[0]]
    decisions = [(e["w"], e["n"]) for e in lines if "decision" in e]
    switches = sum(a[0] != b[0] for a, b in itertools.pairwise(decisions))
    assert switches > 2 * writers, "the writers ran at the same time"
    assert sorted(decisions) == [(w, n) for w in range(writers) for n in range(count)]
    expected = Counter(DECISIONS[(w + n) % 4] for w in range(writers) for n in range(count))
    assert ledger.decision_counts() == dict(expected)
    assert all(
        ledger.attempts(1000 * w + n + 1) == 0 for w in range(writers) for n in range(0, count, 3)
    ), "every attempt was decided by the writer's next decision"
    carries = [e for e in lines if e.get("event") == "carry"]
    assert len(carries) == len(ledger.archives())  # one per rotation, the first file had none


def test_the_lock_file_sits_beside_the_ledger(tmp_path: Path) -> None:
    ledger = RetrainLog(tmp_path / "retrains.jsonl")
    ledger.append({"event": "check", "rows": 1})
    assert ledger.lock_path == tmp_path / "retrains.jsonl.lock"
    assert ledger.lock_path.exists()
    shutil.rmtree(tmp_path)
    assert RetrainLog(tmp_path / "retrains.jsonl").last_decision() is None


# -- the same ledger in PostgreSQL (DATABASE_URL) --------------------------------------------------


def postgres_ledger(url: str, rotate_rows: int = 50) -> RetrainLog:
    from ctloop.prod_db import PostgresJournal

    return RetrainLog(Path("unused.jsonl"), journal=PostgresJournal(url, rotate_rows=rotate_rows))


def test_postgresql_gives_the_same_answers_across_rotations(database_url: str) -> None:
    """1,500 mixed lines through a ledger in PostgreSQL that rotates every 50 lines: a reader
    kept open and a fresh reader give the answers of the old whole-file reading, and what the
    table keeps stays bounded."""
    import psycopg

    entries = mixed_entries(1500, seed=3)
    triggers = triggers_of(entries)
    ledger, kept_open = postgres_ledger(database_url), postgres_ledger(database_url)
    for n, entry in enumerate(entries, 1):
        ledger.append(entry)
        if n % 149 == 0 or n == len(entries):
            expected = reference_answers(entries[:n], triggers)
            assert answers(kept_open, triggers) == expected, f"kept open, after {n} lines"
            assert answers(postgres_ledger(database_url), triggers) == expected, f"fresh, {n}"
    with psycopg.connect(database_url) as connection:
        kept, carries = connection.execute(
            "SELECT count(*), count(*) FILTER (WHERE is_carry) FROM ctloop_retrain_log"
        ).fetchone()
    assert carries == 3 and kept <= 4 * 51, (kept, carries)  # 3 rotations kept, then the newest
    assert ledger.decisions()[-1] == reference_answers(entries, triggers)["last_decision"]
    assert sum(ledger.decision_counts().values()) == sum(map(is_decision, entries))


def append_to_postgres(url: str, writer: int, count: int, start) -> None:
    from ctloop.prod_db import PostgresJournal

    ledger = RetrainLog(Path("unused.jsonl"), journal=PostgresJournal(url, rotate_rows=40))
    start.wait(timeout=60)
    for n in range(count):
        decision = DECISIONS[(writer + n) % len(DECISIONS)]
        ledger.append({"trigger_rows": 1000 * writer + n, "decision": decision, "w": writer})


def test_postgresql_appenders_in_several_processes_lose_nothing(database_url: str) -> None:
    writers, count = 4, 100
    postgres_ledger(database_url).refresh()  # the table once
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(writers)
    children = [
        context.Process(target=append_to_postgres, args=(database_url, w, count, start))
        for w in range(writers)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
        assert child.exitcode == 0
    expected = Counter(DECISIONS[(w + n) % 4] for w in range(writers) for n in range(count))
    assert postgres_ledger(database_url).decision_counts() == dict(expected)
