"""Tests for srlib.losses: pixel, perceptual (VGG19), adversarial and combined losses.

No test touches the network: the download is monkeypatched, and the cached
weights path uses a fake checkpoint written to a temporary TORCH_HOME.
"""

from __future__ import annotations

import math
import socket
import threading
import time
import warnings
from urllib.error import URLError

import pytest
import torch
import torchvision
from torch import nn

from srlib.losses import (
    VGG19_FILE,
    AdversarialLoss,
    CombinedLoss,
    PerceptualLoss,
    PixelLoss,
    PretrainedWeightsUnavailable,
    RandomVGGWeightsWarning,
    vgg_layer_end,
)
from srlib.losses import perceptual as perceptual_mod


def random_vgg(**kwargs) -> PerceptualLoss:
    """Explicitly random weights: no network, warning expected and swallowed."""
    with pytest.warns(RandomVGGWeightsWarning):
        return PerceptualLoss(pretrained=False, **kwargs)


@pytest.fixture(scope="module")
def vgg22() -> PerceptualLoss:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomVGGWeightsWarning)
        return PerceptualLoss(layer="vgg22", pretrained=False)


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    """An empty hub cache; also fails the test if anything tries the network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # undo any torch.hub.set_dir()
    assert torch.hub.get_dir() == str(tmp_path / "hub")

    def offline(url, timeout):
        raise URLError("simulated: no network")

    monkeypatch.setattr(perceptual_mod, "_check_reachable", offline)
    monkeypatch.setattr(torch.hub, "download_url_to_file", _forbidden_download)
    return tmp_path


def _forbidden_download(*args, **kwargs):
    raise AssertionError("test tried to download")


# --------------------------------------------------------------------------- pixel


def test_pixel_losses_on_known_tensors():
    sr = torch.tensor([0.0, 0.5, 1.0, 0.25]).view(1, 1, 2, 2)
    hr = torch.tensor([1.0, 0.5, 0.0, 0.75]).view(1, 1, 2, 2)
    # |diff| = 1, 0, 1, 0.5
    assert PixelLoss("l1")(sr, hr).item() == pytest.approx(2.5 / 4)
    assert PixelLoss("mse")(sr, hr).item() == pytest.approx(2.25 / 4)
    assert PixelLoss()(hr, hr).item() == 0.0


def test_pixel_unknown_kind_names_valid_kinds():
    with pytest.raises(ValueError, match="l1.*mse"):
        PixelLoss("l2")


# ------------------------------------------------------------------ perceptual: layers


def _paper_layer_ends_from_torchvision() -> dict[str, tuple[int, int]]:
    """Walk torchvision's own vgg19().features, counting convs per pooling block."""
    with torch.device("meta"):
        features = torchvision.models.vgg19(weights=None).features
    ends, block, conv = {}, 1, 0
    modules = list(features)
    for index, module in enumerate(modules):
        if isinstance(module, nn.MaxPool2d):
            block, conv = block + 1, 0
        elif isinstance(module, nn.Conv2d):
            conv += 1
            assert isinstance(modules[index + 1], nn.ReLU)
            ends[f"vgg{block}{conv}"] = (index + 1, index + 2)
    return ends


def test_layer_index_mapping_matches_torchvision_vgg19():
    ends = _paper_layer_ends_from_torchvision()
    assert len(ends) == 16 and max(ends) == "vgg54"
    for layer, (before, after) in ends.items():
        assert vgg_layer_end(layer, before_activation=True) == before, layer
        assert vgg_layer_end(layer, before_activation=False) == after, layer
    # The two layers the SRGAN paper reports.
    assert ends["vgg22"] == (8, 9) and ends["vgg54"] == (35, 36)


@pytest.mark.parametrize("before, last_type", [(True, nn.Conv2d), (False, nn.ReLU)])
def test_network_is_truncated_at_the_layer(before, last_type):
    loss = random_vgg(layer="vgg22", before_activation=before)
    assert len(loss.vgg) == _paper_layer_ends_from_torchvision()["vgg22"][0 if before else 1]
    assert isinstance(loss.vgg[-1], last_type)
    assert sum(isinstance(m, nn.Conv2d) for m in loss.vgg) == 4
    x = torch.rand(1, 3, 16, 16)
    assert loss.features(x).shape == (1, 128, 8, 8)


def test_unknown_layer_and_criterion_raise():
    with pytest.raises(ValueError, match="vgg54"):
        PerceptualLoss(layer="vgg55", pretrained=False)
    with pytest.raises(ValueError, match="mse"):
        PerceptualLoss(criterion="huber", pretrained=False)


