"""The MNIST classifier that ships (learning/classifier.py): small, and right about real
digits, so that what it reads in generated ones can be trusted."""
import os

import numpy as np
import pytest

from common.errors import UserError
from learning import classifier as clf


def test_shipped_classifier_is_small_and_reads_99_percent_of_the_test_split():
    path = clf.WEIGHTS["mnist"]
    assert os.path.getsize(path) < 1 * 2**20
    from datasets.data import read_mnist
    images, labels = read_mnist(split="test")
    model = clf.load_classifier()
    assert model.count_params() < 100_000
    accuracy = np.mean(clf.classify(model, images) == labels)
    assert accuracy >= 0.99, accuracy
    # The same digits as floats in [-1, 1] (what a generator gives) are read the same.
    as_float = images[:500].astype(np.float32) / 127.5 - 1.0
    np.testing.assert_array_equal(clf.classify(model, as_float),
                                  clf.classify(model, images[:500]))


def test_missing_weights_say_how_to_train_them(tmp_path):
    with pytest.raises(UserError, match="python -m learning.classifier train"):
        clf.load_classifier(str(tmp_path / "none.weights.h5"))
