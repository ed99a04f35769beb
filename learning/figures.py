"""Figures of a run: sample grids, the learning curve, the training GIF (the tutorial's
pictures), as files (matplotlib's file backend: no screen needed)."""
import glob
import os
import re

import imageio.v2 as imageio
import matplotlib

matplotlib.use("Agg")  # no screen needed: figures go to files
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from common.files import write_atomic  # noqa: E402


def to_uint8(images):
    """[-1, 1] floats to [0, 255] uint8 (non-finite pixels become 0)."""
    images = np.nan_to_num(np.asarray(images, dtype=np.float32), nan=-1.0, posinf=1.0,
                           neginf=-1.0)
    return np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def image_grid(images, H, W, pad=2):
    """Tile N = H*W images (N, h, w, C) in [-1, 1] into one uint8 image, H rows by W
    columns, separated by `pad` white pixels."""
    images = to_uint8(images)
    n, h, w, c = images.shape
    if n != H * W:
        raise ValueError(f"a {H}x{W} grid needs {H * W} images, got {n}")
    grid = np.full((H * (h + pad) - pad, W * (w + pad) - pad, c), 255, np.uint8)
    for i in range(n):
        r, q = divmod(i, W)
        grid[r * (h + pad):r * (h + pad) + h, q * (w + pad):q * (w + pad) + w] = images[i]
    return grid[..., 0] if c == 1 else grid


def zoom(image, k):
    """Each pixel of a uint8 image drawn as a k x k block (nearest neighbour): bigger on a
    page, with no pixel value the model did not draw."""
    return image if k == 1 else np.repeat(np.repeat(image, k, axis=0), k, axis=1)


def save_sample_images(save_dir, name, images, H, W, scale=1):
    """Save images as an H x W grid to `save_dir/sample_image_{name}.png` when `name` is a
    step number (as the tutorial did), else to `save_dir/{name}.png`; `scale` > 1 draws
    each pixel as a scale x scale block (test.py --zoom)."""
    filename = f"sample_image_{name}.png" if isinstance(name, (int, np.integer)) else f"{name}.png"
    path = os.path.join(save_dir, filename)
    grid = zoom(image_grid(images, H, W), scale)
    # Atomic: a half-written frame would stop training.gif from being made.
    write_atomic(path, lambda f: imageio.imwrite(f, grid, format="png"))
    return path


def arithmetic_figure(images, names, result_name, path):
    """The DCGAN paper's vector-arithmetic figure (its Fig. 7), labelled: for A - B + C, a
    column per group (its three samples, then the image of their mean z, `names` above),
    the signs between them, and the result of the means' arithmetic (`result_name` above).
    `images`: vector_arithmetic's 16, in [-1, 1]."""
    pixels = to_uint8(images)
    pixels = pixels[..., 0] if pixels.shape[-1] == 1 else pixels
    cmap = "gray" if pixels.ndim == 3 else None
    fig, axes = plt.subplots(4, 7, figsize=(7.0, 4.6),
                             gridspec_kw={"width_ratios": [1, 0.35, 1, 0.35, 1, 0.35, 1]})
    for ax in axes.ravel():
        ax.axis("off")
    for g in range(3):
        for r in range(4):
            # Rows 1-3: group g's samples (vector_arithmetic's row g); row 4: their mean z.
            image = pixels[g * 4 + r] if r < 3 else pixels[12 + g]
            axes[r, 2 * g].imshow(image, cmap=cmap, vmin=0, vmax=255, interpolation="nearest")
        axes[0, 2 * g].set_title(names[g], fontsize=11)
    axes[3, 6].imshow(pixels[15], cmap=cmap, vmin=0, vmax=255, interpolation="nearest")
    axes[3, 6].set_title(result_name, fontsize=11)
    for col, sign in ((1, "−"), (3, "+"), (5, "=")):
        axes[3, col].text(0.5, 0.5, sign, fontsize=20, ha="center", va="center")
    axes[3, 0].text(-0.15, 0.5, "mean z", fontsize=9, ha="right", va="center",
                    transform=axes[3, 0].transAxes)
    fig.suptitle(f"{names[0]} − {names[1]} + {names[2]}, on the means of three z each "
                 "(the DCGAN paper's Fig. 7)", fontsize=11)
    fig.tight_layout()
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
    return path


