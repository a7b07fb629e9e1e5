"""srlib.losses: pixel, VGG19 perceptual, adversarial and combined losses.

No test reaches the internet: downloads go to 127.0.0.1 (a closed port, or a small
HTTP server started here), and cached weights are fake checkpoints in a temporary folder.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import math
import socket
import threading
import time
import warnings

import pytest
import torch
import torchvision
from torch import nn

from srlib import pretrained
from srlib.losses import AdversarialLoss, CombinedLoss, PerceptualLoss, PixelLoss
from srlib.pretrained import VGG19_FILE, PretrainedWeightsUnavailable


@pytest.fixture(scope="module")
def vgg22() -> PerceptualLoss:
    return PerceptualLoss(layer="vgg22", pretrained=False)


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty hub cache under a temporary TORCH_HOME; the weights URL refuses connections."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # undo any torch.hub.set_dir()
    for name in ("no_proxy", "NO_PROXY"):  # reach 127.0.0.1 directly even behind a proxy
        monkeypatch.setenv(name, "*")
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(pretrained, "VGG19_URL", f"http://127.0.0.1:{port}/models/{VGG19_FILE}")
    return tmp_path / "hub" / "checkpoints" / VGG19_FILE


def fake_checkpoint(path, last_index: int = 8, seed: int = 1) -> dict[str, torch.Tensor]:
    """torchvision-named VGG19 tensors of the right shapes for ``features[:last_index + 1]``,
    plus a classifier tensor that the loss must ignore."""
    torch.manual_seed(seed)
    with torch.device("meta"):
        features = torchvision.models.vgg19().features[: last_index + 1]
    state = {f"features.{k}": torch.randn(v.shape) for k, v in features.state_dict().items()}
    state["classifier.6.bias"] = torch.zeros(1000)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


# ------------------------------------------------------------------------------ pixel


def test_pixel_losses_on_known_tensors():
    sr = torch.tensor([0.0, 0.5, 1.0, 0.25]).view(1, 1, 2, 2)
    hr = torch.tensor([1.0, 0.5, 0.0, 0.75]).view(1, 1, 2, 2)  # |diff| = 1, 0, 1, 0.5
    assert PixelLoss("l1")(sr, hr).item() == pytest.approx(2.5 / 4)
    assert PixelLoss("mse")(sr, hr).item() == pytest.approx(2.25 / 4)
    assert PixelLoss()(hr, hr).item() == 0.0


@pytest.mark.parametrize("build, message", [
    (lambda: PixelLoss("l2"), r'key "kind": unknown value "l2"; valid: l1, mse'),
    (lambda: PerceptualLoss(criterion="huber", pretrained=False),
     r'key "criterion": unknown value "huber"; valid: l1, mse'),
    (lambda: PerceptualLoss(layer="vgg55", pretrained=False), r'"vgg55"; valid: vgg11, .*vgg54'),
    (lambda: AdversarialLoss("wgan"), r'"wgan"; valid: vanilla, relativistic'),
])
def test_invalid_options_name_the_option_and_valid_values(build, message):
    with pytest.raises(ValueError, match=message):
        build()


# ------------------------------------------------------------------ perceptual: layers


@pytest.mark.parametrize("layer, before, end", [
    ("vgg12", True, 3), ("vgg22", True, 8), ("vgg22", False, 9), ("vgg34", True, 17),
    ("vgg54", True, 35), ("vgg54", False, 36),
])
def test_layer_end_indices(layer, before, end):
    loss = PerceptualLoss(layer=layer, before_activation=before, pretrained=False)
    assert loss.layer_end == end and len(loss.vgg) == end
    assert isinstance(loss.vgg[-1], nn.Conv2d if before else nn.ReLU)


def test_features_shape_and_imagenet_normalisation(vgg22):
    x = torch.rand(2, 3, 16, 16)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    features = vgg22.features(x)
    assert features.shape == (2, 128, 8, 8)
    torch.testing.assert_close(features, vgg22.vgg((x - mean) / std) / 12.75)


def test_rescale_and_criterion():
    plain = PerceptualLoss(layer="vgg12", rescale=1.0, pretrained=False)
    scaled = PerceptualLoss(layer="vgg12", rescale=0.5, pretrained=False)
    l1 = PerceptualLoss(layer="vgg12", rescale=1.0, criterion="l1", pretrained=False)
    sr, hr = torch.rand(1, 3, 12, 12), torch.rand(1, 3, 12, 12)
    assert scaled(sr, hr).item() == pytest.approx(0.25 * plain(sr, hr).item(), rel=1e-5)
    diff = plain.features(sr) - plain.features(hr)
    assert l1(sr, hr).item() == pytest.approx(diff.abs().mean().item(), rel=1e-5)


# ------------------------------------------------------------- perceptual: VGG storage


def test_gradients_reach_sr_but_not_vgg(vgg22):
    sr = torch.rand(1, 3, 16, 16, requires_grad=True)
    vgg22(sr, torch.rand(1, 3, 16, 16)).backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in vgg22.vgg.parameters())


def test_vgg_is_frozen_and_torchvision_names_the_same_weights(vgg22):
    """VGG is a fixed feature extractor: no parameter of it trains, and the weights file it
    asks for is torchvision's (written out so that importing srlib does not import it)."""
    assert list(vgg22.parameters()) and not any(p.requires_grad for p in vgg22.parameters())
    assert pretrained.VGG19_URL == torchvision.models.VGG19_Weights.IMAGENET1K_V1.url


