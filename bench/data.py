"""Benchmark `datasets.data.read_data` against a plain serial loop.

    python bench/data.py [--n 3000] [--workers N] [--repeats 2]

Writes N random smooth 128x128 PNGs into a temporary folder laid out like FFHQ's
thumbnails128x128/ (00000/, 01000/, ...), then loads them as the tutorial's FFHQ run does
(centre crop 96, resize to 64x64) two ways:

- read_data(folder, (64, 64), 96): PIL decode + anti-aliased Lanczos resize in a thread pool,
  written into a preallocated uint8 array;
- the reference: imageio.imread + centre crop + skimage.transform.resize(anti_aliasing=True)
  per image, appended to a list, np.array at the end.

Each load runs in a fresh subprocess, so its memory is measured alone: peak_rss_mb is the
process's peak resident set (resource.getrusage ru_maxrss, KiB on Linux) after the load
minus its current resident set (/proc/self/status VmRSS) just before it, with every import
already done. That counts everything the load
touches (decoder buffers, thread stacks, temporaries), not only NumPy allocations; a
separate untimed run reports tracemalloc's peak (NumPy and Python allocations only) as a
cross-check. The best of `--repeats` runs is reported for speed.

Human-readable lines first, then ONE JSON line, which records the machine (CPU model, cores,
flags, TensorFlow, oneDNN: bench/common.py). No matmul ceiling here: decoding and resizing
images is not dense arithmetic, so GFLOP/s would not describe it.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as a script from anywhere: `datasets` is the repo's package
IMAGE_SIZE = (64, 64)  # (width, height)
CROP_SIZE = 96


def make_images(folder, n, seed=0):
    """n smooth random 128x128 RGB PNGs, 1000 per subfolder as in FFHQ."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(n):
        sub = os.path.join(folder, f'{i // 1000 * 1000:05d}')
        os.makedirs(sub, exist_ok=True)
        # Bicubic upsampling of 8x8 noise gives face-scale blobs; a little pixel noise makes
        # the PNGs compress like photos rather than like flat colour.
        low = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
        img = np.asarray(low.resize((128, 128), Image.Resampling.BICUBIC), dtype=np.int16)
        img = img + rng.integers(-6, 7, img.shape)
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(
            os.path.join(sub, f'{i:05d}.png'))


def baseline_load(folder):
    """The plain serial loop the tutorial would write (sorted, recursive, like read_data)."""
    import imageio.v3 as iio
    from skimage.transform import resize

    from common.images import list_images

    images = []
    for path in list_images(folder):
        im = iio.imread(path)
        h, w = im.shape[:2]
        top, left = (h - CROP_SIZE) // 2, (w - CROP_SIZE) // 2
        im = im[top:top + CROP_SIZE, left:left + CROP_SIZE]
        images.append(resize(im, (IMAGE_SIZE[1], IMAGE_SIZE[0]), anti_aliasing=True))
    return np.array(images)


def child(which, folder, workers):
    """Run one load in this (fresh) process and print its time and memory as JSON."""
    import resource

    import imageio.v3  # noqa: F401  (imports done before the 'before' reading)
    import skimage.transform  # noqa: F401
    import tqdm  # noqa: F401
    from PIL import Image  # noqa: F401

    from datasets.data import read_data

    if which == 'read_data_traced':
        # A second view of memory: tracemalloc sees NumPy's allocations (not PIL's), and
        # slows the run, so it is a separate, untimed run.
        import tracemalloc
        tracemalloc.start()
        out = read_data(folder, IMAGE_SIZE, CROP_SIZE, num_workers=workers, verbose=False)
        peak = tracemalloc.get_traced_memory()[1]
        print(json.dumps({'traced_peak_mb': peak / 2**20, 'array_mb': out.nbytes / 2**20}))
        return

    before = _current_rss_kib()
    t0 = time.perf_counter()
    if which == 'read_data':
        out = read_data(folder, IMAGE_SIZE, CROP_SIZE, num_workers=workers, verbose=False)
    else:
        out = baseline_load(folder)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({'seconds': seconds, 'n': len(out), 'shape': list(out.shape),
                      'dtype': str(out.dtype), 'array_mb': out.nbytes / 2**20,
                      'peak_rss_mb': (after - before) / 1024}))


def _current_rss_kib():
    """Resident set now (not the peak so far: imports may have peaked and freed)."""
    import resource
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # no /proc: the peak so far


