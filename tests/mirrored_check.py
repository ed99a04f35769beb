"""Run by tests/test_distribute.py in its own process (logical devices must be set before
TensorFlow starts). Each mode prints one JSON line.

`mirrored_check.py N sync|nosync STEPS [ema]`: the first training steps on one device and on
`mirrored` over N logical CPU devices, same global batch and seed, batch norm synchronised
or not: the losses of both and the largest differences of the variables, in two groups:

  exact  kernels, batch-norm scales and offsets and moving variances, Adam's moments of
         them (scale-sensitive: a gradient summed instead of averaged shows here)
  noisy  the biases of layers followed by batch norm, and the moving means they feed:
         their true gradient is zero, so what reaches them is rounding noise, which Adam
         turns into steps of up to the learning rate whatever its size

`mirrored_check.py N eval`: FIDEvaluator's features and score (the real Inception network)
on one device and on N replicas.
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from tests.conftest import tiny  # noqa: E402  (TensorFlow is not imported by it)


def run(config, strategy, images, steps, save_dir):
    import keras
    from datasets.data import Dataset
    from learning.optimizer import MomentumOptimizer
    from models.nn import build_model
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = build_model(config, images.shape[1:])
        opt = MomentumOptimizer(model, Dataset(images, seed=config.seed), None, config,
                                save_dir, strategy=strategy)
    losses = []
    for _ in range(steps):
        X = opt.train_set.next_batch(config.batch_size)
        out = opt.train_step(X, None)
        losses.append([float(out["d_loss"]), float(out["g_loss"])])
    variables = model.generator.variables + model.discriminator.variables \
        + opt.optimize_G.variables + opt.optimize_D.variables \
        + (model.generator_ema.variables if model.generator_ema is not None else [])
    return losses, {f"{i}:{v.path}": np.array(v.numpy()) for i, v in enumerate(variables)}


def evaluate(config, strategy, stats_path):
    """FIDEvaluator's score and features for a fresh model under `strategy`."""
    import keras
    from learning.evaluator import FIDEvaluator
    from learning.fid import FID
    from models.nn import build_model
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = build_model(config, (16, 16, 3))
        fid = FID(dataset_stats_path=stats_path)
        # 7 samples in batches of 4: the last batch is padded to a multiple of the replicas.
        evaluator = FIDEvaluator(fid, eval_sample_size=7, batch_size_eval=4,
                                 strategy=strategy)
    score = evaluator.score(model, seed=3)
    return score, fid.feature_gen


def main_eval(config, mirrored):
    """`mirrored_check.py N eval`: the FID evaluator on one device and on N replicas."""
    import tempfile
    import warnings
    import tensorflow as tf
    from frechet.statistics import save_statistics
    rng = np.random.default_rng(0)
    features = rng.normal(size=(3000, 2048))
    stats = os.path.join(tempfile.mkdtemp(), "stats.npz")
    save_statistics(stats, features.mean(0), np.cov(features, rowvar=False), 3000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 7 samples: rank-deficient, and it says so
        one, f_one = evaluate(config.replace(strategy="default"), tf.distribute.get_strategy(),
                              stats)
        many, f_many = evaluate(config, mirrored, stats)
    print(json.dumps({"replicas": mirrored.num_replicas_in_sync, "one": one, "many": many,
                      "n_features": [len(f_one), len(f_many)],
                      "max_feature_diff": float(np.max(np.abs(f_one - f_many)))}))


def main():
    import tempfile
    from learning import distribute
    replicas, mode = int(sys.argv[1]), sys.argv[2]
    sync, steps = mode == "sync", int(sys.argv[3]) if len(sys.argv) > 3 else 0
    ema = 0.9 if len(sys.argv) > 4 and sys.argv[4] == "ema" else None
    config = tiny(eval_every=0, batch_norm_sync=sync, strategy="mirrored",
                  logical_cpu_devices=replicas, G_ema_decay=ema)
    mirrored = distribute.make_strategy(config)
    if mode == "eval":
        return main_eval(config, mirrored)
    import tensorflow as tf
    images = np.random.default_rng(0).integers(0, 256, (32, 16, 16, 3), dtype=np.uint8)
    tmp = tempfile.mkdtemp()
    one, w_one = run(config.replace(strategy="default"), tf.distribute.get_strategy(),
                     images, steps, os.path.join(tmp, "one"))
    many, w_many = run(config, mirrored, images, steps, os.path.join(tmp, "many"))
    assert w_one.keys() == w_many.keys()
    diff = {"exact": 0.0, "noisy": 0.0}
    for path, a in w_one.items():
        group = "noisy" if "bias" in path or "moving_mean" in path else "exact"
        if "iteration" in path:
            group = "exact"
        diff[group] = max(diff[group], float(np.max(np.abs(a - w_many[path]))))
    print(json.dumps({"replicas": mirrored.num_replicas_in_sync, "one": one, "many": many,
                      "max_diff_exact": diff["exact"], "max_diff_noisy": diff["noisy"],
                      "num_variables": len(w_one)}))


if __name__ == "__main__":
    main()