def test_vgg_moves_with_to():
    loss = PerceptualLoss(layer="vgg12", pretrained=False).to(torch.float64)
    assert all(p.dtype == torch.float64 for p in loss.vgg.parameters())
    assert loss.mean.dtype == torch.float64
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    assert loss(x, x.flip(-1)).dtype == torch.float64
    if torch.cuda.is_available():
        loss.cuda()
        assert all(p.is_cuda for p in loss.vgg.parameters()) and loss.std.is_cuda


# ------------------------------------------------------------ perceptual: weights files


def test_offline_fails_fast_with_an_actionable_message(offline):
    start = time.monotonic()
    with pytest.raises(PretrainedWeightsUnavailable) as info:
        PerceptualLoss(layer="vgg22", download_timeout=2.0)
    assert time.monotonic() - start < 2.0
    message = str(info.value)
    assert VGG19_FILE == "vgg19-dcbb9e9d.pth"  # torchvision's VGG19_Weights.IMAGENET1K_V1 file
    for needed in ("VGG19_Weights.IMAGENET1K_V1", str(offline), pretrained.VGG19_URL,
                   "torch.hub.get_dir()/checkpoints/", "allow_random_vgg: true", "URLError"):
        assert needed in message
    assert not offline.exists()


def test_unanswered_lookup_is_bounded_by_the_timeout(offline, monkeypatch):
    release = threading.Event()

    def hanging_urlopen(url, timeout):  # a DNS look-up that no socket timeout covers
        release.wait(10)
        raise OSError("released")

    monkeypatch.setattr(pretrained, "urlopen", hanging_urlopen)
    start = time.monotonic()
    try:
        with pytest.raises(PretrainedWeightsUnavailable, match="no answer from 127.0.0.1 in 0.3 s"):
            PerceptualLoss(layer="vgg22", download_timeout=0.3)
        assert time.monotonic() - start < 1.5
    finally:
        release.set()


def test_random_fallback_is_flagged_silent_and_seeded(offline):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = PerceptualLoss(layer="vgg22", allow_random_weights=True, download_timeout=2.0)
    assert loss.random_weights is True
    same = PerceptualLoss(layer="vgg22", pretrained=False, seed=0)
    other = PerceptualLoss(layer="vgg22", pretrained=False, seed=1)
    assert same.random_weights is True
    assert all(torch.equal(a, b) for a, b in zip(loss.vgg.parameters(), same.vgg.parameters()))
    assert not torch.equal(loss.vgg[0].weight, other.vgg[0].weight)


def test_cached_weights_load_without_network(offline, tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "urlopen", lambda *a, **k: pytest.fail("tried the network"))
    state = fake_checkpoint(tmp_path / "manual" / VGG19_FILE)
    loss = PerceptualLoss(layer="vgg22", before_activation=False, weights_dir=tmp_path / "manual")
    assert loss.random_weights is False
    assert len(loss.vgg.state_dict()) == 8  # 4 convs x (weight, bias)
    for key, value in loss.vgg.state_dict().items():
        assert torch.equal(value, state[f"features.{key}"]), key
    # The file lacks deeper layers, and a corrupt file is reported with its path too.
    with pytest.raises(PretrainedWeightsUnavailable, match="KeyError: 'features.10.weight'"):
        PerceptualLoss(layer="vgg31", weights_dir=tmp_path / "manual")
    offline.parent.mkdir(parents=True)
    offline.write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedWeightsUnavailable, match=str(offline)):
        PerceptualLoss(layer="vgg22")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("hash_ok", [True, False])
def test_download_checks_the_hash_and_writes_atomically(offline, tmp_path, monkeypatch, hash_ok):
    served = tmp_path / "served"
    fake_checkpoint(served / "vgg19.pth")
    digest = hashlib.sha256((served / "vgg19.pth").read_bytes()).hexdigest()
    name = f"vgg19-{digest[:8] if hash_ok else '00000000'}.pth"
    (served / "vgg19.pth").rename(served / name)
    handler = functools.partial(QuietHandler, directory=served)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(pretrained, "VGG19_URL", f"http://127.0.0.1:{server.server_address[1]}/{name}")
    monkeypatch.setattr(pretrained, "VGG19_FILE", name)
    cache = tmp_path / "cache"
    try:
        if hash_ok:
            assert PerceptualLoss(layer="vgg22", weights_dir=cache).random_weights is False
        else:
            with pytest.raises(PretrainedWeightsUnavailable, match="does not start with 00000000"):
                PerceptualLoss(layer="vgg22", weights_dir=cache)
    finally:
        server.shutdown()
        server.server_close()
    cached = sorted(p.name for p in cache.iterdir())
    assert cached == ([name] if hash_ok else [])  # no partial file left either way


