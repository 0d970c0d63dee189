"""What the report's section 10 costs (pipeline.baselines, pipeline.robustness) at the full
profile's sizes, and what its parameter choices depend on, on the real Fashion-MNIST.

    .venv/bin/python benchmarks/baselines.py            # full sizes (10-20 min on 2 cores)
    .venv/bin/python benchmarks/baselines.py --quick    # a tenth of every size (1-3 min)
    .venv/bin/python benchmarks/baselines.py --show benchmarks/results/baselines.json
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/baselines.py   # section 10 on one thread

For each classical method it measures: the seconds per image of each grid value; the time of
the parameter choice (`baselines.choose`) at 1000 / 300 / 100 validation images and the values
chosen; how stable the choice is on disjoint blocks of validation images, and what a smaller
block's choice costs on test images (dB lost against the 1000-image choice); the time on the
test set (`choose_and_denoise` + `evaluate.scores`, as `baselines.run` does per method); and the
generalisation study's time per condition (`robustness.study` with a model that returns its
input, so that only section 10's own work is timed). Then section 10 as `analysis` runs it:
`baselines.run` and `robustness.study` with the best method, end to end.

The noise is the lab's: Gaussian, std 0.4, clipped to [0, 1]. Validation images are the first
training images (the lab's split takes validation from the front). --quick divides every size
by ten and also reports each time scaled back to the full size. The machine is shared, so
repeated timings report medians. Prints a table; writes benchmarks/results/baselines.json.
Nothing here runs in the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from pipeline import baselines, data, evaluate, noise, robustness

ROOT = Path(__file__).resolve().parent.parent
STD = 0.4  # the lab's noise (config.NoiseConfig.std)
SEED = 123  # the lab's seed (config.Config.seed)
# The full profile: evaluation.selection_images, the test set, evaluation.generalisation_images.
FULL = {"selection": 1000, "test": 10000, "generalisation": 2000}
CHOICE_SIZES = (1000, 300, 100)  # validation images of the choices compared
BLOCK_SIZES = (100, 200, 300, 500)  # disjoint blocks of the 1000 for the stability check
TIMING_IMAGES = 400  # images per grid value for seconds per image
REPEATS = 3  # timings repeated, median reported


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine() -> dict:
    flags = []
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                flags = [flag for flag in line.split(":", 1)[1].split() if "avx" in flag]
                break
    return {
        "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "avx_flags": flags,
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
    }


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


# --- the measurements ---


def seconds_per_value(method, noisy, repeats) -> dict[str, dict[str, float]]:
    """Median seconds per image of each grid value, the values interleaved round by round:
    `method.apply` on one thread, and `baselines.denoise` as section 10 calls it (wall time,
    with whatever threads the module uses)."""
    times = {(value, way): [] for value in method.grid for way in ("apply", "denoise")}
    for _round in range(repeats):
        for value in method.grid:
            _, seconds = timed(method.apply, noisy, value)
            times[(value, "apply")].append(seconds / len(noisy))
            _, seconds = timed(baselines.denoise, method, noisy, {"as_is": value}, None)
            times[(value, "denoise")].append(seconds / len(noisy))
    return {
        way: {str(value): statistics.median(times[(value, way)]) for value in method.grid}
        for way in ("apply", "denoise")
    }


def choices(method, val_clean, val_noisy, sizes) -> dict[str, dict]:
    """`baselines.choose` on the first n validation images: its time and the values chosen."""
    found = {}
    for size in sizes:
        chosen, seconds = timed(baselines.choose, method, val_clean[:size], val_noisy[:size], STD)
        found[str(size)] = {
            "seconds": seconds,
            "chosen": {variant: float(value) for variant, (value, _mse) in chosen.items()},
        }
    return found


def per_image_mse(method, clean, noisy, std) -> dict[tuple[str, float], np.ndarray]:
    """{(variant, value): (N,) MSE} for every grid value: the curves every choice reads."""
    mse = {}
    for value in method.grid:
        outputs = baselines.denoise(
            method, noisy, dict.fromkeys(baselines.variants(std), value), std
        )
        for variant, (images, _seconds) in outputs.items():
            mse[(variant, value)] = evaluate.per_image_mse(clean, images)
    return mse


def stability(method, val_mse, test_mse, blocks) -> dict:
    """Per variant: the value chosen on all validation images, on each disjoint block of each
    size, and what each block's choice loses on test images against the full choice (dB)."""
    found = {}
    for variant in sorted({variant for variant, _ in val_mse}):
        values = [value for name, value in val_mse if name == variant]

        def chosen(selection, variant=variant, values=values):
            means = {value: val_mse[(variant, value)][selection].mean() for value in values}
            return min(values, key=means.get)

        full = chosen(slice(None))
        test_psnr = {
            value: evaluate.psnr_of_mean_mse(test_mse[(variant, value)]) for value in values
        }
        by_size = {}
        for size in blocks:
            picks = [
                chosen(slice(start, start + size))
                for start in range(0, len(val_mse[(variant, values[0])]) - size + 1, size)
            ]
            by_size[str(size)] = {
                "chosen": [float(value) for value in picks],
                "agree": sum(value == full for value in picks) / len(picks),
                "worst_test_loss_db": max(test_psnr[full] - test_psnr[value] for value in picks),
            }
        found[variant] = {
            "chosen": float(full),
            "validation_mse": {
                str(value): float(val_mse[(variant, value)].mean()) for value in values
            },
            "test_psnr": {str(value): test_psnr[value] for value in values},
            "best_on_test": float(max(values, key=test_psnr.get)),
            "blocks": by_size,
        }
    return found


