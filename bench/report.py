"""docs/benchmarks.md from the figures of one benchmark run."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

KEPT = "<!-- delivery -->"  # bench/delivery.py's block starts here: it and what follows are kept


def write_report(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.exists() else ""
    kept = "\n" + KEPT + text.split(KEPT, 1)[1] if KEPT in text else ""
    path.write_text("\n".join(lines(results)) + "\n" + kept)


def lines(results: dict) -> list[str]:
    runs = [run for run in results["runs"] if run["scenario"] != "memory"]
    at32 = {run["scenario"].split()[0]: run for run in runs if run["connections"] == 32}
    out = [
        "# Serving benchmarks",
        "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `make bench` "
        "(`bench/serving.py`), "
        "every figure from the same run. Server and load generator share the machine: wrk runs one "
        "thread, the server the rest.",
        "",
        "## Machine and versions",
        "",
        f"- {results['machine']['cpu']}, {results['machine']['cores']} cores, "
        f"{results['machine']['memory_gib']} GiB, Linux {results['machine']['kernel']}",
        "- " + ", ".join(f"{name} {value}" for name, value in results["versions"].items()),
        f"- Payload: {results['payload']}; each wrk run lasts {results['seconds']:g} s after a "
        "warm-up; the product runs as in production (`python -m serving`: uvloop, httptools, JSON "
        "request logs, Prometheus metrics).",
        "",
        "## Throughput and latency",
        "",
        "| Scenario | Connections | Requests/s | p50 ms | p95 ms | p99 ms | Errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        out.append(
            f"| {run['scenario']} | {run['connections']} | {run['rps']:,.0f} | "
            f"{run['p50_ms']:.2f} | {run['p95_ms']:.2f} | {run['p99_ms']:.2f} | {run['errors']} |"
        )
    out += targets(at32, results)
    out += ["", "## Ratios at 32 connections", ""]
    out += ratios(at32)
    out += spread(results)
    out += retrains(at32, results)
    out += feedback(results)
    out += memory(results)
    out += [
        "",
        "## Other figures",
        "",
        f"- Start to ready (`python -m serving`, 1 worker, model load and warm-up included): "
        f"{results['notes'].get('start_to_ready_s')} s.",
    ]
    out += [
        f"- {name}: {note}" for name, note in results["notes"].items() if name != "start_to_ready_s"
    ]
    out += [
        "",
        "## Command lines",
        "",
        "```",
        *sorted({run["command"].split(" http")[0] + " <url>" for run in runs}),
        "```",
    ]
    return out


def targets(at32: dict, results: dict) -> list[str]:
    """The issue's targets for this machine, each with the figure measured in this run."""

    def row(name: str, measured: str, met: bool) -> str:
        return f"| {name} | {measured} | {'met' if met else '**missed**'} |"

    product, bare = at32["1"], at32["3"]
    out = [
        "",
        "## Targets",
        "",
        "Why the missed ones are missed, what was measured and changed: "
        "[performance.md](studies/performance.md).",
        "",
        "| Target | Measured | |",
        "|---|---|---|",
        row(
            "/predict JSON, 1 worker, 32 connections: >= 4,000 req/s, p99 < 15 ms",
            f"{product['rps']:,.0f} req/s, p99 {product['p99_ms']:.1f} ms",
            product["rps"] >= 4000 and product["p99_ms"] < 15,
        ),
        row("(1) >= 0.45 x (3), the bare route", f"{product['rps'] / bare['rps']:.2f}",
            product["rps"] / bare["rps"] >= 0.45),
    ]  # fmt: skip
    if "4" in at32:
        ratio = product["rps"] / at32["4"]["rps"]
        out.append(row("(1) >= 2 x (4), the naive scikit-learn route", f"{ratio:.2f}", ratio >= 2))
    if "5" in at32:
        ratio, tail = product["rps"] / at32["5"]["rps"], product["p99_ms"] / at32["5"]["p99_ms"]
        measured = f"{ratio:.2f}, p99 ratio {tail:.2f}"
        out.append(row("(1) >= 3 x (5) BentoML, p99 <= 1/5 of BentoML's", measured,
                       ratio >= 3 and tail <= 0.2))  # fmt: skip
    if "6a" in at32 and "6b" in at32:
        ratio = at32["6b"]["p99_ms"] / at32["6a"]["p99_ms"]
        out.append(row("p99 during retrains <= 2 x p99 at rest", f"{ratio:.2f}", ratio <= 2))
    feedback = [run for run in results["runs"] if run["scenario"].startswith("7")]
    if feedback:
        slowest = min(run["rps"] for run in feedback)
        out.append(row("/feedback >= 300 durable rows/s", f"{slowest:,.0f} rows/s", slowest >= 300))
    errors = sum(run["errors"] for run in results["runs"])
    out.append(row("no error responses in any run", f"{errors} errors", errors == 0))
    growth = max(
        (after - rest)
        for entry in results.get("memory", [])
        for rest, after in zip(entry["rss_at_rest_mib"], entry["rss_after_mib"], strict=True)
    ) if results.get("memory") else 0.0  # fmt: skip
    out.append(row("worker memory stable over 10,000 requests", f"+{growth:.1f} MiB at most",
                   growth <= 5))  # fmt: skip
    return out


