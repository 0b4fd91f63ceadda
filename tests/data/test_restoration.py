"""Restoration data: degradations, odd/grey/small images, folder layouts and their errors."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data.restoration import (
    PHOTO_SPLITS,
    PHOTOS,
    BenchmarkSuperResolutionDataModule,
    BicubicDownscale,
    BlindGaussianNoise,
    FolderSuperResolutionDataModule,
    GaussianNoise,
    ImageRecord,
    NoisyPairsDataModule,
    PhotoDenoisingDataModule,
    RestorationPairs,
)
from zoo.restoration.pixels import bicubic_resize

RGB = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # identity normalisation (mean, std) for 3 channels


def photo(height: int, width: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    """A smooth random image (bicubic-friendly) as uint8."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, height // 4), max(2, width // 4), channels), np.uint8)
    image = Image.fromarray(small.squeeze(-1) if channels == 1 else small)
    return np.asarray(image.resize((width, height), Image.BICUBIC))


def save(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


def pairs(records, degradation, train=False, channels=3, **kwargs) -> RestorationPairs:
    mean, std = ((0.0,), (1.0,)) if channels == 1 else RGB
    return RestorationPairs(records, degradation, channels, mean, std, train=train, **kwargs)


def keys_cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel (MATLAB's imresize uses a = -0.5)."""
    x = np.abs(x)
    near = (a + 2) * x**3 - (a + 3) * x**2 + 1
    far = a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def downscale_matrix(size: int, scale: int) -> np.ndarray:
    """Rows of weights that downscale `size` samples by `scale`, the kernel widened by `scale`
    (anti-aliasing) and renormalised where it runs off the image."""
    centres = (np.arange(size // scale) + 0.5) * scale - 0.5
    weights = keys_cubic((np.arange(size)[None] - centres[:, None]) / scale)
    return weights / weights.sum(1, keepdims=True)


def test_bicubic_degradation_is_the_literatures_kernel():
    """LR = Keys' a = -0.5 cubic, widened by the scale, rounded to 8 bits (MATLAB's imresize
    up to its mirrored border); PIL's BICUBIC, which rounds between its two passes, is close."""
    hr = photo(96, 120)
    lr = BicubicDownscale(3)(torch.tensor(hr).permute(2, 0, 1).float() / 255, None)
    exact = np.einsum("ih,hwc,jw->ijc", downscale_matrix(96, 3), hr / 255, downscale_matrix(120, 3))
    ours = lr.permute(1, 2, 0).numpy()
    assert ours.shape == (32, 40, 3)
    np.testing.assert_array_equal(ours * 255, np.round(np.clip(exact, 0, 1) * 255))
    pil = np.asarray(Image.fromarray(hr).resize((40, 32), Image.BICUBIC)).astype(float)
    assert np.abs(ours * 255 - pil).mean() < 0.5


def test_odd_sized_image_is_mod_cropped_for_evaluation():
    hr = photo(301, 451)  # chelsea's width, an odd height
    item = pairs([ImageRecord("odd", hr)], BicubicDownscale(4))[0]
    assert item["target"].shape == (3, 300, 448) and item["image"].shape == (3, 75, 112)


def test_grey_image_is_converted_for_rgb_and_back(tmp_path):
    grey = save(tmp_path / "grey.png", photo(40, 36, channels=1))
    rgb_item = pairs([ImageRecord(str(grey), grey)], BicubicDownscale(2))[0]
    assert rgb_item["target"].shape == (3, 40, 36)
    assert torch.equal(rgb_item["target"][0], rgb_item["target"][2])
    colour = save(tmp_path / "colour.png", photo(40, 36))
    grey_item = pairs([ImageRecord(str(colour), colour)], BicubicDownscale(2), channels=1)[0]
    assert grey_item["target"].shape == (1, 40, 36)


def test_image_smaller_than_the_crop_is_padded_for_training():
    torch.manual_seed(0)
    small = pairs([ImageRecord("tiny", photo(20, 14))], BicubicDownscale(2), train=True,
                  patch_size=16, samples_per_epoch=3)  # fmt: skip
    for item in small:
        assert item["image"].shape == (3, 16, 16) and item["target"].shape == (3, 32, 32)


def test_image_smaller_than_the_scale_is_refused_by_name():
    with pytest.raises(ValueError, match="speck.*too small for scale 4"):
        pairs([ImageRecord("speck", photo(3, 3))], BicubicDownscale(4))[0]


def test_training_crops_of_given_pairs_stay_aligned(tmp_path):
    torch.manual_seed(0)
    hr = photo(48, 60)
    lr = np.asarray(Image.fromarray(hr).resize((20, 16), Image.BICUBIC))
    dataset = pairs([ImageRecord("pair", hr, lr)], BicubicDownscale(3), train=True,
                    patch_size=8, samples_per_epoch=4)  # fmt: skip
    for item in dataset:
        reduced = bicubic_resize(item["target"][None], 1 / 3)[0]
        assert (reduced - item["image"]).abs().mean() < 0.02  # the crop of the HR's own LR


def test_evaluation_noise_is_fixed_and_has_sigma():
    clean = photo(64, 64)
    dataset = pairs([ImageRecord("a", clean)], GaussianNoise(25), seed=3)
    first, again = dataset[0], dataset[0]
    assert torch.equal(first["image"], again["image"])
    noise = first["image"] - first["target"]
    assert abs(noise.std().item() * 255 - 25) < 1.5


def test_blind_noise_draws_a_level_per_image():
    clean = torch.zeros(3, 64, 64)
    levels = [BlindGaussianNoise(0, 55)(clean, None).std().item() * 255 for _ in range(20)]
    assert min(levels) >= 0 and max(levels) <= 58 and np.std(levels) > 5


def test_photo_splits_are_disjoint_and_bundled():
    splits = [set(names) for names in PHOTO_SPLITS.values()]
    assert not (splits[0] & splits[1] or splits[0] & splits[2] or splits[1] & splits[2])
    assert set().union(*splits) == set(PHOTOS)
    dm = PhotoDenoisingDataModule(sigma=15, batch_size=2, samples_per_epoch=4, patch_size=16)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 16, 16) and batch["target"].shape == (2, 3, 16, 16)
    assert len(dm.datasets["test"]) == 3


def test_hr_folder_with_lr_folder(tmp_path):
    for i in range(4):
        hr = photo(24, 30, seed=i)
        save(tmp_path / "HR" / f"{i:04d}.png", hr)
        lr = np.asarray(Image.fromarray(hr).resize((15, 12), Image.BICUBIC))
        save(tmp_path / "LR" / "X2" / f"{i:04d}x2.png", lr)
    dm = FolderSuperResolutionDataModule(
        root=str(tmp_path), hr_dirs={"train": "HR"}, lr_dirs={"train": "LR/X{scale}"},
        split_fractions=(0.25, 0.25), scale=2, patch_size=8, batch_size=2, mean=(0,), std=(1,),
    )  # fmt: skip
    assert {k: len(v) for k, v in dm.records().items()} == {"train": 2, "val": 1, "test": 1}
    item = dm.test_dataloader().dataset[0]
    assert item["image"].shape == (3, 12, 15) and item["target"].shape == (3, 24, 30)


def test_lr_of_the_wrong_size_names_both_files(tmp_path):
    hr = save(tmp_path / "HR" / "a.png", photo(24, 30))
    lr = save(tmp_path / "LR" / "ax2.png", photo(10, 10))
    with pytest.raises(ValueError, match=r"ax2\.png is 10x10 .*a\.png is 30x24.*expected 15x12"):
        pairs([ImageRecord(str(hr), hr, lr)], BicubicDownscale(2))[0]


def test_missing_lr_partner_is_named(tmp_path):
    for i in range(3):
        save(tmp_path / "HR" / f"{i}.png", photo(24, 30))
    (tmp_path / "LR").mkdir()
    save(tmp_path / "LR" / "0x2.png", photo(12, 15))
    with pytest.raises(FileNotFoundError, match=r"no partner of .*1\.png"):
        FolderSuperResolutionDataModule(root=str(tmp_path), hr_dirs={"train": "HR"},
                                        lr_dirs={"train": "LR"}, scale=2)  # fmt: skip


@pytest.mark.parametrize("layout", ["edsr", "selfexsr", "flat"])
def test_benchmark_layouts(tmp_path, layout):
    hr = photo(24, 36)
    lr = np.asarray(Image.fromarray(hr).resize((12, 8), Image.BICUBIC))
    match layout:
        case "edsr":
            save(tmp_path / "Set5" / "HR" / "baby.png", hr)
            save(tmp_path / "Set5" / "LR_bicubic" / "X3" / "babyx3.png", lr)
        case "selfexsr":
            save(tmp_path / "Set5" / "image_SRF_3" / "img_001_SRF_3_HR.png", hr)
            save(tmp_path / "Set5" / "image_SRF_3" / "img_001_SRF_3_LR.png", lr)
        case "flat":
            save(tmp_path / "Set5" / "baby.bmp", hr)
    dm = BenchmarkSuperResolutionDataModule(root=str(tmp_path), benchmark="Set5", scale=3,
                                            mean=RGB[0], std=RGB[1])  # fmt: skip
    (record,) = dm.records()["test"]
    assert (record.degraded is None) == (layout == "flat")
    item = dm.test_dataloader().dataset[0]
    assert item["image"].shape == (3, 8, 12) and item["target"].shape == (3, 24, 36)


def test_unknown_benchmark_lists_the_layouts(tmp_path):
    with pytest.raises(FileNotFoundError, match="(?s)Set14.*LR_bicubic.*image_SRF"):
        BenchmarkSuperResolutionDataModule(root=str(tmp_path), benchmark="Set14")


def test_noisy_pairs_in_sidd_and_parallel_layouts(tmp_path):
    for i in range(3):
        clean, noisy = photo(20, 20, seed=i), photo(20, 20, seed=10 + i)
        scene = tmp_path / "sidd" / f"00{i}_S6_00100"
        save(scene / "GT_SRGB_010.PNG", clean)
        save(scene / "NOISY_SRGB_010.PNG", noisy)
        save(tmp_path / "folders" / "noisy" / f"{i}.png", noisy)
        save(tmp_path / "folders" / "clean" / f"{i}.png", clean)
    for root in ("sidd", "folders"):
        dm = NoisyPairsDataModule(root=str(tmp_path / root), mean=RGB[0], std=RGB[1])
        assert sorted(len(v) for v in dm.records().values()) == [1, 1, 1]
        item = dm.test_dataloader().dataset[0]
        record = dm.records()["test"][0]
        expected = torch.tensor(np.asarray(Image.open(record.degraded))).permute(2, 0, 1)
        assert torch.equal(item["image"], expected.float() / 255)  # real noise, not synthetic


def test_noisy_without_clean_partner_is_named(tmp_path):
    save(tmp_path / "scene" / "NOISY_SRGB_010.PNG", photo(8, 8))
    with pytest.raises(FileNotFoundError, match="NOISY_SRGB_010.PNG.*GT_SRGB_010.PNG"):
        NoisyPairsDataModule(root=str(tmp_path))


def test_corrupt_file_fails_before_training_by_name(tmp_path):
    for i in range(3):
        save(tmp_path / f"{i}.png", photo(24, 24))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    dm = FolderSuperResolutionDataModule(root=str(tmp_path), scale=2)
    with pytest.raises(ValueError, match="broken.png"):
        dm.setup()