def test_set(method, val, test, divisor: int = 1) -> dict:
    """What `baselines.run` does for one method: choose on `val`, denoise `test`, score each
    variant. Times the three parts, and gives each variant's PSNR on the first 1000, 2000 and
    5000 test images beside all of them: what scoring a stated subset would change."""
    started = time.perf_counter()
    chosen = baselines.choose(method, *val, STD)
    choose_seconds = time.perf_counter() - started
    values = {variant: value for variant, (value, _mse) in chosen.items()}
    outputs, denoise_seconds = timed(baselines.denoise, method, test[1], values, STD)
    started = time.perf_counter()
    scores = {variant: evaluate.scores(test[0], images) for variant, (images, _) in outputs.items()}
    score_seconds = time.perf_counter() - started
    prefixes = {}
    for variant, (images, _seconds) in outputs.items():
        mse = evaluate.per_image_mse(test[0], images)
        prefixes[variant] = {
            str(size): evaluate.psnr_of_mean_mse(mse[:size])
            for size in (1000, 2000, 5000, len(mse))
            if size <= len(mse)
        }
    # A stated subset in `baselines.run` (scaled like every size with --quick).
    limit = getattr(method, "test_images", None)
    return {
        "run_images": len(test[0]) if limit is None else min(limit // divisor, len(test[0])),
        "choose_seconds": choose_seconds,
        "denoise_seconds": denoise_seconds,
        "score_seconds": score_seconds,
        "psnr": {variant: found["psnr_of_mean_mse"] for variant, found in scores.items()},
        "psnr_on_first": prefixes,
        "chosen": {variant: float(value) for variant, value in values.items()},
    }


def generalisation(method, val_clean, test_clean) -> dict:
    """`robustness.study` one condition at a time (identity model): seconds and choice each."""
    found = {}
    for index, condition in enumerate(robustness.CONDITIONS):
        # The study seeds each condition by its index; one condition alone is index 0, so
        # it gets the noise of the first: the cost is what is measured here, not the numbers.
        rows, seconds = timed(
            robustness.study,
            lambda images: images,
            val_clean,
            test_clean,
            method,
            SEED,
            (condition,),
        )
        (row,) = rows
        found[f"{condition[0]} {condition[1]}"] = {
            "seconds": seconds,
            "variant": row["baseline"]["variant"],
            "parameter": row["baseline"]["parameter"],
            "psnr": row["baseline"]["psnr"],
            "index": index,
        }
    return found


def generalisation_choices(method, val_clean, blocks) -> dict:
    """Per condition, the best variant's value chosen on all validation images and on disjoint
    blocks (as the study chooses: its own seeded noise, the grid, the lower MSE)."""
    found = {}
    for index, (kind, value) in enumerate(robustness.CONDITIONS):
        rng = np.random.default_rng([SEED, index])
        val_noisy = noise.degrade(val_clean, kind, value, rng)
        std = value if kind == "gaussian" else None
        mse = per_image_mse(method, val_clean, val_noisy, std)
        best = min(mse, key=lambda key: mse[key].mean())
        picks = {}
        for size in blocks:
            starts = range(0, len(val_clean) - size + 1, size)
            picks[str(size)] = [
                [variant, float(grid_value)]
                for variant, grid_value in (
                    min(mse, key=lambda key, start=start: mse[key][start : start + size].mean())
                    for start in starts
                )
            ]
        found[f"{kind} {value}"] = {"chosen": [best[0], float(best[1])], "blocks": picks}
    return found


def section_10(val, test, generalisation_images) -> dict:
    """`analysis.beyond_the_lab`'s two calls, end to end, with a model that returns its input."""
    cpu = time.process_time()
    (rows, _examples), run_seconds = timed(baselines.run, val, test, STD)
    run_cpu = time.process_time() - cpu
    method = baselines.method(baselines.best(rows)["method"])
    cpu = time.process_time()
    _, study_seconds = timed(
        robustness.study,
        lambda images: images,
        val[0],
        test[0][:generalisation_images],
        method,
        SEED,
    )
    study_cpu = time.process_time() - cpu
    return {
        "run_seconds": run_seconds,
        "study_seconds": study_seconds,
        "total_seconds": run_seconds + study_seconds,
        "run_cpu_seconds": run_cpu,
        "study_cpu_seconds": study_cpu,
        "best": method.name,
        "rows": [
            {key: row[key] for key in ("method", "variant", "value", "images", "psnr_of_mean_mse")}
            for row in rows
        ],
    }


# --- the table ---


def table(results: dict, scale: float) -> str:
    """Per method: ms per image over the grid (one thread), the choice's seconds at each size
    and the values it chose, then seconds at the full profile's sizes: the choice on 1000
    validation images, the test set as `baselines.run` scores it (all test images, or the
    method's stated subset: the time on all of them, scaled), the generalisation study if this
    method were its baseline, and their sum. Reads results of this script's earlier versions
    too (seconds per image then had no "apply" / "denoise" split and no stated subsets)."""
    lines = [
        f"{'method':13s} {'ms/image by grid value':38s} {'choice s @1000/300/100':24s} "
        f"{'images':>6s} {'test s':>7s} {'gen. s':>7s} {'total s':>8s}  "
        "chosen @1000 / 300 / 100 (as_is, corrected)"
    ]
    for name, found in results["methods"].items():
        per_image = found["seconds_per_image"]
        per_image = per_image.get("apply", per_image)
        per_value = " ".join(f"{value}:{seconds * 1e3:.2f}" for value, seconds in per_image.items())
        choice = found["choices"]
        sizes = list(choice)
        choice_seconds = "/".join(f"{choice[size]['seconds'] * scale:.1f}" for size in sizes)
        picked = " / ".join(
            ",".join(f"{value:g}" for value in choice[size]["chosen"].values()) for size in sizes
        )
        test = found["test"]
        every = results["sizes"]["test"]
        images = test.get("run_images", every)
        test_seconds = (test["denoise_seconds"] + test["score_seconds"]) * images / every * scale
        gen_seconds = (
            sum(row["seconds"] for row in found.get("generalisation", {}).values()) * scale
        )
        total = choice[sizes[0]]["seconds"] * scale + test_seconds + gen_seconds
        lines.append(
            f"{name:13s} {per_value:38s} {choice_seconds:24s} {images * scale:6d} "
            f"{test_seconds:7.1f} {gen_seconds:7.1f} {total:8.1f}  {picked}"
        )
    section = results["section_10"]
    run, study = section["run_seconds"] * scale, section["study_seconds"] * scale
    lines.append(
        f"section 10 end to end (full-size estimate): baselines.run {run:.1f} s "
        f"+ robustness.study ({section['best']}) {study:.1f} s = {run + study:.1f} s"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of every size")
    parser.add_argument(
        "--json", type=Path, default=ROOT / "benchmarks" / "results" / "baselines.json"
    )
    parser.add_argument(
        "--methods", nargs="*", default=[method.name for method in baselines.METHODS]
    )
    parser.add_argument(
        "--generalisation-methods",
        nargs="*",
        default=None,
        help="methods whose study is timed condition by condition (default: all)",
    )
    parser.add_argument(
        "--show", type=Path, help="print the table of an earlier JSON, measure nothing"
    )
    options = parser.parse_args()
    if options.show:
        earlier = json.loads(options.show.read_text())
        print(table(earlier, earlier["scale_to_full"]))
        return
    divisor = 10 if options.quick else 1
    sizes = {name: size // divisor for name, size in FULL.items()}
    choice_sizes = tuple(size // divisor for size in CHOICE_SIZES)
    blocks = tuple(size // divisor for size in BLOCK_SIZES)
    timing_images = TIMING_IMAGES // divisor

    say(f"loading Fashion-MNIST; sizes {sizes}")
    dataset = data.load(data.locate(None))
    rng = np.random.default_rng(SEED)
    val_clean = data.to_unit_float(dataset.train_images[: sizes["selection"]])  # (N, 28, 28, 1)
    val = (val_clean, noise.add_gaussian_noise(val_clean, 0.0, STD, rng))
    test_clean = data.to_unit_float(dataset.test_images[: sizes["test"]])
    test = (test_clean, noise.add_gaussian_noise(test_clean, 0.0, STD, rng))
    # Test images for the regret of a smaller choice: as many as the selection.
    regret_test = (test[0][: sizes["selection"]], test[1][: sizes["selection"]])
    generalisation_clean = test_clean[: sizes["generalisation"]]
    studied = options.generalisation_methods
    studied = options.methods if studied is None else studied

    results = {
        "machine": machine(),
        "quick": options.quick,
        "sizes": sizes,
        "scale_to_full": divisor,
        "methods": {},
    }
    for name in options.methods:
        method = baselines.method(name)
        say(f"{name}: seconds per image")
        found = {"seconds_per_image": seconds_per_value(method, val[1][:timing_images], REPEATS)}
        say(f"{name}: choices at {choice_sizes}")
        found["choices"] = choices(method, *val, choice_sizes)
        say(f"{name}: stability of the choice")
        found["stability"] = stability(
            method,
            per_image_mse(method, *val, STD),
            per_image_mse(method, *regret_test, STD),
            blocks,
        )
        say(f"{name}: test set ({sizes['test']} images)")
        found["test"] = test_set(method, val, test, divisor)
        if name in studied:
            say(f"{name}: generalisation study, condition by condition")
            found["generalisation"] = generalisation(method, val_clean, generalisation_clean)
            found["generalisation_choices"] = generalisation_choices(method, val_clean, blocks)
        results["methods"][name] = found
    say("section 10 end to end")
    results["section_10"] = section_10(val, test, sizes["generalisation"])
    results["machine"]["load_average_at_end"] = os.getloadavg()

    print(table(results, divisor))
    options.json.parent.mkdir(parents=True, exist_ok=True)
    options.json.write_text(json.dumps(results, indent=1))
    say(f"wrote {options.json}")


if __name__ == "__main__":
    main()