def ratios(at32: dict) -> list[str]:
    def ratio(a: str, b: str, field: str = "rps") -> str:
        if a not in at32 or b not in at32:
            return "n/a"
        return f"{at32[a][field] / at32[b][field]:.2f}"

    return [
        f"- (1)/(3) product / bare constant route, throughput: {ratio('1', '3')} (target >= 0.45)",
        f"- (1)/(4) product / naive scikit-learn route, throughput: {ratio('1', '4')} "
        "(target >= 2)",
        f"- (1)/(5) product / BentoML, throughput: {ratio('1', '5')} (target >= 3); "
        f"p99 (1)/(5): {ratio('1', '5', 'p99_ms')} (target <= 0.2)",
        f"- (6b)/(6a) p99 during retrains / at rest: {ratio('6b', '6a', 'p99_ms')} (target <= 2)",
    ]


def spread(results: dict) -> list[str]:
    out = ["", "## Two workers (the Compose setting): how wrk's connections were spread", ""]
    for entry in results.get("spread", []):
        counts = entry["requests_by_worker"]
        total = sum(counts.values()) or 1
        shares = ", ".join(
            f"pid {pid}: {n:,} ({n / total:.0%})" for pid, n in sorted(counts.items())
        )
        out.append(f"- {entry['connections']} connections: {shares}")
    out.append(
        "- wrk opens its connections once and keeps them; the kernel hands each to one worker, so "
        "the split is decided at connect time and can be uneven."
    )
    return out


def retrains(at32: dict, results: dict) -> list[str]:
    info = results.get("retrains")
    if not info:
        return []
    trained = [entry for entry in info["ledger"] if "seconds" in entry]  # not superseded ones
    seconds = sorted(entry["seconds"] for entry in trained)
    median = seconds[len(seconds) // 2] if seconds else float("nan")
    how = (
        "Feedback rows arrive 20 at a time (RETRAIN_EVERY=20), each batch once the trainer has "
        f"started on the last ({info['rows']} rows in all): the trainer the server launches "
        "(`ctloop retrain`, nice 10, one thread)"
        if "rows" in info  # a run before 2026-12-07 filled 600 rows first, then ran a trainer
        else "600 production rows with RETRAIN_EVERY=20: `ctloop retrain` (nice 10, one thread)"
    )
    return [
        "",
        "## /predict while retrains run back to back",
        "",
        f"- {how} works through {len(trained)} retrains "
        f"one after the other (median {median:.2f} s each), promoting and hot-swapping models "
        "while wrk runs.",
        f"- Decisions made during the {results['seconds']:g} s window: {info['during_window']}; "
        f"trainer still busy at the end of the window: {info['trainer_busy_whole_window']}.",
        f"- p99 at rest {at32['6a']['p99_ms']:.2f} ms, "
        f"during retrains {at32['6b']['p99_ms']:.2f} ms.",
    ]


def feedback(results: dict) -> list[str]:
    out = ["", "## /feedback durable appends", ""]
    for entry in results.get("feedback_rows", []):
        out.append(
            f"- {entry['connections']} connections: {entry['acknowledged']:,} rows acknowledged, "
            f"{entry['rows_added']:,} rows added to prod_data.csv"
        )
    return out


def memory(results: dict) -> list[str]:
    out = ["", "## Memory of each serving worker (resident set)", ""]
    for entry in results.get("memory", []):
        out.append(
            f"- {entry['server']}: at rest {entry['rss_at_rest_mib']} MiB, after "
            f"{entry['requests']:,} requests {entry['rss_after_mib']} MiB"
        )
    return out


def write_block(path: Path, block: list[str], begin: str, end: str) -> None:
    """`block` (which starts with `begin` and ends with `end`) in place of the one between those
    markers in `path`, or at its end; what lies outside them is kept."""
    text = path.read_text() if path.exists() else ""
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        after = rest.split(end, 1)[1]
        text = before + "\n".join(block) + after
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(block) + "\n"
    path.write_text(text)
