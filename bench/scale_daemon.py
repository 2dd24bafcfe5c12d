"""The watcher daemon as ``bench/scale_bench.py`` measures it, in a process of its own.

It runs ``watcher.app.daemon.App`` on the given config exactly as ``watcher run`` does, and
imports nothing but watcher, so its CPU and memory are the daemon's alone. Inside, it
keeps every schedule lag sample (the scheduler's own histogram observations: from the
moment a check was due to the moment a worker started it) and counts results by kind
and status. After ``--warmup`` seconds it prints ``MEASURING`` on stdout, measures for
``--measure`` seconds, stops the daemon and writes its figures as JSON to ``--out``.

    .venv/bin/python bench/scale_daemon.py watcher.yml --warmup 60 --measure 300 --out figures.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import select
import sys
import time
from array import array
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from watcher.app.daemon import App  # noqa: E402
from watcher.config.load import load_config  # noqa: E402


def memory() -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of this process, in bytes."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            name, value, _unit = line.split()
            out[name.rstrip(":")] = int(value) * 1024
    return out


def cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


class Recorder:
    """Lag samples and result counts, taken inside the daemon at almost no cost."""

    def __init__(self, app: App) -> None:
        self.recording = False
        self.lags = array("d")
        self.statuses: Counter[str] = Counter()
        self.results = 0
        self.batches = 0
        histogram = app.metrics.scheduler_lag
        observe = histogram.observe

        def observe_and_keep(value: float, *args: Any, **kwargs: Any) -> None:
            if self.recording:
                self.lags.append(value)
            observe(value, *args, **kwargs)

        histogram.observe = observe_and_keep  # type: ignore[method-assign]
        process = app.engine.process

        def process_and_count(results: Any) -> Any:
            if self.recording and results:
                self.batches += 1
                self.results += len(results)
                for r in results:
                    self.statuses[f"{r.probe} {r.status}"] += 1
            return process(results)

        app.engine.process = process_and_count  # type: ignore[method-assign]


def percentile(values: array, q: float) -> float:  # type: ignore[type-arg]
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", type=Path)
    parser.add_argument("--warmup", type=float, required=True)
    parser.add_argument("--measure", type=float, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument(
        "--linger",
        type=float,
        default=0,
        help="after measuring, print MEASURED and keep running up to this long, until a line on stdin",
    )
    parser.add_argument(
        "--tracemalloc",
        type=Path,
        help="write the biggest Python allocations here at the end (slow)",
    )
    args = parser.parse_args()
    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start(4)
    logging.basicConfig(
        filename=args.log,
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    figures: dict[str, Any] = {"rss_imported": memory()["VmRSS"]}
    t0 = time.perf_counter()
    config = load_config(args.config)
    figures["config_load_s"] = time.perf_counter() - t0
    figures["rss_config_loaded"] = memory()["VmRSS"]
    app = App(args.config, config=config)
    recorder = Recorder(app)
    t0 = time.perf_counter()
    app.start()
    figures["start_s"] = time.perf_counter() - t0
    figures["checks"] = len(app.scheduler.jobs)
    figures["rss_started"] = memory()["VmRSS"]
    rss_samples = array("d")
    try:
        time.sleep(args.warmup)
        recorder.recording = True
        print("MEASURING", flush=True)
        writes0, runs0 = app.store.writes, probe_runs(app)
        (user0, sys0), wall0 = cpu(), time.perf_counter()
        end = wall0 + args.measure
        while time.perf_counter() < end:
            rss_samples.append(memory()["VmRSS"])
            time.sleep(1.0)
        recorder.recording = False
        wall = time.perf_counter() - wall0
        user, system = cpu()
        figures.update(
            measured_s=wall,
            runs=probe_runs(app) - runs0,
            user_s=user - user0,
            sys_s=system - sys0,
            writes=app.store.writes - writes0,
            skipped=app.metrics.scheduler_skipped._value.get(),
            hard_timeouts=app.metrics.scheduler_timeouts._value.get(),
            incidents_open=app.engine.incident_counts(),
        )
        if args.linger:
            # Keep the daemon running (unmeasured) until told to stop on stdin, so the
            # bench can wait for incidents the measured window started.
            print("MEASURED", flush=True)
            ready, _, _ = select.select([sys.stdin], [], [], args.linger)
            if ready:
                sys.stdin.readline()
        if args.tracemalloc:
            snapshot = tracemalloc.take_snapshot()
            current, peak = tracemalloc.get_traced_memory()
            lines = [f"traced now {current / 2**20:.1f} MB, peak {peak / 2**20:.1f} MB"]
            lines += [str(stat) for stat in snapshot.statistics("lineno")[:40]]
            lines += ["", "by traceback:"]
            for stat in snapshot.statistics("traceback")[:12]:
                lines += [
                    f"{stat.size / 2**20:.1f} MB in {stat.count} blocks",
                    *stat.traceback.format(),
                ]
            args.tracemalloc.write_text("\n".join(lines) + "\n")
    finally:
        t0 = time.perf_counter()
        app.shutdown()
        figures["stop_s"] = time.perf_counter() - t0
    figures.update(
        lag_p50_s=percentile(recorder.lags, 0.50),
        lag_p99_s=percentile(recorder.lags, 0.99),
        lag_max_s=max(recorder.lags, default=float("nan")),
        lag_samples=len(recorder.lags),
        statuses=dict(sorted(recorder.statuses.items())),
        results=recorder.results,
        batches=recorder.batches,
        rss_median=sorted(rss_samples)[len(rss_samples) // 2] if rss_samples else 0,
        rss_peak=memory()["VmHWM"],
        pid=os.getpid(),
    )
    args.out.write_text(json.dumps(figures, indent=2))
    return 0


def probe_runs(app: App) -> float:
    total = 0.0
    for family in app.metrics.probe_runs.collect():
        total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


if __name__ == "__main__":
    raise SystemExit(main())