# ------------------------------------------------------- perceptual: weights handling


def test_offline_error_message_is_actionable(empty_torch_home):
    start = time.monotonic()
    with pytest.raises(PretrainedWeightsUnavailable) as info:
        PerceptualLoss(layer="vgg22")
    assert time.monotonic() - start < 5
    message = str(info.value)
    expected_path = str(empty_torch_home / "hub" / "checkpoints" / VGG19_FILE)
    assert VGG19_FILE == "vgg19-dcbb9e9d.pth"
    assert "VGG19_Weights.IMAGENET1K_V1" in message
    assert "torch.hub.get_dir()/checkpoints/" in message
    assert expected_path in message
    assert "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth" in message
    assert "allow_random_vgg: true" in message
    assert "simulated: no network" in message
    assert isinstance(info.value, RuntimeError)


def test_random_fallback_warns_and_sets_flag(empty_torch_home):
    with pytest.warns(RandomVGGWeightsWarning, match="meaningless"):
        loss = PerceptualLoss(layer="vgg22", allow_random_weights=True)
    assert loss.random_weights is True
    # Seeded: a second fallback gives the same network.
    with pytest.warns(RandomVGGWeightsWarning):
        again = PerceptualLoss(layer="vgg22", allow_random_weights=True)
    for a, b in zip(loss.vgg.parameters(), again.vgg.parameters()):
        assert torch.equal(a, b)
    x = torch.rand(2, 3, 16, 16)
    assert torch.isfinite(loss(x, x.flip(0))) and loss(x, x.flip(0)) > 0


def test_download_runs_under_socket_timeout_and_restores_it(empty_torch_home, monkeypatch):
    seen = {}

    def fake_load(url, **kwargs):
        seen["timeout"] = socket.getdefaulttimeout()
        seen["url"], seen["kwargs"] = url, kwargs
        raise socket.timeout("timed out")

    monkeypatch.setattr(perceptual_mod, "_check_reachable", lambda url, timeout: None)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_load)
    before = socket.getdefaulttimeout()
    with pytest.raises(PretrainedWeightsUnavailable, match="timed out"):
        PerceptualLoss(layer="vgg22", download_timeout=3.5)
    assert seen["timeout"] == 3.5
    assert seen["url"].endswith(VGG19_FILE) and seen["kwargs"]["check_hash"] is True
    assert socket.getdefaulttimeout() == before


def test_reachability_probe_is_bounded(monkeypatch):
    monkeypatch.setattr(perceptual_mod, "getproxies", dict)  # probe the host itself, not a proxy
    # Refused connection (nothing listens on port 1 of localhost): quick URLError.
    with pytest.raises(URLError):
        perceptual_mod._check_reachable("http://127.0.0.1:1/x.pth", timeout=2.0)

    # A hanging DNS look-up / connect must not block past the timeout.
    release = threading.Event()

    def hang(*args, **kwargs):
        release.wait(10)
        raise OSError("released")

    monkeypatch.setattr(socket, "create_connection", hang)
    start = time.monotonic()
    try:
        with pytest.raises(URLError, match="no answer"):
            perceptual_mod._check_reachable("https://example.invalid/x.pth", timeout=0.2)
        assert time.monotonic() - start < 1.5
    finally:
        release.set()  # let the abandoned probe thread finish cleanly


def test_reachability_probe_targets_the_proxy_when_one_is_set(monkeypatch):
    seen = []

    def record(address, timeout):
        seen.append(address)
        raise OSError("refused")

    monkeypatch.setattr(perceptual_mod, "getproxies", lambda: {"https": "http://proxy.local:3128"})
    monkeypatch.setattr(socket, "create_connection", record)
    with pytest.raises(URLError):
        perceptual_mod._check_reachable("https://download.pytorch.org/models/x.pth", timeout=1.0)
    assert seen == [("proxy.local", 3128)]


def _fake_checkpoint(path, seed=123) -> dict[str, torch.Tensor]:
    """A random VGG19 'features' state dict under torchvision's key names, plus a classifier key."""
    torch.manual_seed(seed)
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["E"])
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.6.bias"] = torch.zeros(1000)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def test_cached_weights_load_offline(empty_torch_home):
    cached = empty_torch_home / "hub" / "checkpoints" / VGG19_FILE
    state = _fake_checkpoint(cached)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomVGGWeightsWarning)
        loss = PerceptualLoss(layer="vgg22", before_activation=False)
    assert loss.random_weights is False
    loaded = loss.vgg.state_dict()
    assert len(loaded) == 8  # 4 convs x (weight, bias)
    for key, value in loaded.items():
        assert torch.equal(value, state[f"features.{key}"]), key


