"""What the batch's Dask cluster buys: K variants built one after the other in this process
against the same K through `pipeline.batch.run` on its default LocalCluster.

    .venv/bin/python benchmarks/batch.py                          # K=2, quick, 2 rounds
    .venv/bin/python benchmarks/batch.py --k 4 --rounds 3 --json benchmarks/results/batch.json

Each variant is the profile with its own noise.std, so no two share a notebook cache key, and
every build goes into a fresh temporary folder: each one trains (checked in run.json and
metrics.json), none reuses a model. The two ways alternate from round to round (sequential
first, then cluster first), as this machine's speed drifts between minutes. Progress and the
summary go to stderr; the JSON result to stdout, or to --json FILE. Nothing here runs in the
test suite.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline import artifacts, batch, build, config, data, environment, provenance

FIRST_STD, STD_STEP = 0.3, 0.1  # variant i trains on noise.std = 0.3 + 0.1 i
CPU_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")
LSCPU_FIELDS = ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket", "Socket(s)")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the machine ---


def memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def machine() -> dict:
    """The cores and vector units the trainings share, and how busy the machine already was."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = next(
        (
            line.split(":", 1)[1].split()
            for line in cpuinfo.splitlines()
            if line.startswith("flags")
        ),
        [],
    )
    lscpu = {}
    if shutil.which("lscpu"):
        output = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in output.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in LSCPU_FIELDS:
                lscpu[key.strip()] = value.strip()
    return {
        "cpu": environment.cpu_name(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_bytes": memory_bytes(),
        "flags": [flag for flag in CPU_FLAGS if flag in flags],
        "lscpu": lscpu,
        "load_average": os.getloadavg(),
        # A sequential build's kernel inherits these; a cluster job sets its own.
        "thread_variables": {name: os.environ.get(name) for name in batch.THREAD_VARIABLES},
        "platform": platform.platform(),
        "versions": provenance.versions(),
    }


# --- one build's record ---


def build_record(name: str, std: float, run_dir: Path) -> dict:
    """What the build itself wrote: its stages' seconds and its kernel's peak memory. A build
    that reused an earlier notebook or model measured nothing, so it stops the benchmark."""
    record = artifacts.read_json(run_dir / artifacts.RUN_RECORD)
    metrics = artifacts.read_json(run_dir / artifacts.METRICS)
    reused = (record.get("notebook") or {}).get("reused_from")
    trained = metrics.get("training", {}).get("cache", {}).get("trained")
    if record.get("status") != "finished" or reused is not None or trained is not True:
        raise SystemExit(
            f"{name}: not a fresh training (status {record.get('status')!r}, notebook reused "
            f"from {reused!r}, model trained {trained!r}) in {run_dir}"
        )
    stages = {stage: times.get("seconds") for stage, times in record["stages"].items()}
    return {
        "name": name,
        "noise_std": std,
        "build_seconds": round(sum(seconds or 0.0 for seconds in stages.values()), 3),
        "stages": stages,
        "epoch_seconds": metrics["training"].get("epoch_seconds"),
        "peak_rss_bytes": metrics.get("resources", {}).get("peak_rss_bytes"),  # the kernel's
        "worker_pid": record.get("pid"),
    }


# --- the two ways ---


def sequential(configs: dict, data_dir: Path, folder: Path) -> dict:
    """Each variant's build in this process, one after the other, as `dae-report build` would."""
    variants = []
    started = time.perf_counter()
    for name, (variant_config, std) in configs.items():
        clock = time.perf_counter()
        result = build.build(
            config=variant_config,
            out_dir=folder / name,
            data_dir=data_dir,
            handout=True,
            stream=io.StringIO(),
        )
        wall = time.perf_counter() - clock
        variants.append({**build_record(name, std, result.run_dir), "wall_seconds": wall})
        say(f"    sequential {name} (noise.std={std}): {_line(variants[-1])}")
    return {"wall_seconds": time.perf_counter() - started, "variants": variants}


def cluster(configs: dict, data_dir: Path, folder: Path) -> dict:
    """The same variants as Dask jobs on the LocalCluster `pipeline.batch.run` starts; a
    variant's wall time is when its outcome arrived, counted from the call (cluster start-up
    included, as a user waits for it)."""
    jobs = {name: (variant_config, folder / name) for name, (variant_config, _) in configs.items()}
    arrived = {}
    started = time.perf_counter()

    def done(outcome) -> None:
        arrived[outcome.name] = time.perf_counter() - started

    outcomes = batch.run(jobs, data_dir=data_dir, on_done=done)
    wall = time.perf_counter() - started
    variants = []
    for outcome in outcomes:
        if outcome.error is not None or outcome.run_dir is None:
            raise SystemExit(f"cluster {outcome.name} failed: {outcome.error}")
        std = configs[outcome.name][1]
        record = build_record(outcome.name, std, Path(outcome.run_dir))
        variants.append({**record, "wall_seconds": arrived[outcome.name]})
        say(f"    cluster    {outcome.name} (noise.std={std}): {_line(variants[-1])}")
    return {"wall_seconds": wall, "variants": variants}


def _line(variant: dict) -> str:
    peak = variant["peak_rss_bytes"]
    return (
        f"{variant['wall_seconds']:6.1f} s wall, {variant['build_seconds']:6.1f} s build, "
        f"peak {peak / 2**30 if peak else float('nan'):.2f} GiB"
    )


WAYS = {"sequential": sequential, "cluster": cluster}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=2, help="variants per round (default 2)")
    parser.add_argument("--rounds", type=int, default=2, help="A/B rounds (default 2)")
    parser.add_argument("--profile", default="quick", help="the variants' profile (default quick)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra setting for every variant, as for build (repeatable)",
    )
    parser.add_argument(
        "--data-dir", type=Path, help="Fashion-MNIST folder (default: where build finds it)"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the result here")
    arguments = parser.parse_args()
    if arguments.k < 1 or arguments.rounds < 1:
        parser.error("--k and --rounds must be at least 1")

    data_dir = data.locate(arguments.data_dir)
    stds = [round(FIRST_STD + STD_STEP * index, 3) for index in range(arguments.k)]
    configs = {
        f"v{index + 1}": (
            config.load_config(
                arguments.profile, overrides=[*arguments.overrides, f"noise.std={std}"]
            ),
            std,
        )
        for index, std in enumerate(stds)
    }
    workers, threads = batch.cluster_size(os.cpu_count() or 1, memory_bytes(), arguments.k)
    results = {
        "machine": machine(),
        "settings": {
            "k": arguments.k,
            "rounds": arguments.rounds,
            "profile": arguments.profile,
            "overrides": arguments.overrides,
            "noise_std": stds,
            "data_dir": str(data_dir),
        },
        "cluster_size": {"workers": workers, "threads_per_worker": threads},
        "rounds": [],
    }
    info = results["machine"]
    say(
        f"{info['cpu']}: {info['cores']} cores ({info['usable_cores']} usable), "
        f"{info['memory_bytes'] / 2**30:.1f} GiB, flags {' '.join(info['flags']) or 'none'}, "
        f"load {info['load_average'][0]:.2f}"
    )
    say(
        f"{arguments.k} variants of {arguments.profile} (noise.std {stds}); LocalCluster "
        f"{workers} worker(s) × {threads} thread(s); {arguments.rounds} round(s)"
    )
    for index in range(arguments.rounds):
        order = ["sequential", "cluster"] if index % 2 == 0 else ["cluster", "sequential"]
        measured = {"round": index + 1, "order": order}
        for way in order:
            folder = Path(tempfile.mkdtemp(prefix=f"dae-bench-batch-{way}-"))
            try:
                say(f"round {index + 1} {way}")
                measured[way] = WAYS[way](configs, data_dir, folder)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        measured["ratio"] = (
            measured["sequential"]["wall_seconds"] / (measured["cluster"]["wall_seconds"])
        )
        say(
            f"round {index + 1}: sequential {measured['sequential']['wall_seconds']:.1f} s, "
            f"cluster {measured['cluster']['wall_seconds']:.1f} s, "
            f"sequential/cluster {measured['ratio']:.2f}"
        )
        results["rounds"].append(measured)
    results["summary"] = summary(results["rounds"])
    results["machine"]["load_average_after"] = os.getloadavg()
    print_summary(results)
    text = json.dumps(results, indent=2)
    if arguments.json:
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        arguments.json.write_text(text + "\n")
        say(f"result: {arguments.json}")
    else:
        print(text)


def summary(rounds: list) -> dict:
    def median(way: str) -> float:
        return statistics.median(measured[way]["wall_seconds"] for measured in rounds)

    def peak(way: str) -> int | None:
        peaks = [
            variant["peak_rss_bytes"]
            for measured in rounds
            for variant in measured[way]["variants"]
            if variant["peak_rss_bytes"]
        ]
        return max(peaks, default=None)

    return {
        "median_ratio": statistics.median(measured["ratio"] for measured in rounds),
        "ratios": [measured["ratio"] for measured in rounds],
        "median_wall_seconds": {way: median(way) for way in WAYS},
        "max_peak_rss_bytes": {way: peak(way) for way in WAYS},
    }


def print_summary(results: dict) -> None:
    total = results["summary"]
    walls, peaks = total["median_wall_seconds"], total["max_peak_rss_bytes"]
    say(f"\n{'':34}{'sequential':>12}{'cluster':>12}")
    say(
        f"{'wall seconds (median of rounds)':34}{walls['sequential']:12.1f}{walls['cluster']:12.1f}"
    )
    say(
        f"{'peak kernel memory (GiB, max)':34}"
        + "".join(f"{(peaks[way] or float('nan')) / 2**30:12.2f}" for way in WAYS)
    )
    ratios = ", ".join(f"{ratio:.2f}" for ratio in total["ratios"])
    say(f"sequential/cluster: median {total['median_ratio']:.2f} (rounds: {ratios})")


if __name__ == "__main__":
    main()
