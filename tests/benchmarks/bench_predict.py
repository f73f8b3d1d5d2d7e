"""Prediction throughput side by side, in one run (a script, not a test):

    python tests/benchmarks/bench_predict.py [--files N] [--kind mnist|scan] [--repeats 3]
    python tests/benchmarks/bench_predict.py --startup [--files 100]
    python tests/benchmarks/bench_predict.py --scaling 1000,10000,100000,200000

Generates its input folder (28x28 PNGs from the MNIST test images, or scan-like JPEGs of
about 200x200), then measures, several repetitions each, median reported:

1. ``batchdigits predict`` end to end (folder -> CSV), as a subprocess and in-process;
2. the idiomatic Keras baseline: ``keras.utils.image_dataset_from_directory(...,
   shuffle=False)`` + ``model.predict`` + a pandas CSV, with the seed design's
   architecture (weights do not matter for speed);
3. the naive per-image loop (``Image.open`` + ``model.predict``) on a sample of files;
4. the input limit: tf.data listing + reading + decoding alone, in parallel;
5. the compute limit: the shipped model on an in-memory batch;
6. the combined limit ``1 / (1/input + 1/compute)`` (both share the same cores).

Prints images/s for each, the ratios, peak RSS of the predict subprocess, and the cores.
The ratios are given for predict in-process (like the baselines: TensorFlow imported and
the model at hand) and as a subprocess (TensorFlow's import included).

``--idiom DIR OUT.csv`` runs only the Keras idiom on ``DIR``, as its own process, to time
it whole against ``batchdigits predict DIR -o X.csv`` (the issue-17 comparison); ``--make
DIR`` only writes a benchmark folder of ``--files`` files of ``--kind``.

``--versus-idiom DIR``: whole processes on ``DIR``, alternated, ``--repeats`` pairs:
``batchdigits predict DIR -o X.csv -q`` against ``--idiom`` as its own process; medians,
spreads and the ratio (the issue-17 table's way of measuring).

``--startup``: a whole ``predict`` process on a small folder against ``python -c "import
tensorflow"``, alternated, median of ``--repeats``. ``--scaling``: one generated folder of
the largest size, subsets hard-linked from it; per size the predict subprocess's seconds,
images/s and peak RSS. MNIST comes from ``--data``, ``$BATCHDIGITS_MNIST`` or
``../shared/mnist``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import EXE  # noqa: E402

from batchdigits.model.inference import compute_images_per_second
from batchdigits.model.network import build_model
from batchdigits.model.store import load_model
from batchdigits.run.driver import predict_folder
from batchdigits.runtime.lazy import keras, tf
from batchdigits.training.data import load_mnist

SEED_ARCHITECTURE = {"blocks": [[32, 32], [64, 64]], "dense": 128, "dropout": 0.5}


def make_folder(folder: Path, n: int, kind: str, mnist) -> None:
    from batchdigits.training.probes import scan_like

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        digit = mnist.x_test[i % len(mnist.x_test)]
        if kind == "mnist":
            Image.fromarray(digit).save(folder / f"{i:06d}.png")
        else:
            image = scan_like(digit, rng).resize((200, 200), Image.BILINEAR)
            image.save(folder / f"{i:06d}.jpg", quality=85)


def median_time(func, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_process(command: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of a command run as its own process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(command)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 3):
        raise SystemExit(f"{command[:2]} failed with exit {code}")
    return seconds, usage.ru_maxrss


def alternated(commands: list[list[str]], repeats: int) -> list[list[float]]:
    """Each command run ``repeats`` times as its own process, in turn (A B A B ...), so a
    drift in the machine's speed falls on all of them alike: wall seconds per command."""
    seconds: list[list[float]] = [[] for _ in commands]
    for _ in range(repeats):
        for command, times in zip(commands, seconds, strict=True):
            times.append(run_process(command)[0])
    return seconds


def predict_command(folder: Path, out: Path | str) -> list[str]:
    return [EXE, "predict", str(folder), "-o", str(out), "-q"]


