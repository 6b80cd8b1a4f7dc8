"""NAB scoring on small synthetic data (no benchmark files needed)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lupus_stream.evaluation import nab
from lupus_stream.evaluation.nab import (
    REWARD_LOW_FN,
    REWARD_LOW_FP,
    STANDARD,
    FileData,
    Profile,
    evaluate,
    evaluate_profile,
    file_data,
    optimise_threshold,
    perfect_scores,
    probation_length,
    row_weights,
    score_file,
    sweep,
)

PROFILES = (STANDARD, REWARD_LOW_FP, REWARD_LOW_FN)


def _toy() -> FileData:
    """The worked example of the specification: 40 rows, P = 6, one window 20..27."""
    s = [0.1] * 40
    s[2], s[10], s[22], s[25], s[30], s[36] = 1.0, 0.9, 0.8, 0.95, 0.7, 0.6
    return file_data(s, [(20, 27)])


def _corpus() -> dict[str, FileData]:
    """Three files of 200 rows (P = 30), four windows, one file without any."""
    return {
        "catA/one.csv": file_data(np.zeros(200), [(60, 79), (140, 159)]),
        "catA/two.csv": file_data(np.zeros(200), [(100, 119)]),
        "catB/three.csv": file_data(np.zeros(200), [(50, 69)]),
        "catB/quiet.csv": file_data(np.zeros(200), []),
    }


def _with_scores(
    corpus: dict[str, FileData], make: Callable[[str, FileData], Any]
) -> dict[str, FileData]:
    return {k: file_data(make(k, d), d.windows) for k, d in corpus.items()}


# -- the worked example ------------------------------------------------------------------


def test_sigma_max_and_curve() -> None:
    sigma_max = nab.SIGMA_MAX
    assert sigma_max == pytest.approx(0.986614298151, abs=1e-12)
    assert nab.scaled_sigmoid(-0.5) == pytest.approx(0.8483, abs=1e-4)
    assert nab.scaled_sigmoid(1.0) == pytest.approx(-nab.SIGMA_MAX)
    assert nab.scaled_sigmoid(3.0) > -1.0
    assert nab.scaled_sigmoid(3.0001) == -1.0


def test_worked_example_weights() -> None:
    w = row_weights(40, [(20, 27)], STANDARD)
    expected = {
        10: -0.11,
        20: 1.0,
        22: 0.9669890878,
        25: 0.7440308953,
        27: 0.3068166860,
        28: -0.0376964398,
        30: -0.0868998713,
        36: -0.1096453264,
    }
    for i, value in expected.items():
        assert w[i] == pytest.approx(value, abs=1e-10), i


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        (
            STANDARD,
            [-1.0, 0.7440308953, 0.6340308953, 0.8569890878, 0.7700892165, 0.6604438901,
             -1.6982625480],
        ),
        (
            REWARD_LOW_FP,
            [-1.0, 0.7440308953, 0.5240308953, 0.7469890878, 0.5731893452, 0.3538986924,
             -4.3965250960],
        ),
        (
            REWARD_LOW_FN,
            [-2.0, 0.7440308953, 0.6340308953, 0.8569890878, 0.7700892165, 0.6604438901,
             -1.6982625480],
        ),
    ],
)  # fmt: skip
def test_worked_example_sweep(profile: Profile, expected: list[float]) -> None:
    points = sweep({"toy/toy.csv": _toy()}, profile)
    # s[2] = 1.0 lies in probation: it is no candidate threshold
    assert [p.threshold for p in points] == [1.1, 0.95, 0.9, 0.8, 0.7, 0.6, 0.1]
    assert [p.score for p in points] == pytest.approx(expected, abs=1e-9)
    for p in points:  # the incremental sweep agrees with direct scoring
        assert score_file(_toy(), profile, p.threshold).score == pytest.approx(p.score, abs=1e-12)
    best = optimise_threshold({"toy/toy.csv": _toy()}, profile)
    assert best.threshold == 0.8
    assert best.score == pytest.approx(expected[3], abs=1e-9)


# -- null, perfect, false positives -------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
@pytest.mark.parametrize("value", [0.0, 0.5, 1.0])
def test_constant_detector_scores_zero(profile: Profile, value: float) -> None:
    corpus = _with_scores(_corpus(), lambda k, d: np.full(d.rows, value))
    result = evaluate_profile(corpus, profile)
    assert result.threshold.threshold == nab.NO_DETECTION
    assert result.total.normalised == 0.0
    assert result.total.raw == -profile.fn * 4
    assert result.total.null == -profile.fn * 4
    assert result.total.perfect == profile.tp * 4


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_perfect_detector_scores_100(profile: Profile) -> None:
    corpus = _with_scores(_corpus(), lambda k, d: perfect_scores(d.rows, d.windows))
    result = evaluate_profile(corpus, profile)
    assert result.threshold.threshold == 1.0
    assert result.total.normalised == pytest.approx(100.0, abs=1e-12)
    assert result.total.tp == 4 and result.total.fp == 0
    for name in ("catA", "catB"):
        assert result.categories[name].normalised == pytest.approx(100.0, abs=1e-12)
    assert result.categories["catB"].windows == 1
    assert result.categories["catB"].files == 2


def test_category_without_windows_is_not_normalised() -> None:
    corpus = {"quiet/a.csv": file_data(np.zeros(100), [])}
    result = evaluate_profile(corpus, STANDARD)
    assert result.total.normalised is None
    assert result.total.raw == 0.0


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_false_positives_only_score_below_zero(profile: Profile) -> None:
    def fire_outside(key: str, d: FileData) -> np.ndarray:
        s = np.zeros(d.rows)
        s[35::10] = 1.0
        for first, last in d.windows:
            s[first : last + 1] = 0.0
        return s

    corpus = _with_scores(_corpus(), fire_outside)
    files = [score_file(d, profile, 0.5) for d in corpus.values()]
    raw = sum(f.score for f in files)
    assert sum(f.tp for f in files) == 0 and sum(f.fp for f in files) > 0
    null = -profile.fn * 4
    assert nab.normalise(raw, null, profile.tp * 4) < 0.0
    # at its optimised threshold the detector is switched off: it cannot beat the null one
    assert evaluate_profile(corpus, profile).total.normalised == 0.0


def test_random_noise_is_between_null_and_perfect() -> None:
    rng = np.random.default_rng(7)
    corpus = _with_scores(_corpus(), lambda k, d: rng.random(d.rows))
    for result in evaluate(corpus, PROFILES).values():
        assert result.total.normalised is not None
        assert 0.0 <= result.total.normalised < 100.0


# -- windows and probation ---------------------------------------------------------------


def _one(n: int, windows: list[tuple[int, int]], hits: list[int]) -> FileData:
    s = np.zeros(n)
    s[hits] = 1.0
    return file_data(s, windows)


def test_detection_on_first_row_of_window_is_worth_a_tp() -> None:
    for profile in PROFILES:
        got = score_file(_one(100, [(40, 49)], [40]), profile, 0.5)
        assert got.score == pytest.approx(profile.tp, abs=1e-15)
        assert (got.tp, got.fn, got.fp, got.detected_windows) == (1, 9, 0, 1)


def test_detection_on_last_row_of_window() -> None:
    got = score_file(_one(100, [(40, 49)], [49]), STANDARD, 0.5)
    expected = nab.scaled_sigmoid(-1 / 10) / nab.SIGMA_MAX
    assert got.score == pytest.approx(expected, abs=1e-15)
    assert 0.0 < got.score < 0.25


def test_only_the_earliest_detection_in_a_window_counts() -> None:
    alone = score_file(_one(100, [(40, 49)], [43]), STANDARD, 0.5).score
    more = score_file(_one(100, [(40, 49)], [43, 44, 48, 49]), STANDARD, 0.5)
    assert more.score == alone
    assert more.tp == 4


def test_detection_just_after_a_window() -> None:
    got = score_file(_one(100, [(40, 49)], [50]), STANDARD, 0.5)
    # y = (i - r') / (W' - 1) = 1 / 9; the window itself is missed
    expected = 0.11 * nab.scaled_sigmoid(1 / 9) - 1.0
    assert got.score == pytest.approx(expected, abs=1e-15)
    assert -1.11 < got.score < -1.0
    assert (got.tp, got.fp, got.fn) == (0, 1, 10)


def test_false_positive_far_after_a_window_costs_a_full_fp() -> None:
    # y > 3 from row 40 + 9 * 3 + 1 = 77 on
    w = row_weights(100, [(40, 49)], STANDARD)
    assert w[76] > -0.11
    assert w[77] == -0.11
    assert all(w[i] < w[i - 1] for i in range(51, 77))


def test_false_positive_before_any_window_costs_a_full_fp() -> None:
    got = score_file(_one(100, [(60, 69)], [20, 60]), STANDARD, 0.5)
    assert got.score == pytest.approx(1.0 - 0.11, abs=1e-15)


def test_probation_rows_are_not_scored() -> None:
    assert probation_length(100) == 15
    assert probation_length(40) == 6
    assert probation_length(4999) == 749
    assert probation_length(6000) == 750
    assert probation_length(100_000) == 750
    # a detection in probation is neither TP nor FP; the first scored row is 15
    got = score_file(_one(100, [(40, 49)], [3, 14]), STANDARD, 0.5)
    assert got.score == -1.0
    assert (got.tp, got.fp, got.fn, got.tn) == (0, 0, 10, 75)
    got = score_file(_one(100, [(40, 49)], [15]), STANDARD, 0.5)
    assert got.score == pytest.approx(-1.11, abs=1e-15)


def test_window_inside_probation_is_dropped_but_still_precedes() -> None:
    # the window 5..12 ends in probation (P = 15): it is no miss, yet rows after it are
    # weighted against it
    data = _one(100, [(5, 12), (60, 69)], [16, 60])
    got = score_file(data, STANDARD, 0.5)
    w16 = 0.11 * nab.scaled_sigmoid((16 - 12) / 7)
    assert got.score == pytest.approx(1.0 + w16, abs=1e-15)
    assert got.windows == 1
    assert -0.11 < w16 < 0.0
    # the perfect detector cannot reach a window that starts in probation
    result = evaluate_profile({"c/f.csv": data}, STANDARD)
    assert result.total.windows == 2
    assert result.total.null == -1.0  # only the live window can be missed


def test_window_straddling_probation_scores_its_scorable_rows() -> None:
    data = _one(100, [(10, 29)], [10, 15])
    got = score_file(data, STANDARD, 0.5)
    expected = nab.scaled_sigmoid(-(29 - 15 + 1) / 20) / nab.SIGMA_MAX
    assert got.score == pytest.approx(expected, abs=1e-15)
    assert got.tp == 1 and got.fn == 14


def test_width_one_window_followed_by_rows_is_rejected() -> None:
    with pytest.raises(ValueError, match="one row"):
        row_weights(10, [(3, 3)], STANDARD)
    assert row_weights(10, [(9, 9)], STANDARD)[9] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("scores", "windows"),
    [
        ([0.0, 2.0], []),
        ([0.0, math.nan], []),
        ([0.0] * 10, [(5, 4)]),
        ([0.0] * 10, [(5, 10)]),
        ([0.0] * 10, [(1, 4), (4, 6)]),
        ([0.0] * 10, [(6, 8), (1, 4)]),
    ],
)
def test_file_data_rejects_bad_input(scores: list[float], windows: list[tuple[int, int]]) -> None:
    with pytest.raises(ValueError):
        file_data(scores, windows)


# -- threshold optimisation ---------------------------------------------------------------


def _synthetic() -> dict[str, FileData]:
    """Two files where 0.6 catches both windows early with one cheap FP; lower thresholds
    add full-price FPs, higher ones miss a window."""
    a = np.full(200, 0.1)
    a[60] = 0.9  # window 60..79, first row
    a[120] = 0.3  # far FP at 0.3
    b = np.full(200, 0.2)
    b[103] = 0.6  # window 100..119, early
    b[150] = 0.4  # far FP at 0.4
    b[121] = 0.7  # just after the window: a cheap FP
    return {"x/a.csv": file_data(a, [(60, 79)]), "x/b.csv": file_data(b, [(100, 119)])}


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_threshold_optimisation_picks_the_best(profile: Profile) -> None:
    corpus = _synthetic()
    best = optimise_threshold(corpus, profile)
    assert best.threshold == 0.6
    # brute force over the candidates with direct per-file scoring
    candidates = sorted({1.1, *np.concatenate([d.scores[30:] for d in corpus.values()])})
    totals = {t: sum(score_file(d, profile, t).score for d in corpus.values()) for t in candidates}
    assert max(totals, key=lambda t: (totals[t], t)) == 0.6
    assert best.score == pytest.approx(totals[0.6], abs=1e-12)
    for point in sweep(corpus, profile):
        assert point.score == pytest.approx(totals[point.threshold], abs=1e-12)
    result = evaluate_profile(corpus, profile)
    assert result.threshold.threshold == 0.6
    assert result.total.raw == pytest.approx(best.score, abs=1e-12)
    assert result.total.fp == 1 and result.total.tp == 2


def test_threshold_ties_keep_the_highest() -> None:
    # 0.9 and 0.8 both catch the window at its first row; the extra hit at 0.8 is in it
    s = np.zeros(100)
    s[40], s[45] = 0.9, 0.8
    corpus = {"t/f.csv": file_data(s, [(40, 49)])}
    points = sweep(corpus, STANDARD)
    assert [p.threshold for p in points] == [1.1, 0.9, 0.8, 0.0]
    assert points[1].score == points[2].score == 1.0
    assert optimise_threshold(corpus, STANDARD).threshold == 0.9


def test_threshold_is_shared_across_files() -> None:
    # per file the best thresholds would differ (0.9 and 0.5); the corpus picks one
    a = np.zeros(100)
    a[40] = 0.9
    a[60:100:2] = 0.5  # 20 FPs at 0.5 in file a
    b = np.zeros(100)
    b[40] = 0.5
    corpus = {"c/a.csv": file_data(a, [(40, 49)]), "c/b.csv": file_data(b, [(40, 49)])}
    best = optimise_threshold(corpus, STANDARD)
    assert best.threshold == 0.9  # catching b's window (+2) costs more than 20 FPs
    assert best.score == pytest.approx(0.0, abs=1e-12)


# -- loaders -------------------------------------------------------------------------------


def test_loaders_and_window_rows(tmp_path: Path) -> None:
    profiles = {
        "standard": {
            "CostMatrix": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11, "tnWeight": 1.0}
        }
    }
    (tmp_path / "profiles.json").write_text(json.dumps(profiles))
    assert nab.load_profiles(tmp_path / "profiles.json") == {"standard": STANDARD}

    t0 = datetime(2014, 4, 1)
    stamps = [t0 + timedelta(minutes=5 * i) for i in range(50)]
    data = tmp_path / "cat" / "f.csv"
    data.parent.mkdir()
    data.write_text(
        "timestamp,value\n" + "\n".join(f"{t:%Y-%m-%d %H:%M:%S},{i}" for i, t in enumerate(stamps))
    )  # no final newline, as in some NAB files
    windows = {"cat/f.csv": [[f"{stamps[20]:%Y-%m-%d %H:%M:%S}.000000", f"{stamps[29]}.000000"]]}
    (tmp_path / "windows.json").write_text(json.dumps(windows))

    loaded = nab.load_windows(tmp_path / "windows.json")
    read = nab.read_timestamps(data)
    assert read == stamps
    assert nab.window_rows(read, loaded["cat/f.csv"]) == [(20, 29)]
    with pytest.raises(ValueError, match="does not start and end on rows"):
        nab.window_rows(read, [(stamps[1] + timedelta(seconds=1), stamps[3])])
    assert nab.category_of("cat/f.csv") == "cat"
