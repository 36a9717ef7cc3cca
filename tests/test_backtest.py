"""`perfsentinel backtest`: causal replay, one output row per input row in input order."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from analyzer.synthetic import generate, inject_step

COLUMNS = ["timestamp", "value", "expected", "lower", "upper", "anomaly_score"]


def write_input(path: Path, timestamps: np.ndarray, values: np.ndarray) -> Path:
    stamps = pd.to_datetime(timestamps, unit="s").strftime("%Y-%m-%d %H:%M:%S")
    pd.DataFrame({"timestamp": stamps, "value": values}).to_csv(path, index=False)
    return path


def backtest(source: Path, output: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analyzer", "backtest", "--input", str(source), "--output",
                           str(output), "--refit-every", "6h", "--workers", "1", *extra],
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_backtest_is_causal_and_flags_an_injected_step(tmp_path):
    series = generate(days=10, seed=11, weekend_dip=0.0)  # 10 days: daily seasonality only
    change = series.timestamps[-1] - 86400
    inject_step(series, change, 0.6)
    source = write_input(tmp_path / "in.csv", series.timestamps, series.values)
    done = backtest(source, tmp_path / "out.csv")
    assert done.returncode == 0, done.stderr
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns[:6]) == COLUMNS and len(out) == len(series.values)
    after = series.timestamps >= change
    early = series.timestamps < series.timestamps[0] + 2 * 86400
    assert out["expected"][early].isna().all() and (out["anomaly_score"][early] == 0).all()  # warm-up
    assert (out["anomaly_score"][after][:12] > 1).all()  # the first hour of the step
    before = ~after & ~early
    assert (out["anomaly_score"][before] > 1).mean() < 0.01
    # alert: the notifications of the shipped rules (analyzer.detection.episodes): the step notifies within its
    # first hour
    assert out.columns[-1] == "alert" and set(out["alert"]) <= {0, 1}
    assert out["alert"][after][:12].any()
    assert out["alert"][before].sum() <= 1

    # changing the future must not change any earlier output
    tampered = series.values.copy()
    cut = len(tampered) - 500
    tampered[cut:] *= 3
    write_input(tmp_path / "in2.csv", series.timestamps, tampered)
    assert backtest(tmp_path / "in2.csv", tmp_path / "out2.csv").returncode == 0
    out2 = pd.read_csv(tmp_path / "out2.csv")
    pd.testing.assert_frame_equal(out.iloc[:cut], out2.iloc[:cut])


def test_folder_input_mirrors_layout_and_keeps_repeated_timestamps_in_order(tmp_path):
    series = generate(days=4, seed=12)
    timestamps = np.insert(series.timestamps, 800, series.timestamps[800])  # a repeated hour, as at DST
    values = np.insert(series.values, 800, 123.0)
    (tmp_path / "in" / "cat").mkdir(parents=True)
    write_input(tmp_path / "in" / "cat" / "a.csv", timestamps, values)
    write_input(tmp_path / "in" / "b.csv", series.timestamps, series.values)
    done = backtest(tmp_path / "in", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    out = pd.read_csv(tmp_path / "out" / "cat" / "a.csv")
    assert len(out) == len(values)
    assert out["value"].tolist() == values.tolist()
    assert out["anomaly_score"].iloc[800] > 1  # the odd repeated row is scored on its own value
    assert (tmp_path / "out" / "b.csv").exists()
