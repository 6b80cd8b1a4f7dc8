"""Loading product files: the shipped catalog, precise errors, durations, label matchers."""

from __future__ import annotations

import textwrap
import threading
from pathlib import Path

import msgspec
import pytest

from lupus_stream.durations import parse_duration
from lupus_stream.monitors import (
    AccuracySignal,
    FairnessSignal,
    FeatureSignal,
    MetricSignal,
    Monitor,
    MonitorError,
    PredictionSignal,
    SourceSignal,
    load_catalog,
    load_product,
)
from lupus_stream.monitors.matchers import compile_matcher, compile_matchers

DETECTORS = Path(__file__).parents[2] / "detectors"

HEADER = """\
product: shop
owner: team-shop
receiver: shop-oncall
monitors:
"""


def write(tmp_path: Path, body: str, name: str = "shop.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def product_file(tmp_path: Path, monitors: str, name: str = "shop.yaml") -> Path:
    return write(tmp_path, HEADER + textwrap.indent(textwrap.dedent(monitors), "  "), name)


# -- the shipped catalog ----------------------------------------------------------------


def test_shipped_catalog_loads() -> None:
    catalog = load_catalog(DETECTORS)
    assert set(catalog.products) == {
        "ad-model",
        "sticker-recommender",
        "user-attribute-estimator",
    }
    for product, file in catalog.files.items():
        assert Path(file).parent == DETECTORS
        assert load_product(file).product == product
    kinds = {m.id: (type(m.signal), m.detector_kind) for m in catalog.monitors}
    assert kinds == {
        "ad-model/hourly_impressions": (MetricSignal, "baseline"),
        "ad-model/click_log_landed": (SourceSignal, "freshness"),
        "sticker-recommender/daily_ctr": (MetricSignal, "baseline"),
        "sticker-recommender/catalog_coverage": (MetricSignal, "threshold"),
        "user-attribute-estimator/session_length_drift": (FeatureSignal, "drift"),
        "user-attribute-estimator/messages_per_day_drift": (FeatureSignal, "drift"),
        "user-attribute-estimator/prediction_drift": (PredictionSignal, "drift"),
        "user-attribute-estimator/accuracy": (AccuracySignal, "accuracy"),
        "user-attribute-estimator/fairness_gap_region": (FairnessSignal, "fairness"),
    }


def test_shipped_catalog_details() -> None:
    catalog = load_catalog(DETECTORS)
    ads = catalog.products["ad-model"]
    assert (ads.owner, ads.receiver) == ("team-ads-ranking", "ads-oncall")
    impressions = catalog.monitor("ad-model/hourly_impressions")
    assert impressions.product == "ad-model"
    assert impressions.detector_params == {"season": "1w"}
    assert impressions.alert.severity == "page"
    assert impressions.alert.for_seconds == 2 * 3600
    assert isinstance(impressions.signal, MetricSignal)
    assert impressions.signal.absent_after == "3h"
    ctr = catalog.monitor("sticker-recommender/daily_ctr")
    assert isinstance(ctr.signal, MetricSignal)
    assert ctr.signal.labels == {"surface": "sticker_panel"}
    assert ctr.alert.keep_firing_seconds == 86400
    landed = catalog.monitor("ad-model/click_log_landed")
    assert isinstance(landed.signal, SourceSignal)
    assert (landed.signal.expected_by, landed.signal.timezone) == ("06:00", "UTC")
    fairness = catalog.monitor("user-attribute-estimator/fairness_gap_region")
    assert isinstance(fairness.signal, FairnessSignal)
    assert fairness.signal.group == "region"
    with pytest.raises(KeyError):
        catalog.monitor("ad-model/no_such_monitor")


def test_minimal_monitor_gets_defaults(tmp_path: Path) -> None:
    path = product_file(
        tmp_path,
        """
        - name: latency
          signal: {kind: metric, name: latency_ms}
        """,
    )
    spec = load_product(path)
    (monitor,) = spec.monitors
    assert monitor.id == "shop/latency"
    assert monitor.detector_kind == "seasonal"
    assert monitor.detector_params == {}
    assert monitor.alert.severity == "ticket"
    assert monitor.alert.for_seconds == 0.0


def test_yml_files_are_loaded_too(tmp_path: Path) -> None:
    product_file(tmp_path, "- {name: a, signal: {kind: metric, name: a}}\n", "one.yml")
    write(tmp_path, "not a product file", "notes.txt")
    catalog = load_catalog(tmp_path)
    assert list(catalog.products) == ["shop"]


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(MonitorError, match="does not exist"):
        load_catalog(tmp_path / "nowhere")


# -- invalid product files ----------------------------------------------------------------

# (id, monitors block or a whole file, expected monitor, expected field path, words of the rule)
# A block starting with "!" is a whole file (the "!" is dropped), else it goes under HEADER.
INVALID = [
    (
        "unknown-detector-kind",
        "- name: m\n  signal: {kind: metric, name: x}\n  detector: {kind: prophet}\n",
        "m",
        "detector.kind",
        "unknown detector kind 'prophet'",
    ),
    (
        "non-string-detector-kind",
        "- name: m\n  signal: {kind: metric, name: x}\n  detector: {kind: 5}\n",
        "m",
        "detector.kind",
        "must be a string",
    ),
    (
        "detector-parameter-typo",
        "- name: m\n  signal: {kind: metric, name: x}\n  detector: {kind: robust, windw: 10}\n",
        "m",
        "detector.windw",
        "unknown field",
    ),
    (
        "detector-parameter-wrong-type",
        "- name: m\n  signal: {kind: metric, name: x}\n  detector: {kind: robust, window: many}\n",
        "m",
        "detector.window",
        "Expected `int`",
    ),
    (
        "detector-parameter-out-of-range",
        "- name: m\n  signal: {kind: metric, name: x}\n  detector: {kind: robust, window: 1}\n",
        "m",
        "detector.window",
        ">= 3",
    ),
    (
        "threshold-bounds-inverted",
        "- name: m\n  signal: {kind: metric, name: x}\n"
        "  detector: {kind: threshold, lower: 2, upper: 1}\n",
        "m",
        "detector",
        "must not exceed upper",
    ),
    (
        "drift-on-a-metric",
        "- name: m\n  signal: {kind: metric, name: x}\n  detector: {kind: drift}\n",
        "m",
        "detector.kind",
        "reads distribution input, this signal gives series",
    ),
    (
        "robust-on-a-feature",
        "- name: m\n  signal: {kind: feature, model: x, feature: f}\n  detector: {kind: robust}\n",
        "m",
        "detector.kind",
        "use one of ['drift']",
    ),
    (
        "unknown-signal-kind",
        "- name: m\n  signal: {kind: metrik, name: x}\n",
        "m",
        "signal.kind",
        "Invalid value 'metrik'",
    ),
    (
        "missing-signal-field",
        "- name: m\n  signal: {kind: feature, model: x}\n",
        "m",
        "signal.feature",
        "missing required field",
    ),
    (
        "unknown-signal-field",
        "- name: m\n  signal: {kind: metric, name: x, absent_afer: 1h}\n",
        "m",
        "signal.absent_afer",
        "unknown field",
    ),
    (
        "missing-monitor-name",
        "- signal: {kind: metric, name: x}\n",
        "#1",
        "name",
        "missing required field",
    ),
    (
        "nameless-second-monitor",
        "- name: ok\n  signal: {kind: metric, name: x}\n- signal: {kind: metrik, name: x}\n",
        "#2",
        "signal.kind",
        "Invalid value",
    ),
    (
        "invalid-monitor-name",
        "- name: 'has space'\n  signal: {kind: metric, name: x}\n",
        "has space",
        "name",
        "matching regex",
    ),
    (
        "unknown-monitor-field",
        "- name: m\n  signal: {kind: metric, name: x}\n  severity: page\n",
        "m",
        "severity",
        "unknown field",
    ),
    (
        "bad-duration-in-for",
        "- name: m\n  signal: {kind: metric, name: x}\n  alert: {for: 5 minutes}\n",
        "m",
        "alert.for",
        "invalid duration '5 minutes'",
    ),
    (
        "bad-keep-firing-for",
        "- name: m\n  signal: {kind: metric, name: x}\n  alert: {keep_firing_for: 1y}\n",
        "m",
        "alert.keep_firing_for",
        "invalid duration '1y'",
    ),
    (
        "zero-absent-after",
        "- name: m\n  signal: {kind: metric, name: x, absent_after: 0s}\n",
        "m",
        "signal.absent_after",
        "must be positive",
    ),
    (
        "zero-max-series",
        "- name: m\n  signal: {kind: metric, name: x, max_series: 0}\n",
        "m",
        "signal.max_series",
        "Expected `int` >= 1",
    ),
    (
        "forget-before-absent",
        "- name: m\n  signal: {kind: metric, name: x, absent_after: 2d, forget_after: 1d}\n",
        "m",
        "signal.forget_after",
        "forget_after (1d) must be longer than absent_after (2d)",
    ),
    (
        "zero-forget-after",
        "- name: m\n  signal: {kind: metric, name: x, forget_after: 0h}\n",
        "m",
        "signal.forget_after",
        "forget_after must be positive",
    ),
    (
        "bad-join-within",
        "- name: m\n  signal: {kind: accuracy, model: x, join_within: soon}\n",
        "m",
        "signal.join_within",
        "invalid duration 'soon'",
    ),
    (
        "join-within-zero",
        "- name: m\n  signal: {kind: fairness, model: x, group: g, join_within: 0s}\n",
        "m",
        "signal.join_within",
        "join_within must be positive",
    ),
    (
        "baseline-season-not-a-duration",
        "- name: m\n  signal: {kind: metric, name: x}\n"
        "  detector: {kind: baseline, season: fortnightly}\n",
        "m",
        "detector.season",
        "invalid duration 'fortnightly'",
    ),
    (
        "baseline-min-seasons-above-seasons",
        "- name: m\n  signal: {kind: metric, name: x}\n"
        "  detector: {kind: baseline, seasons: 2, min_seasons: 3}\n",
        "m",
        "detector.min_seasons",
        "min_seasons must not exceed seasons",
    ),
    (
        "freshness-timezone-parameter",
        "- name: m\n  signal: {kind: source, source: s}\n"
        "  detector: {kind: freshness, timezone: Mars/Olympus}\n",
        "m",
        "detector.timezone",
        "unknown timezone 'Mars/Olympus'",
    ),
    (
        "threshold-without-bounds",
        "- name: m\n  signal: {kind: metric, name: x}\n  detector: {kind: threshold}\n",
        "m",
        "detector",
        "a threshold needs lower, upper or both",
    ),
    (
        "threshold-bound-nan",
        "- name: m\n  signal: {kind: metric, name: x}\n"
        "  detector: {kind: threshold, lower: .nan}\n",
        "m",
        "detector.lower",
        "Expected a number, got NaN",
    ),
    (
        "bad-expected-by",
        "- name: m\n  signal: {kind: source, source: s, expected_by: '24:00'}\n",
        "m",
        "signal.expected_by",
        "matching regex",
    ),
    (
        "unquoted-expected-by-is-an-int",  # YAML 1.1 reads 10:00 as 600
        "- name: m\n  signal: {kind: source, source: s, expected_by: 10:00}\n",
        "m",
        "signal.expected_by",
        "Expected `str`, got `int`",
    ),
    (
        "unknown-timezone",
        "- name: m\n  signal: {kind: source, source: s, timezone: Mars/Olympus}\n",
        "m",
        "signal.timezone",
        "unknown timezone 'Mars/Olympus'",
    ),
    (
        "timezone-is-a-tz-directory",
        "- name: m\n  signal: {kind: source, source: s, timezone: America}\n",
        "m",
        "signal.timezone",
        "unknown timezone 'America'",
    ),
    (
        "bad-label-regex",
        "- name: m\n  signal: {kind: metric, name: x, labels: {region: '=~(eu'}}\n",
        "m",
        "signal.labels.region",
        "invalid regex '(eu'",
    ),
    (
        "bad-negative-label-regex",
        "- name: m\n  signal: {kind: metric, name: x, labels: {region: '!~[a-'}}\n",
        "m",
        "signal.labels.region",
        "invalid regex '[a-'",
    ),
    (
        "label-regex-with-a-backreference",
        "- name: m\n  signal: {kind: metric, name: x, labels: {region: '=~(eu)\\1'}}\n",
        "m",
        "signal.labels.region",
        "(RE2 syntax): invalid escape sequence",
    ),
    (
        "label-regex-with-lookahead",
        "- name: m\n  signal: {kind: metric, name: x, labels: {region: '!~(?=eu)'}}\n",
        "m",
        "signal.labels.region",
        "(RE2 syntax): invalid perl operator",
    ),
    (
        "label-matcher-on-a-name-no-record-carries",
        "- name: m\n  signal: {kind: metric, name: x, labels: {'a b': eu}}\n",
        "m",
        "signal.labels",
        "invalid key: Expected `str` matching regex",
    ),
    (
        "bad-severity",
        "- name: m\n  signal: {kind: metric, name: x}\n  alert: {severity: pager}\n",
        "m",
        "alert.severity",
        "Invalid enum value 'pager'",
    ),
    (
        "bad-alert-label-key",
        "- name: m\n  signal: {kind: metric, name: x}\n  alert: {labels: {'a b': v}}\n",
        "m",
        "alert.labels",
        "invalid key",
    ),
    (
        "duplicate-monitor-names",
        "- name: m\n  signal: {kind: metric, name: x}\n"
        "- name: m\n  signal: {kind: metric, name: y}\n",
        "m",
        "name",
        "duplicate monitor name",
    ),
    (
        "monitors-not-a-list",
        "!product: shop\nowner: o\nreceiver: r\nmonitors: {name: m}\n",
        None,
        "monitors",
        "Expected `array`",
    ),
    (
        "missing-receiver",
        "!product: shop\nowner: o\nmonitors: []\n",
        None,
        "receiver",
        "missing required field",
    ),
    (
        "unknown-top-level-field",
        "!product: shop\nowner: o\nreceiver: r\nmonitors: []\nteam: x\n",
        None,
        "team",
        "unknown field `team`",
    ),
    (
        "invalid-product-name",
        "!product: 'shop/eu'\nowner: o\nreceiver: r\nmonitors: []\n",
        None,
        "product",
        "matching regex",
    ),
    ("invalid-yaml", "!product: [shop\nowner: o\n", None, None, "invalid YAML"),
    (
        "an-unhashable-key",
        "- name: a\n  signal: {kind: metric, name: x}\n  ? [x]\n  : 1\n",
        None,
        None,
        "found an unhashable key",
    ),
    (
        "a-key-twice",
        "- name: a\n  name: b\n  signal: {kind: metric, name: x}\n",
        None,
        None,
        "found the key 'name' twice",
    ),
    ("top-level-list", "!- product: shop\n", None, None, "expected a mapping"),
    ("empty-file", "!", None, None, "expected a mapping"),
]


@pytest.mark.parametrize(
    ("body", "monitor", "field", "rule"),
    [pytest.param(*case[1:], id=case[0]) for case in INVALID],
)
def test_invalid_product_file(
    tmp_path: Path, body: str, monitor: str | None, field: str | None, rule: str
) -> None:
    path = write(tmp_path, body[1:]) if body.startswith("!") else product_file(tmp_path, body)
    with pytest.raises(MonitorError) as info:
        load_product(path)
    error = info.value
    message = str(error)
    assert message.startswith(str(path)), message
    assert (error.file, error.monitor, error.field) == (str(path), monitor, field), message
    if monitor is not None:
        assert f"monitor {monitor!r}" in message
    if field is not None:
        assert f"field {field}:" in message
    assert rule in message
    # the whole catalog fails the same way
    with pytest.raises(MonitorError, match=r"shop\.yaml"):
        load_catalog(tmp_path)


def test_duplicate_product_across_files(tmp_path: Path) -> None:
    first = product_file(tmp_path, "- {name: a, signal: {kind: metric, name: a}}\n", "a.yaml")
    second = product_file(tmp_path, "- {name: b, signal: {kind: metric, name: b}}\n", "b.yaml")
    with pytest.raises(MonitorError) as info:
        load_catalog(tmp_path)
    error = info.value
    assert error.file == str(second)
    assert error.field == "product"
    assert str(first) in str(error)
    assert "product already defined" in str(error)


def test_same_monitor_name_in_two_products_is_fine(tmp_path: Path) -> None:
    product_file(tmp_path, "- {name: m, signal: {kind: metric, name: a}}\n", "a.yaml")
    write(
        tmp_path,
        "product: other\nowner: o\nreceiver: r\nmonitors:\n"
        "  - {name: m, signal: {kind: metric, name: a}}\n",
        "b.yaml",
    )
    catalog = load_catalog(tmp_path)
    assert sorted(m.id for m in catalog.monitors) == ["other/m", "shop/m"]


def test_monitor_struct_rejects_non_string_kind_outside_the_loader() -> None:
    raw = {"name": "m", "signal": {"kind": "metric", "name": "x"}, "detector": {"kind": None}}
    with pytest.raises(msgspec.ValidationError, match="detector kind must be a string"):
        msgspec.convert(raw, type=Monitor)


# -- durations ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("", 0.0),
        ("0s", 0.0),
        ("250ms", 0.25),
        ("90s", 90.0),
        ("15m", 900.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        ("1.5h", 5400.0),
        (" 2h ", 7200.0),
        ("1d12h", 129600.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["5", "5x", "h", "1y", "-1h", "1h 30m", "1h30", "m5", "1.h", "1hh", "2H", "ten m"]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


# -- label matchers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        ("eu", "eu", True),
        ("eu", "us", False),
        ("eu", None, False),
        ("eu", "eu-west", False),
        ("!=eu", "eu", False),
        ("!=eu", "us", True),
        ("!=eu", None, True),
        ("=~eu|us", "us", True),
        ("=~eu|us", "asia", False),
        ("=~eu", "eu-west", False),  # fully anchored
        ("=~eu.*", "eu-west", True),
        ("=~eu", None, False),
        ("!~eu|us", "us", False),
        ("!~eu|us", "asia", True),
        ("!~eu", "eu-west", True),  # fully anchored
        ("!~eu", None, True),
        # a missing label reads as the empty string, as in Prometheus and Alertmanager
        ("", None, True),
        ("", "", True),
        ("", "eu", False),
        ("!=", None, False),
        ("!=", "eu", True),
        ("=~.*", None, True),
        ("=~.+", None, False),
        ("!~.+", None, True),
    ],
)
def test_label_matcher(spec: str, value: str | None, expected: bool) -> None:
    assert compile_matcher(spec)(value) is expected


@pytest.mark.parametrize("value", ["eu", "us", "", None])
@pytest.mark.parametrize(("positive", "negative"), [("eu", "!=eu"), ("=~e.*", "!~e.*")])
def test_negated_matchers_are_complements(positive: str, negative: str, value: str | None) -> None:
    assert compile_matcher(positive)(value) is not compile_matcher(negative)(value)


def test_a_backtracking_pattern_matches_in_linear_time() -> None:
    """`(a|aa)+` against 60 `a` and a `b`: Python's `re` would backtrack for days (the
    thread gives up waiting after a minute rather than hang the run)."""
    value = "a" * 60 + "b"
    results: list[bool] = []

    def match() -> None:
        results.append(compile_matcher("=~(a|aa)+")(value))
        results.append(compile_matcher("!~(a|aa)+")(value))
        results.append(compile_matcher("=~(a|aa)+")("a" * 60))

    worker = threading.Thread(target=match, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert results == [False, True, True]


def test_label_matchers_all_must_hold() -> None:
    matches = compile_matchers({"surface": "sticker_panel", "region": "!~test.*"})
    assert matches({"surface": "sticker_panel", "region": "eu"})
    assert matches({"surface": "sticker_panel"})
    assert not matches({"surface": "sticker_panel", "region": "test-1"})
    assert not matches({"surface": "search", "region": "eu"})
    assert not matches({"region": "eu"})
    assert compile_matchers({})({"anything": "goes"})


def test_keys_merged_from_an_anchor_may_be_overridden(tmp_path: Path) -> None:
    """YAML merge keys (`<<: *anchor`) are not keys given twice."""
    path = tmp_path / "shop.yaml"
    path.write_text(
        "product: shop\nowner: team\nreceiver: oncall\n"
        "monitors:\n"
        "  - name: a\n    signal: {kind: metric, name: x}\n"
        "    alert: &paging {severity: page, for: 1h}\n"
        "  - name: b\n    signal: {kind: metric, name: y}\n    alert: {<<: *paging, for: 2h}\n"
    )
    spec = load_product(path)
    policies = [(m.alert.severity, m.alert.for_) for m in spec.monitors]
    assert policies == [("page", "1h"), ("page", "2h")]