def test_weights_dir_is_searched(tmp_path, empty_torch_home):
    state = _fake_checkpoint(tmp_path / "manual" / VGG19_FILE, seed=7)
    loss = PerceptualLoss(layer="vgg12", weights_dir=tmp_path / "manual")
    assert loss.random_weights is False
    assert torch.equal(loss.vgg[2].weight, state["features.2.weight"])


def test_broken_cached_file_is_reported(empty_torch_home):
    cached = empty_torch_home / "hub" / "checkpoints" / VGG19_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedWeightsUnavailable, match=str(cached)):
        PerceptualLoss(layer="vgg22")


# ----------------------------------------------------------- perceptual: behaviour


def test_imagenet_normalisation_for_unit_range(vgg22):
    x = torch.rand(2, 3, 16, 16)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    expected = vgg22.vgg((x - mean) / std) / 12.75
    torch.testing.assert_close(vgg22.features(x), expected)


def test_input_range_equivalence():
    unit = random_vgg(layer="vgg22")
    signed = random_vgg(layer="vgg22", input_range=(-1.0, 1.0))
    torch.testing.assert_close(signed.mean.flatten(), 2 * torch.tensor([0.485, 0.456, 0.406]) - 1)
    torch.testing.assert_close(signed.std.flatten(), 2 * torch.tensor([0.229, 0.224, 0.225]))
    sr, hr = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(signed.features(2 * sr - 1), unit.features(sr), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(signed(2 * sr - 1, 2 * hr - 1), unit(sr, hr), rtol=1e-5, atol=1e-8)


def test_rescale_and_criterion():
    plain = random_vgg(layer="vgg12", rescale=1.0)
    scaled = random_vgg(layer="vgg12", rescale=0.5)
    l1 = random_vgg(layer="vgg12", rescale=1.0, criterion="l1")
    sr, hr = torch.rand(1, 3, 12, 12), torch.rand(1, 3, 12, 12)
    assert scaled(sr, hr).item() == pytest.approx(0.25 * plain(sr, hr).item(), rel=1e-5)
    diff = plain.features(sr) - plain.features(hr)
    assert l1(sr, hr).item() == pytest.approx(diff.abs().mean().item(), rel=1e-5)
    assert plain(hr, hr).item() == 0.0


def test_gradients_reach_input_not_vgg(vgg22):
    sr = torch.rand(1, 3, 16, 16, requires_grad=True)
    vgg22(sr, torch.rand(1, 3, 16, 16)).backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in vgg22.vgg.parameters())
    assert list(vgg22.parameters()) == []  # nothing for a generator optimizer to pick up


def test_vgg_absent_from_state_dict_and_frozen_in_train_mode(vgg22):
    assert vgg22.state_dict() == {}

    class Wrapper(nn.Module):  # a generator with its loss attached, as a solver might do
        def __init__(self):
            super().__init__()
            self.net = nn.Conv2d(3, 3, 3, padding=1)
            self.loss = CombinedLoss([("l1", 1.0, PixelLoss()), ("perceptual", 1.0, vgg22)])

    wrapper = Wrapper().train()
    assert set(wrapper.state_dict()) == {"net.weight", "net.bias"}
    assert len(list(wrapper.parameters())) == 2
    assert not vgg22.vgg.training


def test_vgg_moves_with_to():
    loss = random_vgg(layer="vgg12")
    loss.to(torch.float64)
    assert all(p.dtype == torch.float64 for p in loss.vgg.parameters())
    assert loss.mean.dtype == torch.float64
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    assert loss(x, x.flip(-1)).dtype == torch.float64
    if torch.cuda.is_available():
        loss.cuda()
        assert all(p.is_cuda for p in loss.vgg.parameters()) and loss.std.is_cuda


# --------------------------------------------------------------------- adversarial


@pytest.mark.parametrize("kind", ["vanilla", "relativistic"])
def test_discriminator_loss_low_when_it_separates(kind):
    loss = AdversarialLoss(kind)
    real, fake = torch.full((8, 1), 6.0), torch.full((8, 1), -6.0)
    assert loss.discriminator_loss(real, fake).item() < 0.01
    assert loss.discriminator_loss(fake, real).item() > 5
    # An undecided D sits at log 2.
    zeros = torch.zeros(8, 1)
    assert loss.discriminator_loss(zeros, zeros).item() == pytest.approx(math.log(2))


