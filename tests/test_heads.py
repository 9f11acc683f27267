"""Linear SVM heads: fitting (liblinear and the Ray Newton solver), patch averaging, labels."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.svm import LinearSVC

from faceattr_ray.errors import BundleError, DataError
from faceattr_ray.heads import LinearHeads, fit_heads

NAMES = ["Smiling", "Male", "Eyeglasses", "Young"]


def make_data(n=400, p=3, f=16, seed=0, noise=2.0, patch_noise=0.5, bias=(0.0, 1.0, -2.0, 0.5)):
    """Features whose labels are a noisy linear function; P noisy views (patches) per image."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, f)).astype(np.float32)
    w = np.random.default_rng(100).normal(size=(len(bias), f))
    y = (z @ w.T + np.asarray(bias) + rng.normal(scale=noise, size=(n, len(bias))) > 0)
    x = z[:, None, :] + rng.normal(scale=patch_noise, size=(n, p, f)).astype(np.float32)
    return x.astype(np.float32), y.astype(np.float32)


def accuracy(heads, x, y):
    return ((heads.decision_function(x) > 0) == (y > 0.5)).mean()


def test_separable_features_are_learnt_perfectly():
    x, y = make_data(noise=0.0, patch_noise=0.05)
    xt, yt = make_data(seed=1, noise=0.0, patch_noise=0.05)
    heads = fit_heads(x, y, NAMES, C=(1.0, 10.0))
    assert accuracy(heads, xt, yt) > 0.97
    assert heads.weight.shape == (4, 16) and heads.names == NAMES


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_ray_solver_matches_linearsvc(local_ray, class_weight):
    x, y = make_data(n=500)
    y[np.random.default_rng(3).random(y.shape) < 0.1] = np.nan  # missing labels too
    xt, yt = make_data(n=1000, seed=1)
    kw = {"C": (0.01, 0.1, 1.0), "class_weight": class_weight, "seed": 0}
    ref = fit_heads(x, y, NAMES, solver="liblinear", **kw)
    ours = fit_heads(x, y, NAMES, solver="ray", rows_per_block=64, **kw)
    assert abs(accuracy(ours, xt, yt) - accuracy(ref, xt, yt)) <= 0.005
    # Same problem, same optimum: the weights themselves agree.
    np.testing.assert_allclose(ours.weight, ref.weight, atol=2e-3)
    np.testing.assert_allclose(ours.bias, ref.bias, atol=2e-3)
    assert ours.info["C"] == ref.info["C"]


def test_scores_are_the_mean_over_patches():
    x, y = make_data(n=200, p=4)
    heads = fit_heads(x, y, NAMES, C=(0.1,))
    per_patch = np.stack([heads.decision_function(x[:, i]) for i in range(4)], 1)
    np.testing.assert_allclose(heads.decision_function(x), per_patch.mean(1), atol=1e-5)
    # The torch path scores on the tensor's device and agrees.
    t = heads.decision_function(torch.from_numpy(x))
    assert isinstance(t, torch.Tensor)
    np.testing.assert_allclose(t.numpy(), per_patch.mean(1), atol=1e-4)


def test_patches_are_training_samples_like_the_paper():
    # One C, no validation: exactly LinearSVC on every patch with its image's label.
    x, y = make_data(n=150, p=2)
    heads = fit_heads(x, y, NAMES, C=(0.5,))
    svm = LinearSVC(C=0.5, dual=False).fit(x.reshape(-1, 16), np.repeat(y[:, 1], 2))
    np.testing.assert_allclose(heads.weight[1], svm.coef_[0], atol=1e-5)


def test_missing_labels_are_left_out_per_attribute():
    x, y = make_data(n=200, p=1)
    y_missing = y.copy()
    y_missing[:50, 0] = np.nan
    heads = fit_heads(x, y_missing, NAMES, C=(0.5,))
    only_known = fit_heads(x[50:], y[50:], NAMES, C=(0.5,))
    full = fit_heads(x, y, NAMES, C=(0.5,))
    np.testing.assert_allclose(heads.weight[0], only_known.weight[0], atol=1e-6)
    np.testing.assert_allclose(heads.weight[1], full.weight[1], atol=1e-6)  # others: all rows
    assert heads.info["train_positives"][0] + heads.info["train_negatives"][0] == 150


def test_one_class_attribute_gets_a_constant_head():
    x, y = make_data(n=100, p=1)
    y[:, 2] = 1.0
    with pytest.warns(UserWarning, match="Eyeglasses.*only positive"):
        heads = fit_heads(x, y, NAMES, C=(0.1, 1.0))
    assert np.all(heads.weight[2] == 0) and heads.bias[2] > 0
    assert np.all(heads.decision_function(x)[:, 2] > 0)


def test_new_attribute_set_names_celeba_lacks():
    names = ["Asian", "Flash", "Harsh_Lighting"]  # LFWA+-style attributes
    x, y = make_data(n=200, bias=(0.0, 0.5, -0.5))
    heads = fit_heads(x, y, names, C=(0.1, 1.0))
    back = LinearHeads.from_arrays(names, heads.to_arrays())
    assert back.names == names
    np.testing.assert_array_equal(back.decision_function(x), heads.decision_function(x))


def test_explicit_validation_set_chooses_c_and_is_never_fit_on():
    x, y = make_data(n=400)
    xv, yv = make_data(n=300, seed=2)
    heads = fit_heads(x, y, NAMES, C=(0.01, 1.0), val=(xv, yv))
    assert not heads.info["refit"]  # an explicit validation set never joins the final fit
    assert heads.info["validation"]["metric"] == "accuracy"
    assert set(heads.info["C"]) <= {0.01, 1.0}
    # Not refit, so the heads are the very ones scored on the validation set.
    per_attribute = ((heads.decision_function(xv) > 0) == (yv > 0.5)).mean(0)
    np.testing.assert_allclose(heads.info["validation"]["values"], per_attribute, atol=1e-9)


def test_feature_dimension_mismatch_is_a_clear_error():
    x, y = make_data(n=100)
    heads = fit_heads(x, y, NAMES, C=(1.0,))
    with pytest.raises(DataError, match="dimension 16"):
        heads.decision_function(np.zeros((3, 20), np.float32))
    with pytest.raises(DataError, match="dimension 16"):
        heads.decision_function(torch.zeros(3, 2, 20))
    with pytest.raises(DataError, match="labels"):
        fit_heads(x, y[:, :2], NAMES)
    with pytest.raises(BundleError, match="4 attributes"):
        LinearHeads.from_arrays(NAMES, {"weight": np.zeros((3, 16)), "bias": np.zeros(3)})


def test_no_warnings_on_ordinary_data():
    x, y = make_data(n=200)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_heads(x, y, NAMES, C=(0.1, 1.0), class_weight="balanced")
