"""Forecast Mauna Loa CO2 one month ahead with a cylstm LSTM trained in NumPy.

The data is the weekly CO2 record (ppm) from Mauna Loa, 1958-2001, that ships
inside statsmodels (statsmodels.datasets.co2): nothing is downloaded. We
average it to months, and train an LSTM (cylstm) with a linear read-out
(NumPy, gradient by hand) to predict next month's value from the last 24
months, with Adam and gradient clipping from cylstm.optim. The last 20% of
the months are the test set; the script reports the test RMSE next to two
naive forecasts, and can save a plot.

    python examples/forecast_co2.py                 # full run, about a minute or less
    python examples/forecast_co2.py --quick         # a few seconds, for tests
    python examples/forecast_co2.py --plot co2.png  # needs matplotlib

Needs numpy, scipy, cylstm and statsmodels (with pandas); tqdm and
matplotlib are optional.
"""
import argparse
import sys
import time

import numpy as np

import cylstm
from cylstm.optim import Adam, clip_grad_norm, parameters

WINDOW = 24        # months of history per forecast: two seasonal cycles
TEST_FRACTION = 0.2
HIDDEN = 32
BATCH = 32
MAX_GRAD_NORM = 1.0


# -- data ---------------------------------------------------------------------------------

def load_monthly_co2():
    """(dates, ppm): monthly means of the weekly Mauna Loa record, gaps interpolated."""
    from statsmodels.datasets import co2  # imported here so --help works without it

    weekly = co2.load_pandas().data["co2"]
    # 59 weeks are missing. A monthly mean skips them; the few months with no
    # data at all are filled by linear interpolation between their neighbours.
    monthly = weekly.resample("MS").mean().interpolate()
    return monthly.index, monthly.to_numpy(np.float64)


def make_windows(changes, window):
    """Inputs (N, window, 1): `window` consecutive changes; targets (N,): the next change."""
    count = len(changes) - window
    inputs = np.stack([changes[i:i + window] for i in range(count)])[:, :, None]
    targets = changes[window:]
    return inputs, targets


def prepare(levels, window, test_fraction):
    """Normalised windows of month-to-month changes, split by time into train and test.

    The level climbs about 1.5 ppm a year, so the test years lie above every
    level seen in training, where a network of saturating tanh units cannot
    reach. The month-to-month change has no trend (only the seasonal cycle), so
    the network predicts the change and the forecast is last level + change.
    """
    changes = np.diff(levels)                      # changes[k] = levels[k+1] - levels[k]
    inputs, targets = make_windows(changes, window)
    # Window n ends with changes[n + window - 1]; its target is changes[n + window],
    # which makes levels[n + window + 1]: the month being forecast.
    forecast_month = np.arange(len(targets)) + window + 1
    first_test = int(len(levels) * (1 - test_fraction))
    train = forecast_month < first_test
    # Scale with training statistics only: the test set must not leak into the model.
    mean, std = changes[:first_test - 1].mean(), changes[:first_test - 1].std()
    inputs = ((inputs - mean) / std).astype(np.float32)
    targets = ((targets - mean) / std).astype(np.float32)
    return {
        "train": (inputs[train], targets[train]),
        "test": (inputs[~train], targets[~train]),
        "test_months": forecast_month[~train],
        "scale": (mean, std),
    }


# -- model: cylstm.LSTM + a linear read-out in NumPy ---------------------------------------

class Forecaster:
    """h_T = LSTM(x)[last step];  prediction = h_T @ W.T + b  (one number per window)."""

    def __init__(self, hidden, seed):
        rng = np.random.default_rng(seed)
        self.lstm = cylstm.LSTM(1, hidden, batch_first=True, seed=rng)
        bound = 1 / np.sqrt(hidden)            # torch.nn.Linear's default init
        self.weight = rng.uniform(-bound, bound, (1, hidden)).astype(np.float32)
        self.bias = np.zeros(1, np.float32)

    def parameters(self):
        """Every trained array by name: the LSTM's own arrays plus the read-out's."""
        return {**parameters(self.lstm), "readout.weight": self.weight,
                "readout.bias": self.bias}

    def predict(self, inputs):
        output, _ = self.lstm(inputs)          # (B, T, H); the plain call needs no memory
        return (output[:, -1] @ self.weight.T + self.bias)[:, 0]

    def loss_and_grads(self, inputs, targets):
        """Mean squared error on a batch and its gradient for every parameter."""
        output, _, backward = self.lstm.forward_train(inputs)
        last = output[:, -1]                                  # (B, H)
        prediction = (last @ self.weight.T + self.bias)[:, 0]
        error = prediction - targets
        loss = float(np.mean(error ** 2))
        # Backpropagate by hand: dL/dprediction, then through the read-out...
        grad_prediction = (2 / len(targets) * error)[:, None]   # (B, 1)
        grads = {"readout.weight": grad_prediction.T @ last,     # (1, H)
                 "readout.bias": grad_prediction.sum(axis=0)}    # (1,)
        # ...and into the LSTM, whose output only matters at the last step.
        grad_output = np.zeros_like(output)
        grad_output[:, -1] = grad_prediction @ self.weight
        _, _, lstm_grads = backward(grad_output)
        grads.update(lstm_grads)
        return loss, grads


