"""A seeded sweep of the SDK's input surfaces with generated bad values (issue 34).

Surfaces: the numeric options of segment, anticipate, live, extract, train and batch (boundary values and
random ones: NaN, inf, negatives, zero, huge, wrong types, empty, unicode); model cards (every field of a
real card replaced by bad values, or removed); result JSON (every field of a real document replaced or
removed); live parameters and pushed frames. Each case asserts what the SDK documents: on the command line
exit code 2 and one line on stderr, before any work (the input does not exist, so a late check would be an
input error, exit 3) and never a traceback; in the API the documented exception class and nothing else.

The cases are generated at import from a fixed seed (`SEED`); `test_sweep_size` prints how many each surface
has (run with -s to see them).
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from actfusion_sdk.cli import main
from actfusion_sdk.errors import ConfigError, InputError, VideoError, WeightsError
from actfusion_sdk.limits import MAX_SECONDS, SEED_MAX
from actfusion_sdk.live import LiveUpdate, UpdatePlan
from actfusion_sdk.model.checkpoint import load_card
from actfusion_sdk.predictor import AnticipationWindow, VideoFeaturizer
from actfusion_sdk.results import AnticipationResult, Segment, SegmentationResult, load_result
from actfusion_sdk.video.live import LiveSource

from .helpers import write_small_model

SEED = 34
FEATURES_PER_SECOND = 2.5  # write_small_model's settings (10 fps, a feature every 4 frames)
SECONDS_PER_CASE = 10.0  # bound on one in-process CLI call (the slowest reads a model card)

# ---- generated values --------------------------------------------------------------------------------

NON_NUMBERS = ["", " ", "abc", "1,5", "1e", "0x10", "½", "∞", "١٢x", "None", "[]", "{}", "é", "\t", "1 2"]
NON_FINITE = ["nan", "NaN", "inf", "-inf", "Infinity", "1e309", "-1e309"]


def _garbage(rng: random.Random) -> str:
    alphabet = "abcxyz-+.,eE_ /\\%éü∞½漢\u200b"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8)))


def bad_seconds(rng: random.Random, too_small: float = 0.0) -> list[str]:
    """Not positive finite seconds up to MAX_SECONDS (or below `too_small`, one feature frame)."""
    values = ["0", "-0", "-1", "-1e-9", "1e12", str(MAX_SECONDS * 1.0001), *NON_FINITE, *NON_NUMBERS]
    values += [repr(-rng.uniform(1e-6, 1e6)) for _ in range(3)]
    values += [repr(10 ** rng.uniform(6, 300)) for _ in range(3)]
    if too_small:
        values += [repr(rng.uniform(1e-9, too_small * 0.99)) for _ in range(3)]
    return values + [_garbage(rng) for _ in range(3)]


def bad_integers(rng: random.Random, low: int, high: int) -> list[str]:
    """Not an integer in [low, high]."""
    values = [str(low - 1), str(high + 1), str(high * 10**6 + 7), "1.5", "1e3", *NON_FINITE, *NON_NUMBERS]
    values += [str(rng.randint(high + 2, high * 1000 + 10**25)) for _ in range(2)]
    values += [str(rng.randint(-(10**25), low - 2)) for _ in range(2)]
    return values + [_garbage(rng) for _ in range(3)]


def bad_fractions(rng: random.Random) -> list[str]:
    """Not a number in (0, 1)."""
    values = ["0", "1", "-0.1", "1.0000001", "2", *NON_FINITE, *NON_NUMBERS]
    values += [repr(rng.uniform(1.0, 1e6)) for _ in range(2)] + [repr(-rng.uniform(0, 1e6)) for _ in range(2)]
    return values + [_garbage(rng) for _ in range(2)]


# ---- surface 1: command-line options -----------------------------------------------------------------

# (command, the other arguments, option, bad values): every value must be refused with exit code 2.
# MISSING and OUT stand for a video that does not exist and a fresh output folder.
MISSING, OUT, MODEL = "<missing>", "<out>", "<model>"


def cli_cases() -> list[tuple[str, list[str], str, str]]:
    rng = random.Random(SEED)
    frame = 1 / FEATURES_PER_SECOND
    segment = ["segment", MISSING, "--weights", MODEL]
    anticipate = ["anticipate", MISSING, "--weights", MODEL]
    live = ["live", MISSING, "--weights", MODEL]
    extract = ["extract", MISSING, "--out", OUT]
    batch = ["batch", "segment", MISSING, "--weights", MODEL, "--out", OUT]
    batch_anticipate = ["batch", "anticipate", MISSING, "--weights", MODEL, "--out", OUT]
    train = ["train", "--data", MISSING, "--out", OUT]
    benchmark = ["make-benchmark", "--out", OUT]
    dataset = ["dataset", "build", MISSING, "--annotations", MISSING, "--out", OUT]
    table = [
        (segment, "--seed", bad_integers(rng, 0, SEED_MAX)),
        (anticipate, "--seed", bad_integers(rng, 0, SEED_MAX)),
        (anticipate, "--ratio", bad_fractions(rng)),
        ([*anticipate, "--horizon", "2"], "--observed", bad_seconds(rng, too_small=frame / 2)),
        ([*anticipate, "--observed", "1"], "--horizon", bad_seconds(rng)),
        (live, "--every", bad_seconds(rng, too_small=frame)),
        (live, "--horizon", bad_seconds(rng)),
        (live, "--context", bad_seconds(rng, too_small=frame)),
        (live, "--stall", bad_seconds(rng)),
        (live, "--seed", bad_integers(rng, 0, SEED_MAX)),
        (live, "--threads", bad_integers(rng, 1, 4096)),
        (extract, "--batch-size", ["0", "-1", "-99999", "1.5", "nan", *NON_NUMBERS]),
        (batch, "--seed", bad_integers(rng, 0, SEED_MAX)),
        (batch_anticipate, "--ratio", bad_fractions(rng)),
        ([*batch_anticipate, "--horizon", "2"], "--observed", bad_seconds(rng, too_small=frame / 2)),
        ([*batch_anticipate, "--observed", "1"], "--horizon", bad_seconds(rng)),
        (batch, "--workers", ["0", "-1", "1.5", "nan", *NON_NUMBERS]),
        (batch, "--cpus-per-worker", ["0", "-1", "nan", "inf", *NON_NUMBERS]),
        (batch, "--gpus-per-worker", ["-1", "-0.5", "nan", "inf", *NON_NUMBERS]),
        (train, "--epochs", ["0", "-1", "1.5", "nan", *NON_NUMBERS]),
        (train, "--eval-every", ["0", "-1", "nan", *NON_NUMBERS]),
        (train, "--seed", bad_integers(rng, 0, SEED_MAX)),
        (train, "--val-fraction", ["-0.1", "1", "1.5", *NON_FINITE, *NON_NUMBERS]),
        *[(base, "--threads", bad_integers(rng, 1, 4096)) for base in (segment, anticipate, extract, train)],
        (dataset, "--folds", ["1", "0", "-1", "1.5", "nan", *NON_NUMBERS]),
        (dataset, "--gt-fps", ["0", "-1", *NON_FINITE, *NON_NUMBERS]),
        (dataset, "--batch-size", ["0", "-1", "1.5", *NON_NUMBERS]),
        (dataset, "--threads", bad_integers(rng, 1, 4096)),
        (benchmark, "--videos", bad_integers(rng, 1, 10_000)),
        (benchmark, "--seed", bad_integers(rng, 0, SEED_MAX)),
        (benchmark, "--size", ["0", "-64", "63", "1.5", *NON_NUMBERS]),
        (benchmark, "--label-fps", ["0", "-1", *NON_FINITE, *NON_NUMBERS]),
        (benchmark, "--test-fraction", ["-0.1", "1", "2", *NON_FINITE, *NON_NUMBERS]),
        (["demo", "--out", OUT], "--seed", bad_integers(rng, 0, SEED_MAX)),
        (["bench"], "--length", bad_integers(rng, 1, 200_000)),
        (["bench"], "--repeats", bad_integers(rng, 1, 1000)),
    ]
    return [(base[0], base, option, value) for base, option, values in table for value in values]


CLI_CASES = cli_cases()


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_small_model(tmp_path_factory.mktemp("fuzz") / "model")


def _argv(base: list[str], option: str, value: str, model: Path, root: Path) -> list[str]:
    places = {MISSING: str(root / "missing.mp4"), OUT: str(root / "out"), MODEL: str(model)}
    return [places.get(arg, arg) for arg in base] + [f"{option}={value}"]


@pytest.mark.parametrize(
    ("command", "base", "option", "value"),
    CLI_CASES,
    ids=[f"{c}{o}={v[:40]!r}" for c, _, o, v in CLI_CASES],
)
def test_cli_option_out_of_range_is_one_line_exit_2_before_work(
    model, tmp_path, capsys, command, base, option, value
) -> None:
    started = time.monotonic()
    try:
        code = main(_argv(base, option, value, model, tmp_path))
    except SystemExit as exit_:  # argparse: not a value of the option's type
        code = exit_.code
    err = capsys.readouterr().err
    assert time.monotonic() - started < SECONDS_PER_CASE
    assert "Traceback" not in err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("actfusion"), err
    assert not (tmp_path / "out" / "failures.json").exists()  # nothing was attempted


# ---- surface 2: model cards --------------------------------------------------------------------------

BAD_JSON_VALUES: list[Any] = [
    None, True, False, -1, 0, 10**30, -(10**30), 1e300, math.nan, math.inf, -math.inf, 0.5, "", "x", "ü漢",
    [], [None], [1, "a"], {}, {"a": 1},
]  # fmt: skip


def leaves(document: Any, path: tuple = ()) -> Iterator[tuple]:
    """The paths (tuples of keys and indices) of every value in a JSON document, containers included."""
    if path:
        yield path
    if isinstance(document, dict):
        for key, value in document.items():
            yield from leaves(value, (*path, key))
    elif isinstance(document, list):
        for index, value in enumerate(document[:3]):  # the first items stand for the rest
            yield from leaves(value, (*path, index))


def mutated(document: Any, path: tuple, value: Any) -> Any:
    """A copy of `document` with the value at `path` replaced by `value` (removed when `value` is REMOVE)."""
    copy = json.loads(json.dumps(document))
    owner = copy
    for key in path[:-1]:
        owner = owner[key]
    if value is REMOVE:
        del owner[path[-1]]
    else:
        owner[path[-1]] = value
    return copy


REMOVE = object()


def mutations(document: Any, rng: random.Random, per_leaf: int) -> list[tuple[tuple, Any]]:
    """(path, bad value) pairs: each path with `per_leaf` values drawn from BAD_JSON_VALUES, and each key
    removed."""
    cases = []
    for path in leaves(document):
        cases += [(path, value) for value in rng.sample(BAD_JSON_VALUES, per_leaf)]
        if isinstance(path[-1], str):
            cases.append((path, REMOVE))
    return cases


@pytest.fixture(scope="module")
def card_document(model) -> dict:
    return json.loads((model / "model.json").read_text())


def card_cases(document: dict) -> list[tuple[tuple, Any]]:
    return mutations(document, random.Random(SEED), per_leaf=6)


def test_model_card_sweep(model, card_document, tmp_path, capsys) -> None:
    """Every mutated card loads (the value was a valid one) or is one WeightsError naming model.json; a card
    that loads has the mutated value, and its feature settings load or are a WeightsError."""
    cases = card_cases(card_document)
    card_path = tmp_path / "model.json"
    refused = 0
    for path, value in cases:
        card_path.write_text(json.dumps(mutated(card_document, path, value)))
        try:
            card = load_card(card_path)
        except WeightsError as err:
            assert str(card_path) in str(err) and "\n" not in str(err), (path, value, err)
            refused += 1
            continue
        except Exception as err:  # noqa: BLE001 - the sweep's point: no other exception class
            pytest.fail(f"card with {path} = {value!r}: {type(err).__name__}: {err}")
        with contextlib.suppress(WeightsError):  # settings are read when used: a WeightsError or fine
            VideoFeaturizer(model, card, device="cpu").feature_settings()
    with capsys.disabled():
        print(f"\nmodel cards: {len(cases)} cases, {refused} refused, the others valid values")
    assert refused > len(cases) // 2  # most bad values must be refused (the rest happen to be valid)


# ---- surface 3: result JSON --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def result_documents() -> list[dict]:
    classes = ["idle", "cut", "serve", "wash"]
    labels = [0, 0, 1, 1, 1, 2, 3, 3, 0, 0]
    probs = np.random.default_rng(SEED).dirichlet(np.ones(4), size=10).T.astype(np.float32)
    segmentation = SegmentationResult.from_frames(labels, classes, 2.0, frame_probs=probs, video="v.mp4")
    anticipation = AnticipationResult.from_frames(labels, classes, 2.0, 6, observation_ratio=0.6)
    return [json.loads(result.to_json(include_probs=True)) for result in (segmentation, anticipation)]


def result_cases(documents: list[dict]) -> list[tuple[int, tuple, Any]]:
    rng = random.Random(SEED + 1)
    return [
        (i, path, value)
        for i, document in enumerate(documents)
        for path, value in mutations(document, rng, 4)
    ]


def test_result_json_sweep(result_documents, tmp_path, capsys) -> None:
    """Every mutated document loads (and round-trips) or is one InputError naming the file."""
    cases = result_cases(result_documents)
    path_on_disk = tmp_path / "result.json"
    refused = 0
    for index, path, value in cases:
        path_on_disk.write_text(json.dumps(mutated(result_documents[index], path, value)))
        try:
            result = load_result(path_on_disk)
        except InputError as err:
            assert repr(str(path_on_disk)) in str(err), (path, value, err)
            refused += 1
            continue
        except Exception as err:  # noqa: BLE001 - the sweep's point: no other exception class
            pytest.fail(f"result with {path} = {value!r}: {type(err).__name__}: {err}")
        assert load_result(result.to_json(include_probs=True)) == result, (path, value)
    with capsys.disabled():
        print(f"\nresult JSON: {len(cases)} cases, {refused} refused, the others valid values")
    assert refused > len(cases) // 2


def test_live_update_json_sweep(capsys) -> None:
    """Every mutated line of a --jsonl file loads as a LiveUpdate (and round-trips) or is one InputError."""
    segment = Segment(label="cut", label_id=1, start=0.0, end=1.0, start_frame=0, end_frame=2, score=0.5)
    update = LiveUpdate(
        index=3,
        time=2.0,
        observed_frames=4,
        context_start=0.0,
        horizon=2.0,
        fps=2.0,
        latency=0.1,
        lag=0.0,
        skipped=0,
        final=True,
        end="end",
        observed_segments=(segment,),
        anticipated_segments=(replace(segment, start=2.0, end=4.0, start_frame=4, end_frame=8),),
    )
    document = json.loads(update.to_json())
    cases = mutations(document, random.Random(SEED + 4), per_leaf=8)
    refused = 0
    for path, value in cases:
        try:
            loaded = LiveUpdate.from_json(json.dumps(mutated(document, path, value)))
        except InputError as err:
            assert "\n" not in str(err)
            refused += 1
            continue
        except Exception as err:  # noqa: BLE001 - the sweep's point: no other exception class
            pytest.fail(f"live update with {path} = {value!r}: {type(err).__name__}: {err}")
        assert LiveUpdate.from_json(loaded.to_json()) == loaded, (path, value)
    with capsys.disabled():
        print(f"\nlive update JSON: {len(cases)} cases, {refused} refused, the others valid values")
    assert refused > len(cases) // 2


# ---- surface 4: live parameters, pushed frames, anticipation windows ---------------------------------


def live_cases() -> list[tuple[str, Callable[[], object], type[Exception]]]:
    rng = random.Random(SEED + 2)
    bad_numbers: list[Any] = [
        0,
        -1,
        -1e-9,
        math.nan,
        math.inf,
        -math.inf,
        1e12,
        10**400,
        None,
        "2",
        [1],
        True,
    ]
    bad_numbers.append(rng.uniform(-1e9, 0))
    cases: list[tuple[str, Callable[[], object], type[Exception]]] = []
    for value in bad_numbers:
        if value is not None:  # context=None means "all of the stream"
            cases.append(
                (f"UpdatePlan(context={value!r})", lambda v=value: UpdatePlan(context=v), ConfigError)
            )
        cases += [
            (f"UpdatePlan(every={value!r})", lambda v=value: UpdatePlan(every=v), ConfigError),
            (f"UpdatePlan(horizon={value!r})", lambda v=value: UpdatePlan(horizon=v), ConfigError),
            (
                f"LiveSource(stall={value!r})",
                lambda v=value: LiveSource([], 10.0, stall_seconds=v),
                ConfigError,
            ),
            (
                f"AnticipationWindow(horizon={value!r})",
                lambda v=value: AnticipationWindow(observed=1.0, horizon=v),
                ConfigError,
            ),
        ]
    for seed in (-1, SEED_MAX + 1, 10**30, 1.5, "0", None, True):
        cases.append((f"UpdatePlan(seed={seed!r})", lambda s=seed: UpdatePlan(seed=s), ConfigError))
    for drop in ("yes", 1, None):
        cases.append((f"UpdatePlan(drop={drop!r})", lambda d=drop: UpdatePlan(drop=d), ConfigError))
    for value in (0, 1, -0.5, 1.5, math.nan, math.inf, "0.3", True):
        cases.append(
            (f"AnticipationWindow(ratio={value!r})", lambda v=value: AnticipationWindow(v), ConfigError)
        )
    image = np.zeros((16, 16, 3), np.uint8)
    frames: list[tuple[str, list]] = [
        ("nan timestamp", [(0.0, image), (math.nan, image)]),
        ("inf timestamp", [(math.inf, image)]),
        ("huge jump", [(0.0, image), (1e15, image)]),
        ("string timestamp", [("0", image)]),
        ("None timestamp", [(None, image)]),
        ("0x0 image", [(0.0, np.zeros((0, 0, 3), np.uint8))]),
        ("grey image", [(0.0, np.zeros((16, 16), np.uint8))]),
        ("float image", [(0.0, np.zeros((16, 16, 3), np.float32))]),
        ("bare image", [image]),
        ("triple", [(0.0, image, 1)]),
        ("None frame", [None]),
    ]
    for _ in range(5):
        t = rng.choice([math.nan, math.inf, -math.inf, 1e300])
        frames.append((f"random bad timestamp {t}", [(rng.uniform(0, 5), image), (t, image)]))
    for name, pushed in frames:
        cases.append((f"pushed {name}", lambda p=pushed: list(LiveSource(p, 10.0).frames()), VideoError))
    return cases


LIVE_CASES = live_cases()


@pytest.mark.parametrize(
    ("name", "call", "expected"), LIVE_CASES, ids=[name[:60] for name, _, _ in LIVE_CASES]
)
def test_live_parameters_and_frames(name, call, expected) -> None:
    with pytest.raises(expected) as raised:
        call()
    assert "\n" not in str(raised.value) and str(raised.value)


# ---- surface 5: results built and drawn through the API ----------------------------------------------


def api_cases() -> list[tuple[str, Callable[[], object]]]:
    """Bad arguments of SegmentationResult / AnticipationResult.from_frames and Result.plot: each a
    ConfigError."""
    rng = random.Random(SEED + 3)
    classes = ["idle", "cut"]
    labels = [0, 0, 1, 1]
    bad: dict[str, list[Any]] = {
        "frame_labels": [[], "ab", [0.5, 1], [math.nan], None, [10**30], [0, 2], [-1, 0], [{}], ["0"]],
        "classes": [[], "ab", ["idle", "idle"], ["idle", ""], [1, 2], [None, "cut"], ["idle"]],
        "fps": [0, -1, math.nan, math.inf, "2", None, True, [2.0], -rng.uniform(0, 1e9)],
        "duration": [math.nan, math.inf, -1.0, 0.0, 1.4, "2", [2.0]],
        "frame_probs": ["x", np.full((2, 4), np.nan), np.ones((4, 2)), [[0.5]], np.full((2, 4), np.inf)],
    }
    cases: list[tuple[str, Callable[[], object]]] = []
    for name, values in bad.items():
        for value in values:
            arguments = {"frame_labels": labels, "classes": classes, "fps": 2.0} | {name: value}
            options = {key: arguments.pop(key) for key in ("duration", "frame_probs") if key in arguments}
            cases.append(
                (
                    f"SegmentationResult.from_frames({name}={value!r:.30})",
                    lambda a=arguments, o=options: SegmentationResult.from_frames(**a, **o),
                )
            )
    for cut in (0, 4, -1, 1.5, math.nan, "2", None, True, 10**30):
        cases.append(
            (
                f"AnticipationResult.from_frames(cut_frame={cut!r})",
                lambda c=cut: AnticipationResult.from_frames(labels, classes, 2.0, c),
            )
        )
    for ratio in (0, 1, 2, -0.5, math.nan, "0.3"):
        cases.append(
            (
                f"AnticipationResult.from_frames(observation_ratio={ratio!r})",
                lambda r=ratio: AnticipationResult.from_frames(labels, classes, 2.0, 2, observation_ratio=r),
            )
        )
    result = SegmentationResult.from_frames(labels, classes, 2.0)
    for width in (0, -1, 100, 10**6, math.nan, 2.5, "800", None, True):
        cases.append((f"plot(width={width!r})", lambda w=width: result.plot("never.png", width=w)))
    for dpi in (0, -5, 10**5, math.inf, "100"):
        cases.append((f"plot(dpi={dpi!r})", lambda d=dpi: result.plot("never.png", dpi=d)))
    for suffix in (".gif", ".bmp", ".txt", "", ".png.tmp", ".JPG2"):
        cases.append((f"plot(suffix={suffix!r})", lambda x=suffix: result.plot(f"never{x}")))
    return cases


API_CASES = api_cases()


@pytest.mark.parametrize(("name", "call"), API_CASES, ids=[name[:70] for name, _ in API_CASES])
def test_result_api_values(name, call, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as raised:
        call()
    assert "\n" not in str(raised.value) and str(raised.value)
    assert not any(tmp_path.iterdir())  # nothing drawn


# ---- surface 6: precomputed features (Pipeline.from_features, Predictor.load_features) ------------------

Features = Callable[[np.ndarray], np.ndarray]  # good [D, 8] features -> the features a case passes
_SAME: Features = lambda good: good  # noqa: E731


def _with(value: float, frame: int) -> Features:
    return lambda good: np.where(np.arange(good.shape[1]) == frame, value, good)


FEATURE_CASES: list[tuple[str, Features, dict[str, Any], type[Exception]]] = [
    *[
        (f"fps={v!r}", _SAME, {"fps": v}, ConfigError)
        for v in (0, -2.5, math.nan, math.inf, 1e9, "2", True, [2])
    ],
    *[
        (f"duration={v!r}", _SAME, {"duration": v}, ConfigError)
        for v in (0, -1, math.nan, math.inf, 1e12, "3")
    ],
    ("no frames", lambda good: good[:, :0], {}, InputError),
    ("NaN features", _with(math.nan, 3), {}, InputError),
    ("inf features", _with(math.inf, 5), {}, InputError),
    ("text features", lambda good: np.full(good.shape, "x"), {}, InputError),
    ("[T, D] features", lambda good: good.T, {}, InputError),
    ("1-D features", lambda good: good[0], {}, InputError),
]


@pytest.fixture(scope="module")
def predictor(model):
    from actfusion_sdk.predictor import Predictor

    return Predictor(model, device="cpu")


@pytest.mark.parametrize(
    ("name", "features", "options", "expected"), FEATURE_CASES, ids=[case[0] for case in FEATURE_CASES]
)
def test_precomputed_features(predictor, name, features, options, expected) -> None:
    dim = predictor.card.config.encoder.input_dim
    good = np.random.default_rng(SEED).standard_normal((dim, 8)).astype(np.float32)
    with pytest.raises(expected) as raised:
        predictor.load_features(features(good), **options)
    assert "\n" not in str(raised.value) and str(raised.value)


# ---- the sweep's size ----------------------------------------------------------------------------------


def test_sweep_size(card_document, result_documents, capsys) -> None:
    """How many cases each surface has (more than issue 34's own list: 16 rows, 191 cases in all)."""
    by_command: dict[str, int] = {}
    for command, *_ in CLI_CASES:
        by_command[command] = by_command.get(command, 0) + 1
    sizes = {
        **{f"cli {command}": count for command, count in by_command.items()},
        "model cards": len(card_cases(card_document)),
        "result JSON": len(result_cases(result_documents)),
        "live parameters and frames": len(LIVE_CASES),
        "result API values": len(API_CASES),
        "precomputed features": len(FEATURE_CASES),
    }
    with capsys.disabled():
        print("\nfuzz sweep:", ", ".join(f"{surface} {count}" for surface, count in sizes.items()))
    assert {"segment", "anticipate", "live", "extract", "batch", "train"} <= set(by_command)
    assert sum(sizes.values()) > 1000 and min(sizes.values()) >= 10


RAW_FILES: list[bytes] = [
    b"",
    b"\xff\xfe\x00garbage",
    b"[" * 100_000 + b"]" * 100_000,
    b"[]",
    b'"model"',
    b"42",
    b"null",
    b'{"a": NaN}',
    b"{" + b'"x": 1, ' * 5 + b"}",
    '{"schema": "ü\u200b"}'.encode(),
    b'{"schema": "actfusion-sdk/result/2", "kind": {}}',
    b'{"schema": "actfusion-sdk/result/2", "kind": "segmentation"}',
    b'{"format_version": 1}',
    b'{"format_version": 1.0, "classes": ["a"]}',
]


@pytest.mark.parametrize("content", RAW_FILES, ids=[repr(c[:24]) for c in RAW_FILES])
def test_raw_files_as_model_card_and_as_result(tmp_path, content) -> None:
    """Whole files that are not documents at all: one WeightsError (card) and one InputError (result)."""
    path = tmp_path / "model.json"
    path.write_bytes(content)
    with pytest.raises(WeightsError) as card_error:
        load_card(path)
    with pytest.raises(InputError) as result_error:
        load_result(path)
    for error in (card_error.value, result_error.value):
        assert str(path) in str(error) and "\n" not in str(error)
