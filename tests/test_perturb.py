"""Perturbations in the image and the input domain: formulas, the network-input hook, case routing, cache keys.

Mechanics on tiny synthetic arrays; what a real class feeds its network is tested in tests/study/test_robustness.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from deepradiomics.case import Case
from deepradiomics.errors import CaseError, ParamsError
from deepradiomics.nets.preprocess import Preprocessing, unit_statistics, zscore_foreground
from deepradiomics.perturb import IntensityScale, IntensityShift, perturb_input, perturbation

torch = pytest.importorskip("torch")


def test_input_domain_formulas_whole_input_and_foreground():
    x = torch.tensor([[0.0, -1.0, 1.0, 3.0]])
    foreground = torch.tensor([[False, True, True, True]])
    mean, sd = torch.tensor(1.0), torch.tensor(2.0)
    scale = perturbation("scale", 0.5, domain="input")
    shift = perturbation("shift", 0.5, domain="input")
    assert torch.equal(scale.apply_input(x, mean=mean, sd=sd, foreground=foreground), 1.5 * x)  # the entire input
    assert torch.equal(shift.apply_input(x, mean=mean, sd=sd, foreground=foreground), x + 1.0)  # background too
    fg_scale = IntensityScale(0.5, "foreground", "input").apply_input(x, mean=mean, sd=sd, foreground=foreground)
    assert fg_scale.tolist() == [[0.0, -2.0, 1.0, 4.0]]  # mu + 1.5 (x - mu) over the foreground, background kept
    fg_shift = IntensityShift(0.5, "foreground", "input").apply_input(x, mean=mean, sd=sd, foreground=foreground)
    assert fg_shift.tolist() == [[0.0, 0.0, 2.0, 4.0]]
    assert scale.apply_input(x, mean=mean, sd=sd, foreground=foreground) is not x
    assert IntensityScale(0.0, domain="input").apply_input(x, mean=mean, sd=sd, foreground=foreground) is x  # level 0: identity


def test_perturb_input_statistics_per_unit():
    # two patches (units): statistics over each one's foreground only, so the shift is s of each patch's own spread
    x = torch.tensor([[1.0, 3.0, 100.0], [2.0, 2.0, 2.0]]).view(2, 1, 3)
    foreground = torch.tensor([[True, True, False], [True, True, True]]).view(2, 1, 3)
    mean, sd = unit_statistics(x, foreground, reduce_dims=(1, 2))
    assert mean.flatten().tolist() == [2.0, 2.0] and sd.flatten().tolist() == [1.0, 1.0]  # constant patch: sd 0 -> 1
    shifted = perturb_input(x, [perturbation("shift", 0.25, domain="input")], foreground=foreground, reduce_dims=(1, 2))
    assert torch.equal(shifted, x + 0.25)
    # a unit without foreground takes all its values
    empty = torch.zeros_like(foreground)
    mean, sd = unit_statistics(x, empty, reduce_dims=(1, 2))
    assert mean.flatten()[0].item() == pytest.approx(104.0 / 3)
    assert sd.flatten()[0].item() == pytest.approx(np.std([1.0, 3.0, 100.0]), rel=1e-6)
    assert perturb_input(x, ()) is x  # no transform: the very same input


def test_preprocessing_hook_perturbs_the_finished_slices_with_the_normalisation_unit():
    rng = np.random.default_rng(0)
    volume = np.zeros((3, 20, 20), dtype=np.float32)
    volume[:, 4:16, 4:16] = rng.uniform(10, 200, (3, 12, 12))
    spec = Preprocessing(channels=("a", "b"), input_size=16)
    z = spec.slices([volume, 2 * volume])
    for s in (0.1, 0.5):
        scaled = spec.slices([volume, 2 * volume], input_transforms=[perturbation("scale", s, domain="input")])
        shifted = spec.slices([volume, 2 * volume], input_transforms=[perturbation("shift", s, domain="input")])
        assert torch.equal(scaled, (1 + s) * z) and torch.equal(shifted, z + s)  # z-scored: the unit is exactly 1
    # foreground region: only the pixels that come from voxels > 0 move
    fg = spec.slices([volume, 2 * volume], input_transforms=[perturbation("shift", 0.5, "foreground", "input")])
    inside = spec.input_foreground([volume, 2 * volume])
    assert torch.equal(fg[~inside], z[~inside]) and torch.equal(fg[inside], z[inside] + 0.5)
    # normalization none: the unit is the raw foreground's standard deviation, per channel
    raw = Preprocessing(channels=("a", "b"), normalization="none")
    plain = raw.slices([volume, 2 * volume])
    moved = raw.slices([volume, 2 * volume], input_transforms=[perturbation("shift", 1.0, domain="input")])
    sd = volume[volume > 0].std()
    np.testing.assert_allclose((moved - plain)[:, 0].numpy(), sd, rtol=1e-6)
    np.testing.assert_allclose((moved - plain)[:, 1].numpy(), 2 * sd, rtol=1e-6)


def test_an_image_domain_scale_is_undone_by_the_z_score_an_input_domain_one_is_not():
    rng = np.random.default_rng(1)
    volume = np.zeros((2, 12, 12))
    volume[:, 2:10, 2:10] = rng.uniform(5, 50, (2, 8, 8))
    image_scaled = IntensityScale(0.5).apply(volume)
    np.testing.assert_allclose(zscore_foreground(image_scaled), zscore_foreground(volume), atol=1e-6)  # the bug, now the image domain
    spec = Preprocessing(channels=("a",))
    z = spec.slices([volume])
    assert torch.equal(spec.slices([volume], input_transforms=[perturbation("scale", 0.5, domain="input")]), 1.5 * z)


def test_describe_names_the_domain_and_refusals():
    assert perturbation("scale", 0.1).describe() == "scale(0.1, image)"  # unchanged: old caches stay valid
    assert perturbation("scale", 0.1, domain="input").describe() == "scale(0.1, image, input)"
    assert perturbation("shift", 0.2, "foreground", "input").describe() == "shift(0.2, foreground, input)"
    assert perturbation("shift", 0.2, domain="input").network_input and not perturbation("shift", 0.2).network_input
    with pytest.raises(ParamsError, match="domain 'network' is not one of image, input"):
        perturbation("scale", 0.1, domain="network")
    sitk = pytest.importorskip("SimpleITK")
    image = sitk.GetImageFromArray(np.ones((2, 3, 3), dtype=np.float32))
    with pytest.raises(ParamsError, match="network input, not on an image"):
        perturbation("scale", 0.1, domain="input")(image)


def _tiny_case(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    array = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    mask = np.zeros((2, 4, 4), dtype=np.uint8)
    mask[:, 1:3, 1:3] = 1
    sitk.WriteImage(sitk.GetImageFromArray(array), str(tmp_path / "image.nrrd"))
    sitk.WriteImage(sitk.GetImageFromArray(mask), str(tmp_path / "mask.nrrd"))
    return Case({"Image": str(tmp_path / "image.nrrd")}, str(tmp_path / "mask.nrrd"), case_id="tiny"), array


def test_case_routes_input_transforms_away_from_its_images(tmp_path):
    case, array = _tiny_case(tmp_path)
    input_scale = perturbation("scale", 1.0, domain="input")
    image_scale = perturbation("scale", 1.0)
    perturbed = case.with_input_transforms(input_scale)
    assert perturbed.input_transforms == (input_scale,) and perturbed.image_transforms == ()
    np.testing.assert_array_equal(perturbed.array(), array)  # the image is left as it is
    both = perturbed.with_transforms(image_scale)
    assert both.transforms == (input_scale, image_scale) and both.image_transforms == (image_scale,)
    np.testing.assert_array_equal(both.array(), 2 * array)
    assert both.diagnostics()["diagnostics_Case_Transforms"] == "scale(1, image, input); scale(1, image)"
    with pytest.raises(CaseError, match="image transform, not a network-input transform"):
        case.with_input_transforms(image_scale)


def test_cache_keys_differ_for_every_domain_kind_and_level(tmp_path):
    from deepradiomics import Extractor

    case, _ = _tiny_case(tmp_path)
    task = Extractor({"featureClass": {"firstorder": ["Mean"]}}).batch_task()
    variants = [()] + [
        (perturbation(kind, level, region, domain),)
        for kind in ("scale", "shift")
        for level in (0.0, 0.1, 0.5)
        for region in ("image", "foreground")
        for domain in ("image", "input")
    ]
    keys = [task.cache_key(case.with_transforms(*transforms)) for transforms in variants]
    assert len(set(keys)) == len(keys)  # a perturbed row and an unperturbed one never share a cached result
    assert task.cache_key(case.with_transforms(perturbation("scale", 0.1, domain="input"))) == task.cache_key(
        case.with_input_transforms(perturbation("scale", 0.1, domain="input"))
    )