# -- training and evaluation ---------------------------------------------------------------

def progress(iterable, enabled):
    """A tqdm progress bar when tqdm is installed and wanted, else the plain iterable."""
    if enabled:
        try:
            from tqdm.auto import tqdm
            return tqdm(iterable, desc="epochs", unit="epoch", leave=False)
        except ImportError:
            pass
    return iterable


def train(model, inputs, targets, epochs, lr, seed, show_progress=True):
    """Mini-batch Adam with gradient clipping; returns the mean training loss per epoch."""
    rng = np.random.default_rng(seed)
    optimizer = Adam(model.parameters(), lr=lr)
    losses = []
    bar = progress(range(epochs), show_progress)
    for epoch in bar:
        # Cosine decay of the learning rate: big steps first, fine-tuning at the end.
        optimizer.lr = lr * 0.5 * (1 + np.cos(np.pi * epoch / epochs))
        order = rng.permutation(len(targets))   # a fresh shuffle every epoch
        batch_losses = []
        for start in range(0, len(order), BATCH):
            batch = order[start:start + BATCH]
            loss, grads = model.loss_and_grads(inputs[batch], targets[batch])
            clip_grad_norm(grads, MAX_GRAD_NORM)   # guards against rare exploding steps
            optimizer.step(grads)
            batch_losses.append(loss)
        losses.append(float(np.mean(batch_losses)))
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
    return losses


def rmse(forecast, truth):
    return float(np.sqrt(np.mean((forecast - truth) ** 2)))


def evaluate(model, data, levels):
    """Test forecasts in ppm: the model's, and two naive ones that need no training."""
    inputs, _ = data["test"]
    months = data["test_months"]
    mean, std = data["scale"]
    truth = levels[months]
    change = model.predict(inputs).astype(np.float64) * std + mean
    return truth, {
        "LSTM (cylstm)": levels[months - 1] + change,
        # "Next month equals this month".
        "persistence": levels[months - 1],
        # "This month's change equals the same month's change a year ago": a strong
        # baseline for a series whose changes are mostly the seasonal cycle.
        "seasonal naive": levels[months - 1] + (levels[months - 12] - levels[months - 13]),
    }


def save_plot(path, dates, truth, forecasts):
    """Truth and forecasts over the test months; skipped with a note without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")                    # files only, no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed; no plot written to {path}", file=sys.stderr)
        return False
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True,
                                      gridspec_kw={"height_ratios": [2, 1]})
    top.plot(dates, truth, "k-", lw=2, label="observed")
    for name in ("LSTM (cylstm)", "persistence"):
        top.plot(dates, forecasts[name], lw=1, label=f"{name}, RMSE "
                 f"{rmse(forecasts[name], truth):.3f} ppm")
    top.set_ylabel("CO2 (ppm)")
    top.set_title("Mauna Loa CO2, one-month-ahead forecasts on the test years")
    top.legend()
    for name in ("LSTM (cylstm)", "persistence"):
        bottom.plot(dates, forecasts[name] - truth, lw=1, label=name)
    bottom.axhline(0, color="k", lw=0.5)
    bottom.set_ylabel("forecast error (ppm)")
    bottom.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# -- command line --------------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs (default 150, or 15 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="a short run of a few seconds (for tests)")
    parser.add_argument("--seed", type=int, default=0, help="seeds weights and shuffling")
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam's initial learning rate")
    parser.add_argument("--plot", metavar="PATH", help="save a plot (needs matplotlib)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.epochs is None:
        args.epochs = 15 if args.quick else 150
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    return args


def main(argv=None):
    """Run the example; return the numbers it printed, as a dict."""
    args = parse_args(argv)
    started = time.perf_counter()
    dates, levels = load_monthly_co2()
    data = prepare(levels, WINDOW, TEST_FRACTION)
    train_inputs, train_targets = data["train"]
    test_months = data["test_months"]
    print(f"{len(levels)} months of Mauna Loa CO2, {dates[0]:%Y-%m} to {dates[-1]:%Y-%m}; "
          f"{len(train_targets)} training windows, {len(test_months)} test months "
          f"({dates[test_months[0]]:%Y-%m} to {dates[test_months[-1]]:%Y-%m})")

    model = Forecaster(HIDDEN, args.seed)
    losses = train(model, train_inputs, train_targets, args.epochs, args.lr, args.seed,
                   show_progress=not args.no_progress)
    print(f"trained {args.epochs} epochs: training loss (normalised MSE) "
          f"{losses[0]:.4f} -> {losses[-1]:.4f}")

    truth, forecasts = evaluate(model, data, levels)
    errors = {name: rmse(forecast, truth) for name, forecast in forecasts.items()}
    print("test RMSE, one month ahead (ppm):")
    for name, error in errors.items():
        print(f"  {name:<15} {error:.3f}")
    if args.plot:
        if save_plot(args.plot, dates[test_months], truth, forecasts):
            print(f"plot saved to {args.plot}")
    seconds = time.perf_counter() - started
    print(f"done in {seconds:.1f} s")
    return {"train_losses": losses, "test_rmse": errors["LSTM (cylstm)"],
            "persistence_rmse": errors["persistence"],
            "seasonal_naive_rmse": errors["seasonal naive"], "seconds": seconds}


if __name__ == "__main__":
    main()