@pytest.mark.parametrize("kind", ["vanilla", "relativistic"])
def test_generator_loss_decreases_as_fake_logits_rise(kind):
    loss = AdversarialLoss(kind)
    real = torch.zeros(4, 1)
    values = [loss.generator_loss(real, torch.full((4, 1), v)).item() for v in (-4.0, -1.0, 0.0, 1.0, 4.0)]
    assert all(a > b for a, b in zip(values, values[1:]))
    assert values[-1] < 0.05


def test_vanilla_generator_ignores_real_logits_and_is_non_saturating():
    loss = AdversarialLoss("vanilla")
    fake = torch.full((4, 1), -10.0, requires_grad=True)
    value = loss.generator_loss(None, fake)
    value.backward()
    assert value.item() == pytest.approx(10.0, abs=1e-3)  # -log(sigmoid(-10))
    assert fake.grad.abs().mean().item() == pytest.approx(0.25, rel=1e-3)  # full gradient, not vanishing


def test_relativistic_symmetry_and_needs_real():
    loss = AdversarialLoss("relativistic")
    real, fake = torch.randn(6, 1), torch.randn(6, 1)
    torch.testing.assert_close(loss.generator_loss(real, fake), loss.discriminator_loss(fake, real))
    # Shifting all logits by a constant changes nothing: only differences matter.
    torch.testing.assert_close(loss.discriminator_loss(real + 3, fake + 3), loss.discriminator_loss(real, fake))
    with pytest.raises(ValueError, match="real_logits"):
        loss.generator_loss(None, fake)


@pytest.mark.parametrize("kind", ["vanilla", "relativistic"])
def test_adversarial_stable_at_extreme_logits(kind):
    loss = AdversarialLoss(kind)
    for real_v, fake_v in [(100.0, -100.0), (-100.0, 100.0), (100.0, 100.0)]:
        real = torch.full((4, 1), real_v, requires_grad=True)
        fake = torch.full((4, 1), fake_v, requires_grad=True)
        total = loss.discriminator_loss(real, fake) + loss.generator_loss(real, fake)
        total.backward()
        assert torch.isfinite(total) and torch.isfinite(real.grad).all() and torch.isfinite(fake.grad).all()
    # D badly wrong at logit 100 costs ~100 nats, not inf.
    assert AdversarialLoss(kind).generator_loss(torch.zeros(1), torch.full((1,), -100.0)).item() > 40


def test_adversarial_unknown_kind():
    with pytest.raises(ValueError, match="vanilla.*relativistic"):
        AdversarialLoss("wgan")


# ------------------------------------------------------------------------ combined


def test_combined_total_is_weighted_sum():
    sr, hr = torch.rand(2, 3, 8, 8, requires_grad=True), torch.rand(2, 3, 8, 8)
    combined = CombinedLoss([("l1", 0.5, PixelLoss("l1")), ("mse", 2.0, PixelLoss("mse"))])
    total, parts = combined(sr, hr)
    l1 = (sr - hr).abs().mean().item()
    mse = ((sr - hr) ** 2).mean().item()
    assert {k: v.item() for k, v in parts.items()} == pytest.approx({"l1": l1, "mse": mse})
    # detached 0-dim tensors: logging them must not keep the graph or wait for the device
    assert all(v.dim() == 0 and not v.requires_grad for v in parts.values())
    assert total.item() == pytest.approx(0.5 * l1 + 2.0 * mse)
    total.backward()
    assert sr.grad is not None


def test_combined_names_duplicates_apart_and_keeps_vgg_out_of_state():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(perceptual_mod, "load_vgg19_state_dict", _raise_unavailable)
        with pytest.warns(RandomVGGWeightsWarning):
            vgg = PerceptualLoss(layer="vgg22", allow_random_weights=True)
    combined = CombinedLoss([("l1", 1.0, PixelLoss("l1")), ("l1", 3.0, PixelLoss("l1")),
                             ("mse", 0.1, PixelLoss("mse")), ("perceptual", 0.01, vgg)])
    assert list(combined.terms) == ["l1", "l1_2", "mse", "perceptual"]
    assert combined.weights == {"l1": 1.0, "l1_2": 3.0, "mse": 0.1, "perceptual": 0.01}
    sr, hr = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    total, parts = combined(sr, hr)
    assert parts["l1"] == parts["l1_2"]
    expected = sum(combined.weights[name] * value.item() for name, value in parts.items())
    assert total.item() == pytest.approx(expected, rel=1e-5)
    assert combined.state_dict() == {}


def _raise_unavailable(*args, **kwargs):
    raise PretrainedWeightsUnavailable("simulated: offline")