# ------------------------------------------------------------------------ adversarial


@pytest.mark.parametrize("kind", ["vanilla", "relativistic"])
def test_discriminator_loss_low_when_it_separates(kind):
    loss = AdversarialLoss(kind)
    real, fake = torch.full((8, 1), 6.0), torch.full((8, 1), -6.0)
    assert loss.discriminator_loss(real, fake).item() < 0.01
    assert loss.discriminator_loss(fake, real).item() > 5
    zeros = torch.zeros(8, 1)  # an undecided D sits at log 2
    assert loss.discriminator_loss(zeros, zeros).item() == pytest.approx(math.log(2))


@pytest.mark.parametrize("kind", ["vanilla", "relativistic"])
def test_generator_loss_falls_as_fake_logits_rise(kind):
    loss = AdversarialLoss(kind)
    real = torch.zeros(4, 1)
    values = [loss.generator_loss(real, torch.full((4, 1), v)).item() for v in (-4.0, 0.0, 4.0)]
    assert values[0] > values[1] > values[2] and values[2] < 0.05


@pytest.mark.parametrize("kind", ["vanilla", "relativistic"])
def test_adversarial_finite_for_saturated_logits(kind):
    loss = AdversarialLoss(kind)
    for real_v, fake_v in [(100.0, -100.0), (-100.0, 100.0), (100.0, 100.0)]:
        real = torch.full((4, 1), real_v, requires_grad=True)
        fake = torch.full((4, 1), fake_v, requires_grad=True)
        total = loss.discriminator_loss(real, fake) + loss.generator_loss(real, fake)
        total.backward()
        assert torch.isfinite(total)
        assert torch.isfinite(real.grad).all() and torch.isfinite(fake.grad).all()
    # D sure and right at logit -100 costs G ~100 nats, not inf.
    assert loss.generator_loss(torch.zeros(1), torch.full((1,), -100.0)).item() > 40


def test_vanilla_generator_ignores_real_logits_and_is_non_saturating():
    loss = AdversarialLoss("vanilla")
    assert loss.needs_real_logits is False
    fake = torch.full((4, 1), -10.0, requires_grad=True)
    value = loss.generator_loss(None, fake)
    assert torch.equal(value, loss.generator_loss(torch.randn(4, 1), fake))
    value.backward()
    assert value.item() == pytest.approx(10.0, abs=1e-3)  # -log(sigmoid(-10))
    assert fake.grad.abs().mean().item() == pytest.approx(0.25, rel=1e-3)  # not vanishing


def test_relativistic_needs_real_logits_and_only_differences_matter():
    loss = AdversarialLoss("relativistic")
    assert loss.needs_real_logits is True
    real, fake = torch.randn(6, 1), torch.randn(6, 1)
    with pytest.raises(ValueError, match="real_logits"):
        loss.generator_loss(None, fake)
    torch.testing.assert_close(loss.generator_loss(real, fake), loss.discriminator_loss(fake, real))
    shifted = loss.discriminator_loss(real + 3, fake + 3)
    torch.testing.assert_close(shifted, loss.discriminator_loss(real, fake))


# --------------------------------------------------------------------------- combined


def test_combined_total_is_the_weighted_sum_of_detached_terms():
    sr, hr = torch.rand(2, 3, 8, 8, requires_grad=True), torch.rand(2, 3, 8, 8)
    combined = CombinedLoss([("l1", 0.5, PixelLoss("l1")), ("mse", 2.0, PixelLoss("mse"))])
    total, parts = combined(sr, hr)
    l1, mse = (sr - hr).abs().mean().item(), ((sr - hr) ** 2).mean().item()
    assert {k: v.item() for k, v in parts.items()} == pytest.approx({"l1": l1, "mse": mse})
    assert all(v.dim() == 0 and not v.requires_grad for v in parts.values())
    assert total.item() == pytest.approx(0.5 * l1 + 2.0 * mse)
    total.backward()
    assert sr.grad is not None


def test_combined_suffixes_repeated_names(vgg22):
    combined = CombinedLoss([("l1", 1.0, PixelLoss("l1")), ("l1", 3.0, PixelLoss("l1")),
                             ("perceptual", 0.01, vgg22)])
    assert combined.weights == {"l1": 1.0, "l1_2": 3.0, "perceptual": 0.01}
    assert list(combined.terms) == list(combined.weights)
    total, parts = combined(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))
    assert parts["l1"] == parts["l1_2"]
    expected = sum(combined.weights[name] * value.item() for name, value in parts.items())
    assert total.item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="at least one"):
        CombinedLoss([])
