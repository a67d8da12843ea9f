"""The examples in examples/ run and do what their README says (quick mode, a few seconds).

The example is imported by path (examples/ is not a package); it imports the installed
cylstm. statsmodels provides the data (CI installs it); matplotlib and tqdm are optional.
"""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def forecast_co2():
    path = EXAMPLES / "forecast_co2.py"
    spec = importlib.util.spec_from_file_location("forecast_co2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_forecast_co2_quick(forecast_co2, tmp_path, capsys):
    pytest.importorskip("statsmodels")
    plot = tmp_path / "co2.png"
    argv = ["--quick", "--seed", "0", "--no-progress"]
    with_plot = importlib.util.find_spec("matplotlib") is not None
    if with_plot:
        argv += ["--plot", str(plot)]
    result = forecast_co2.main(argv)
    printed = capsys.readouterr().out

    losses = result["train_losses"]
    assert len(losses) == 15 and all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < 0.5 * losses[0], losses      # training reduced the loss
    for key in ("test_rmse", "persistence_rmse", "seasonal_naive_rmse"):
        assert math.isfinite(result[key]) and result[key] > 0, (key, result[key])
    # Even the short run learns the seasonal cycle that persistence ignores.
    assert result["test_rmse"] < result["persistence_rmse"], result
    assert "test RMSE" in printed and "persistence" in printed
    assert f"{result['test_rmse']:.3f}" in printed
    if with_plot:
        assert plot.stat().st_size > 10_000


def test_forecast_co2_windows_line_up_with_the_months(forecast_co2):
    # Synthetic levels with a known pattern: every target must be the change into its
    # forecast month, and the split must be by time.
    levels = np.cumsum(np.random.default_rng(0).standard_normal(100)) + 300
    window = 5
    data = forecast_co2.prepare(levels, window, test_fraction=0.2)
    mean, std = data["scale"]
    test_inputs, test_targets = data["test"]
    months = data["test_months"]
    assert months[0] == 80 and months[-1] == 99 and len(test_targets) == 20
    np.testing.assert_allclose(test_targets * std + mean, levels[months] - levels[months - 1],
                               rtol=1e-5)
    # The inputs are the `window` changes just before the forecast month.
    last = test_inputs[-1, :, 0] * std + mean
    np.testing.assert_allclose(last, np.diff(levels)[-1 - window:-1], rtol=1e-5)
    train_inputs, train_targets = data["train"]
    assert len(train_targets) == 80 - window - 1 and train_inputs.shape == (74, window, 1)
    assert train_inputs.dtype == np.float32


def test_forecast_co2_gradients_match_finite_differences(forecast_co2):
    # The read-out's gradient is written by hand in the example: check it (and its hand-off
    # to the LSTM's backward) with a central difference along a random direction.
    model = forecast_co2.Forecaster(hidden=8, seed=1)
    rng = np.random.default_rng(2)
    inputs = rng.standard_normal((6, 10, 1)).astype(np.float32)
    targets = rng.standard_normal(6).astype(np.float32)
    loss, grads = model.loss_and_grads(inputs, targets)
    params = model.parameters()
    assert set(grads) == set(params)
    direction = {name: rng.standard_normal(p.shape).astype(np.float32)
                 for name, p in params.items()}
    expected = sum(float(np.sum(grads[name] * direction[name])) for name in params)

    def loss_at(scale):
        original = {name: p.copy() for name, p in params.items()}
        for name, p in params.items():
            p += scale * direction[name]
        value = float(np.mean((model.predict(inputs) - targets).astype(np.float64) ** 2))
        for name, p in params.items():
            p[...] = original[name]
        return value

    eps = 1e-2
    numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
    assert loss == pytest.approx(loss_at(0.0), rel=1e-5)
    assert numeric == pytest.approx(expected, rel=1e-2, abs=1e-4)