def make_gif(frames_or_paths, path, fps=4):
    """Write an animated GIF from uint8 frames or from image files, in the order given."""
    frames = [imageio.imread(f) if isinstance(f, str) else f for f in frames_or_paths]
    # GIF frames are (H, W) or (H, W, 3): a grayscale (H, W, 1) frame loses its last axis.
    frames = [f[..., 0] if f.ndim == 3 and f.shape[-1] == 1 else f for f in frames]
    if not frames:
        return None
    write_atomic(path, lambda f: imageio.mimsave(f, frames, format="gif",
                                                 duration=1000 / fps, loop=0))
    return path


def sample_image_paths(save_dir):
    """The run's `sample_image_{step}.png` files, ordered by step."""
    paths = glob.glob(os.path.join(save_dir, "sample_image_*.png"))
    step = lambda p: int(re.search(r"sample_image_(\d+)\.png$", p).group(1))  # noqa: E731
    return sorted((p for p in paths if re.search(r"sample_image_\d+\.png$", p)), key=step)


def _plot_unit_metrics(axis, scored, metrics):
    """On a right-hand axis of `axis`, what lies in [0, 1]: the eval_metrics beyond FID of
    the evaluated epochs, and D's mean output on real and on generated images of every
    epoch, with the 1/2 that D gives both at equilibrium."""
    shown = [name for name in ("precision", "recall", "density", "coverage")
             if any(name in m for m in scored)]
    d_epochs = [m for m in metrics if m.get("D_real") is not None]
    if not shown and not d_epochs:
        return
    right = axis.twinx()
    for name, style in zip(shown, ("s--", "^--", "v:", "d:")):
        right.plot([m["epoch"] for m in scored], [m.get(name, float("nan")) for m in scored],
                   style, lw=0.8, label=name)
    if d_epochs:
        epochs = [m["epoch"] for m in d_epochs]
        right.plot(epochs, [m["D_real"] for m in d_epochs], "-", color="tab:green", lw=1,
                   label="D(x), real")
        right.plot(epochs, [m["D_fake"] for m in d_epochs], "-", color="tab:purple", lw=1,
                   label="D(G(z)), generated")
        right.axhline(0.5, color="gray", lw=0.5, ls=":")
    right.set_ylabel(" / ".join((shown + ["D's output"]) if d_epochs else shown))
    right.set_ylim(0, max(1.0, right.get_ylim()[1]))
    right.legend(loc="upper right", fontsize="small")


def plot_learning_curve(losses, metrics, save_dir):
    """Two panels, as the tutorial's figure: D and G losses per iteration above, FID per
    epoch below (and, on a right-hand axis, the eval_metrics precision, recall, density and
    coverage when the run records them, and D's mean output on real and generated images,
    D_real and D_fake). Written to learning_curve.png and .svg.

    :param losses: list of dicts with 'step', 'd_loss', 'g_loss'.
    :param metrics: list of dicts with 'epoch' and 'fid' (None where not evaluated).
    """
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7))
    if losses:
        steps = [r["step"] for r in losses]
        top.plot(steps, [r["d_loss"] for r in losses], color="tab:blue", lw=0.6,
                 label="Discriminator loss")
        top.plot(steps, [r["g_loss"] for r in losses], color="tab:red", lw=0.6,
                 label="Generator loss")
        top.legend(loc="upper right")
    top.set_xlabel("iteration")
    top.set_ylabel("loss")
    scored = [m for m in metrics if m.get("fid") is not None]
    if scored:
        epochs = [m["epoch"] for m in scored]
        bottom.plot(epochs, [m["fid"] for m in scored], "o-",
                    color="tab:red", label=f"FID ({scored[-1].get('n_samples')} samples)")
        bottom.legend(loc="upper left")
    else:
        bottom.text(0.5, 0.5, "no FID evaluated in this run (eval_every)", ha="center",
                    va="center", transform=bottom.transAxes, color="gray")
    _plot_unit_metrics(bottom, scored, metrics)
    bottom.set_xlabel("epoch")
    bottom.set_ylabel("FID")
    fig.tight_layout()
    try:
        for ext in ("png", "svg"):
            write_atomic(os.path.join(save_dir, f"learning_curve.{ext}"),
                         lambda f, ext=ext: fig.savefig(f, format=ext, dpi=100))
    finally:
        plt.close(fig)