def run_child(which, folder, workers):
    cmd = [sys.executable, os.path.abspath(__file__), '--_child', which, '--dir', folder]
    if workers is not None:
        cmd += ['--workers', str(workers)]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, 'PYTHONPATH': ROOT})
    if result.returncode != 0:
        sys.exit(f'{which} failed:\n{result.stderr}')
    return json.loads(result.stdout.strip().splitlines()[-1])


def quality(folder, n=200):
    """Mean and max |read_data - skimage reference| in 0..255 levels on the first n images."""
    import imageio.v3 as iio
    from skimage.transform import resize

    from common.images import list_images
    from datasets.data import read_data

    ours = read_data(folder, IMAGE_SIZE, CROP_SIZE, max_images=n, verbose=False)
    diffs = []
    for path, mine in zip(list_images(folder)[:n], ours):
        im = iio.imread(path)[16:16 + CROP_SIZE, 16:16 + CROP_SIZE]
        ref = resize(im, (IMAGE_SIZE[1], IMAGE_SIZE[0]), anti_aliasing=True,
                     preserve_range=True)
        diffs.append(np.abs(mine.astype(np.float64) - ref))
    diffs = np.stack(diffs)
    return float(diffs.mean()), float(diffs.max())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--n', type=int, default=3000, help='number of images')
    parser.add_argument('--workers', type=int, default=None,
                        help='read_data num_workers (default: os.cpu_count())')
    parser.add_argument('--repeats', type=int, default=2, help='runs of each, best kept')
    parser.add_argument('--_child', choices=['read_data', 'read_data_traced', 'baseline'], help=argparse.SUPPRESS)
    parser.add_argument('--dir', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        return child(args._child, args.dir, args.workers)

    with tempfile.TemporaryDirectory(prefix='bench_data_') as folder:
        t0 = time.perf_counter()
        make_images(folder, args.n)
        print(f'made {args.n} 128x128 PNGs in {time.perf_counter() - t0:.1f} s; '
              f'load = centre crop {CROP_SIZE}, resize to {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}; '
              f'cpus {os.cpu_count()}, read_data workers {args.workers or os.cpu_count()}')
        runs = {'read_data': [], 'baseline': []}
        for _ in range(args.repeats):  # interleaved, so a busy spell hurts both alike
            for which in runs:
                runs[which].append(run_child(which, folder, args.workers))
        ours = min(runs['read_data'], key=lambda r: r['seconds'])
        ref = min(runs['baseline'], key=lambda r: r['seconds'])
        traced = run_child('read_data_traced', folder, args.workers)
        mean_diff, max_diff = quality(folder)

    result = {
        'n': args.n,
        'read_images_per_sec': round(ours['n'] / ours['seconds'], 1),
        'baseline_images_per_sec': round(ref['n'] / ref['seconds'], 1),
        'speedup': round(ref['seconds'] / ours['seconds'], 2),
        'peak_rss_mb': round(max(r['peak_rss_mb'] for r in runs['read_data']), 1),
        'array_mb': round(ours['array_mb'], 1),
        'traced_peak_mb': round(traced['traced_peak_mb'], 1),
        'baseline_peak_rss_mb': round(max(r['peak_rss_mb'] for r in runs['baseline']), 1),
        'baseline_array_mb': round(ref['array_mb'], 1),
        'mean_abs_diff_vs_skimage': round(mean_diff, 2),
        'max_abs_diff_vs_skimage': round(max_diff, 1),
    }
    result['peak_over_array'] = round(result['peak_rss_mb'] / result['array_mb'], 3)
    from bench.common import machine_info  # after the loads: TensorFlow is not imported there
    result['machine'] = machine_info()
    print(f"read_data: {result['read_images_per_sec']} images/s, output "
          f"{ours['shape']} {ours['dtype']} = {result['array_mb']} MB, peak RSS increase "
          f"{result['peak_rss_mb']} MB ({result['peak_over_array']}x the array; target <= 1.3); "
          f"tracemalloc peak {result['traced_peak_mb']} MB")
    print(f"baseline:  {result['baseline_images_per_sec']} images/s, output "
          f"{ref['shape']} {ref['dtype']} = {result['baseline_array_mb']} MB, peak RSS "
          f"increase {result['baseline_peak_rss_mb']} MB")
    print(f"speedup {result['speedup']}x (target >= 2); read_data vs skimage resize: mean "
          f"|diff| {mean_diff:.2f}, max {max_diff:.0f} levels of 255 (Lanczos vs Gaussian "
          f"+ bilinear)")
    print(json.dumps(result))


if __name__ == '__main__':
    main()