def run_subprocess(folder: Path, out: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of ``batchdigits predict`` as its own process."""
    return run_process(predict_command(folder, out))


def startup(tmp: Path, n: int, repeats: int, mnist) -> None:
    """A whole predict process on ``n`` files vs importing TensorFlow, alternated."""
    folder = tmp / "small"
    make_folder(folder, n, "mnist", mnist)
    import_tf = [sys.executable, "-c", "import tensorflow"]
    imports, predicts = alternated([import_tf, predict_command(folder, tmp / "small.csv")], repeats)
    tf_s, ours = statistics.median(imports), statistics.median(predicts)
    print(f"{n} files, {os.cpu_count()} cores, median of {repeats}")
    print(f"  python -c 'import tensorflow'  {tf_s:6.2f} s")
    print(f"  batchdigits predict            {ours:6.2f} s   ({ours / tf_s:.2f}x the import)")


def versus_idiom(folder: Path, repeats: int) -> None:
    """Whole processes on ``folder``, alternated: ``batchdigits predict`` against the idiom."""
    with tempfile.TemporaryDirectory() as tmp:
        idiom_run = [sys.executable, __file__, "--idiom", str(folder), f"{tmp}/idiom.csv"]
        ours, idiom = alternated([predict_command(folder, f"{tmp}/ours.csv"), idiom_run], repeats)
    a, b = statistics.median(ours), statistics.median(idiom)
    print(f"{folder}: {os.cpu_count()} cores, {repeats} alternating pairs, medians (min-max)")
    print(f"  batchdigits predict  {a:6.2f} s  ({min(ours):.2f}-{max(ours):.2f})")
    print(f"  the Keras idiom      {b:6.2f} s  ({min(idiom):.2f}-{max(idiom):.2f})")
    print(f"  predict / idiom      {a / b:6.2f}x")


def scaling(tmp: Path, sizes: list[int], kind: str, mnist) -> None:
    """Seconds, images/s and peak RSS of the predict subprocess per folder size."""
    source = tmp / "all"
    make_folder(source, max(sizes), kind, mnist)
    names = sorted(os.listdir(source))
    print(f"{kind} files, {os.cpu_count()} cores, one run each")
    print(f"  {'files':>9}  {'seconds':>8}  {'images/s':>9}  {'peak RSS':>9}")
    for n in sizes:
        folder = tmp / f"n{n}"
        folder.mkdir()
        for name in names[:n]:
            os.link(source / name, folder / name)
        seconds, rss = run_subprocess(folder, tmp / f"n{n}.csv")
        print(f"  {n:>9,}  {seconds:>8.1f}  {n / seconds:>9,.0f}  {rss / 1024:>6.0f} MiB")
        shutil.rmtree(folder)


def keras_idiom(folder: Path, out: Path, model) -> None:
    import pandas as pd

    k = keras()
    ds = k.utils.image_dataset_from_directory(
        folder,
        labels=None,
        color_mode="grayscale",
        image_size=(28, 28),
        batch_size=256,
        shuffle=False,
        verbose=False,
    )
    probs = model.predict(ds, verbose=0)
    pd.DataFrame(
        {
            "path": [os.path.basename(p) for p in ds.file_paths],
            "prediction": probs.argmax(1),
            "confidence": probs.max(1),
        }
    ).to_csv(out, index=False)


def naive_loop(files: list[Path], out: Path, model) -> None:
    with open(out, "w") as f:
        f.write("path,prediction,confidence\n")
        for p in files:
            x = np.asarray(Image.open(p).convert("L").resize((28, 28)), dtype="float32")
            probs = model.predict(x[None, ..., None], verbose=0)[0]
            f.write(f"{p.name},{probs.argmax()},{probs.max():.6f}\n")


def input_limit(folder: Path) -> None:
    t = tf()
    pattern = str(folder / "*")
    ds = t.data.Dataset.list_files(pattern, shuffle=False)
    ds = ds.map(
        lambda p: t.io.decode_image(t.io.read_file(p), channels=1, expand_animations=False),
        num_parallel_calls=t.data.AUTOTUNE,
    )
    for _ in ds.ignore_errors().prefetch(t.data.AUTOTUNE):
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--kind", choices=("mnist", "scan"), default="mnist")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive-files", type=int, default=200)
    parser.add_argument("--data", default=None)
    parser.add_argument("--skip-baselines", action="store_true")
    parser.add_argument("--startup", action="store_true", help="small folder vs TF import")
    parser.add_argument("--scaling", default=None, help="comma-separated folder sizes")
    parser.add_argument("--idiom", nargs=2, metavar=("DIR", "OUT"), help="the idiom alone")
    parser.add_argument("--make", metavar="DIR", help="only write a benchmark folder")
    parser.add_argument("--versus-idiom", metavar="DIR", help="whole processes, alternated")
    args = parser.parse_args()
    if args.idiom:  # nothing else loaded: the process is the idiom's alone
        seed = build_model(**SEED_ARCHITECTURE, batch_norm=False)
        keras_idiom(Path(args.idiom[0]), Path(args.idiom[1]), seed)
        return
    if args.versus_idiom:
        versus_idiom(Path(args.versus_idiom), args.repeats)
        return
    data = args.data or os.environ.get("BATCHDIGITS_MNIST") or "../shared/mnist"
    mnist = load_mnist(data)
    n = args.files
    if args.make:
        make_folder(Path(args.make), n, args.kind, mnist)
        return
    if args.startup or args.scaling:
        with tempfile.TemporaryDirectory() as tmp:
            if args.startup:
                startup(Path(tmp), n, args.repeats, mnist)
            else:
                sizes = [int(v) for v in args.scaling.split(",")]
                scaling(Path(tmp), sizes, args.kind, mnist)
        return
    side_by_side(args, mnist)


def side_by_side(args, mnist) -> None:
    """predict (whole process and in-process), the baselines and the limits, in one run."""
    n = args.files
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        make_folder(folder, n, args.kind, mnist)
        results, rss = measure_all(folder, Path(tmp), n, args)
    print_results(results, rss, n, args)


def measure_all(folder: Path, tmp: Path, n: int, args) -> tuple[dict[str, float], float]:
    out = tmp / "out.csv"
    results: dict[str, float] = {}
    runs = [run_subprocess(folder, out) for _ in range(args.repeats)]
    results["predict, subprocess"] = n / statistics.median(r[0] for r in runs)
    rss = statistics.median(r[1] for r in runs)
    results["predict, in-process"] = n / median_time(
        lambda: predict_folder(folder, out), args.repeats
    )
    if not args.skip_baselines:
        seed = build_model(**SEED_ARCHITECTURE, batch_norm=False)
        results["Keras idiom (seed architecture)"] = n / median_time(
            lambda: keras_idiom(folder, tmp / "keras.csv", seed), args.repeats
        )
        sample = sorted(folder.iterdir())[: args.naive_files]
        results["naive per-image loop (seed arch.)"] = len(sample) / median_time(
            lambda: naive_loop(sample, tmp / "naive.csv", seed), 1
        )
    results["input limit (list+read+decode)"] = n / median_time(
        lambda: input_limit(folder), args.repeats
    )
    results["compute limit (shipped model)"] = compute_images_per_second(load_model())
    inp, comp = results["input limit (list+read+decode)"], results["compute limit (shipped model)"]
    results["combined limit"] = 1 / (1 / inp + 1 / comp)
    return results, rss


def print_results(results: dict[str, float], rss: float, n: int, args) -> None:
    print(f"{n} {args.kind} files, {os.cpu_count()} cores, median of {args.repeats}")
    for name, rate in results.items():
        print(f"  {name:38s} {rate:>10,.0f} images/s")
    for how in ("in-process", "subprocess"):
        ours = results[f"predict, {how}"]
        for name in (
            "Keras idiom (seed architecture)",
            "naive per-image loop (seed arch.)",
            "input limit (list+read+decode)",
            "combined limit",
        ):
            if name in results:
                print(f"  ours ({how}) / {name:34s} {ours / results[name]:6.2f}x")
    print(f"  peak RSS of predict (subprocess): {rss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
