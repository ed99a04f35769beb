"""A small MNIST classifier that reads generated digits.

It says which digit a conditional model drew when asked for one (`class_accuracy`), and
labels samples for the latent-space figures. A network trained on real digits is how the
field reads generated ones (TF-GAN's MNIST metrics rest on one); a nearest neighbour in
pixel space reads too many real digits wrong to judge a generator.

    python -m learning.classifier train [--data-dir DIR] [--out PATH] [--epochs N]

trains it on the training split and prints its accuracy on the test split. The weights
that ship, `pretrained/classifiers/mnist.weights.h5`, come from that command with its
defaults (Fashion-MNIST's, `fashion_mnist.weights.h5`, with
`--data-dir /usr/share/datasets/fashion-mnist --out pretrained/classifiers/fashion_mnist.weights.h5`).
"""
import argparse
import os
import time

import numpy as np

from common.errors import UserError, exit_on_user_error

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHTS = {"mnist": os.path.join(ROOT, "pretrained", "classifiers", "mnist.weights.h5"),
           "fashion_mnist": os.path.join(ROOT, "pretrained", "classifiers",
                                         "fashion_mnist.weights.h5")}


def build_classifier(num_classes=10):
    """Four 3x3 convs (two of them stride 2) with batch norm, global average pooling and
    one dense layer: about 66,000 weights for 28x28x1 images in [-1, 1]."""
    import keras
    from keras import layers
    x_in = keras.Input((28, 28, 1), name="x")
    x = x_in
    for i, (filters, stride) in enumerate([(32, 1), (32, 2), (64, 1), (64, 2)]):
        x = layers.Conv2D(filters, 3, stride, padding="same", use_bias=False,
                          name=f"conv_{i + 1}")(x)
        x = layers.BatchNormalization(name=f"bn_{i + 1}")(x)
        x = layers.ReLU(name=f"relu_{i + 1}")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    logits = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(x_in, logits, name="mnist_classifier")


def to_input(images):
    """uint8 [0, 255] or float [-1, 1] images (N, 28, 28[, 1]) -> float32 [-1, 1] (N, 28, 28, 1)."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 127.5 - 1.0
    images = images.astype(np.float32)
    return images[..., None] if images.ndim == 3 else images


def load_classifier(path=None, dataset="mnist"):
    """The trained classifier: `path`, or the one that ships for `dataset`."""
    path = path or WEIGHTS[dataset]
    if not os.path.isfile(path):
        raise UserError(f"classifier weights '{path}' not found: train them with "
                        "`python -m learning.classifier train`")
    model = build_classifier()
    model.load_weights(path)
    return model


def probabilities(classifier, images, batch_size=500):
    """The classifier's class probabilities for each image, (N, num_classes)."""
    import tensorflow as tf
    x = to_input(images)
    out = [tf.nn.softmax(classifier(x[i:i + batch_size], training=False)).numpy()
           for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 10), np.float32)


def classify(classifier, images, batch_size=500):
    """The class the classifier reads in each image (int64 (N,))."""
    return np.argmax(probabilities(classifier, images, batch_size), axis=1)


def class_accuracy(model, classifier, n=1000, seed=0):
    """How often a conditional model draws the class it is asked for: `n` samples, the
    classes in turn, each read by `classifier` (trained on real digits). A G that ignores
    its labels scores chance, 1 / num_classes."""
    import tensorflow as tf
    asked = np.arange(n) % model.num_classes
    z = model.sample_z(tf.random.Generator.from_seed(seed), n).numpy()
    generated = model.generate(z, labels=asked)
    return float(np.mean(classify(classifier, generated) == asked))


def train(data_dir=None, out=None, epochs=4, batch_size=128, seed=0, verbose=True):
    """Train on the training split (small random shifts of up to 2 pixels, so that it reads
    digits that are not centred as MNIST's are), save the weights to `out`, and return the
    accuracy on the test split."""
    import keras
    import tensorflow as tf
    from datasets.data import read_mnist
    keras.utils.set_random_seed(seed)
    x_train, y_train = read_mnist(data_dir, split="train")
    x_test, y_test = read_mnist(data_dir, split="test")
    model = build_classifier()
    steps = epochs * (len(x_train) // batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, steps)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    shift = keras.layers.RandomTranslation(2 / 28, 2 / 28, fill_mode="constant",
                                           fill_value=-1.0, seed=seed)
    data = (tf.data.Dataset.from_tensor_slices((to_input(x_train), y_train))
            .shuffle(len(x_train), seed=seed).batch(batch_size, drop_remainder=True)
            .map(lambda x, y: (shift(x, training=True), y)))
    start = time.perf_counter()
    model.fit(data, epochs=epochs, shuffle=False, verbose=2 if verbose else 0)  # shuffled above
    accuracy = float(np.mean(classify(model, x_test) == y_test))
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        plain = build_classifier()            # uncompiled: the file holds no Adam state
        plain.set_weights(model.get_weights())
        plain.save_weights(out)
    if verbose:
        print(f"trained in {time.perf_counter() - start:.0f}s; test-split accuracy "
              f"{accuracy:.4f} ({len(x_test)} images); weights: {out}")
    return accuracy


@exit_on_user_error
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m learning.classifier",
                                     description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    t = commands.add_parser("train", help="train on the training split; print the test "
                                          "split's accuracy")
    t.add_argument("--data-dir", default=None,
                   help="IDX files of an MNIST-style data set (default: the installed MNIST)")
    t.add_argument("--out", default=None, help=f"weights file (default: {WEIGHTS['mnist']})")
    t.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args(argv)
    if args.epochs < 1:
        raise UserError(f"--epochs {args.epochs}: must be at least 1")
    train(args.data_dir, args.out or WEIGHTS["mnist"], epochs=args.epochs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
