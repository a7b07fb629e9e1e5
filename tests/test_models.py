"""Behaviour of the SR networks: shapes, sizes, BatchNorm modes, init, saving, BasicSR import."""

import io
import math

import pytest
import torch
import torch.nn.functional as F

from srlib.inference import load_generator
from srlib.models import MSRResNet, SRGANDiscriminator, SRResNet, count_parameters
from srlib.pretrained import load_basicsr_msrresnet


def conv(cin, cout, k, bias=True):
    """Parameters of a k x k conv: weights plus optional bias."""
    return cin * cout * k * k + (cout if bias else 0)


BN = lambda c: 2 * c  # noqa: E731  gamma + beta; running stats are buffers
PRELU = 1  # one shared slope


# ----------------------------------------------------------------------------- shapes

@pytest.mark.parametrize("arch", [SRResNet, MSRResNet])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_generator_output_shape(arch, scale):
    model = arch(num_feat=8, num_block=2, scale=scale)
    assert model(torch.rand(2, 3, 7, 9)).shape == (2, 3, 7 * scale, 9 * scale)


@pytest.mark.parametrize("arch", [SRResNet, MSRResNet])
def test_generator_channels_and_bad_scale(arch):
    model = arch(in_channels=1, out_channels=1, num_feat=8, num_block=1, scale=4)
    assert model(torch.rand(1, 1, 6, 6)).shape == (1, 1, 24, 24)
    with pytest.raises(ValueError, match="scale"):
        arch(scale=8)


def test_untrained_srresnet_outputs_the_mean_colour():
    """The tail bias starts at DIV2K's mean colour (Adam would need ~900 steps to walk it
    there from 0 at lr 5e-4); output_mean=None keeps PyTorch's plain initialisation."""
    torch.manual_seed(0)
    lr = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        shifted = SRResNet(num_feat=16, num_block=2).eval()(lr).mean(dim=(0, 2, 3))
        plain = SRResNet(num_feat=16, num_block=2, output_mean=None).eval()(lr).mean(dim=(0, 2, 3))
    assert torch.allclose(shifted, torch.tensor([0.4488, 0.4371, 0.4040]), atol=0.05)
    assert plain.abs().max() < 0.1
    with pytest.raises(ValueError, match='key "output_mean": 2 values'):
        SRResNet(output_mean=(0.5, 0.5))


def test_small_variants_work_and_train():
    for arch in (SRResNet, MSRResNet):
        model = arch(num_feat=32, num_block=4)
        x, y = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 32, 32)
        loss = F.l1_loss(model(x), y)
        loss.backward()
        assert all(p.grad is not None for p in model.parameters())


# ----------------------------------------------------------------------------- sizes

def test_srresnet_default_parameter_count():
    head = conv(3, 64, 9) + PRELU                                   # 15,617
    block = conv(64, 64, 3, bias=False) + BN(64) + PRELU \
        + conv(64, 64, 3, bias=False) + BN(64)                      # 73,985
    body_tail = conv(64, 64, 3, bias=False) + BN(64)                # 36,992
    up_stage = conv(64, 4 * 64, 3) + PRELU                          # 147,713
    tail = conv(64, 3, 9)                                           # 15,555
    expected = head + 16 * block + body_tail + 2 * up_stage + tail
    assert expected == 1_547_350  # "about 1.55 M" as in the paper
    assert count_parameters(SRResNet()) == expected


def test_msrresnet_default_parameter_count():
    block = 2 * conv(64, 64, 3)                                     # 73,856
    expected = (conv(3, 64, 3) + 16 * block + 2 * conv(64, 256, 3)
                + conv(64, 64, 3) + conv(64, 3, 3))
    assert expected == 1_517_571  # BasicSR's MSRResNet x4 f64b16
    assert count_parameters(MSRResNet()) == expected


def test_msrresnet_small_parameter_count():
    expected = (conv(3, 32, 3) + 4 * 2 * conv(32, 32, 3) + 2 * conv(32, 128, 3)
                + conv(32, 32, 3) + conv(32, 3, 3))
    assert expected == 158_979
    assert count_parameters(MSRResNet(num_feat=32, num_block=4)) == expected


def test_discriminator_parameter_count():
    convs = (conv(3, 64, 3)
             + conv(64, 64, 3, False) + BN(64) + conv(64, 128, 3, False) + BN(128)
             + conv(128, 128, 3, False) + BN(128) + conv(128, 256, 3, False) + BN(256)
             + conv(256, 256, 3, False) + BN(256) + conv(256, 512, 3, False) + BN(512)
             + conv(512, 512, 3, False) + BN(512))                   # 4,687,232
    dense = lambda side: (512 * side * side * 1024 + 1024) + (1024 + 1)  # noqa: E731
    assert convs + dense(96 // 16) == 23_563_649
    assert count_parameters(SRGANDiscriminator()) == convs + dense(6)
    assert count_parameters(SRGANDiscriminator(input_size=128)) == convs + dense(8) == 38_243_713


def test_count_parameters_trainable_only():
    model = MSRResNet(num_feat=8, num_block=1)
    model.conv_first.requires_grad_(False)
    frozen = conv(3, 8, 3)
    assert count_parameters(model, trainable_only=True) == count_parameters(model) - frozen


# ----------------------------------------------------------------------------- BatchNorm

@pytest.fixture
def small_srresnet():
    torch.manual_seed(0)
    return SRResNet(num_feat=16, num_block=2, scale=2)


def test_srresnet_train_and_eval_modes_differ(small_srresnet):
    x = torch.rand(4, 3, 12, 12)
    with torch.no_grad():
        train_out = small_srresnet.train()(x)
        eval_out = small_srresnet.eval()(x)
    assert not torch.allclose(train_out, eval_out, atol=1e-3)


def test_srresnet_eval_is_deterministic_and_per_sample(small_srresnet):
    x = torch.rand(4, 3, 12, 12)
    model = small_srresnet.eval()
    with torch.no_grad():
        batched = model(x)
        assert torch.equal(batched, model(x))
        for i in range(4):
            torch.testing.assert_close(model(x[i:i + 1]), batched[i:i + 1], atol=1e-5, rtol=1e-5)


def test_srresnet_train_mode_mixes_samples(small_srresnet):
    """Batch statistics make a sample's output depend on its batch mates in train mode."""
    x = torch.rand(4, 3, 12, 12)
    model = small_srresnet.train()
    with torch.no_grad():
        alone_pair = model(x[:2])[0]
        in_batch = model(x)[0]
    assert not torch.allclose(alone_pair, in_batch, atol=1e-4)


def test_running_stats_update_only_in_train(small_srresnet):
    model = small_srresnet
    bn = model.body[0].bn1
    before = bn.running_mean.clone(), bn.running_var.clone()
    x = torch.rand(4, 3, 12, 12)
    with torch.no_grad():
        model.eval()(x)
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert bn.num_batches_tracked.item() == 0
    with torch.no_grad():
        model.train()(x)
    assert not torch.equal(bn.running_mean, before[0])
    assert not torch.equal(bn.running_var, before[1])
    assert bn.num_batches_tracked.item() == 1


# ----------------------------------------------------------------------------- MSRResNet init

def test_msrresnet_init_matches_basicsr():
    torch.manual_seed(0)
    model = MSRResNet()
    w = model.body[3].conv1.weight
    expected_std = 0.1 * math.sqrt(2 / (64 * 9))  # kaiming_normal fan_in, a=0, times 0.1
    assert abs(w.std().item() / expected_std - 1) < 0.05
    for name in ("conv_first", "upconv1", "upconv2", "conv_hr", "conv_last"):
        layer = getattr(model, name)
        fan_in = layer.weight[0].numel()
        assert abs(layer.weight.std().item() / (0.1 * math.sqrt(2 / fan_in)) - 1) < 0.1, name
        assert torch.count_nonzero(layer.bias) == 0, name


def test_msrresnet_starts_close_to_bilinear():
    torch.manual_seed(0)
    model = MSRResNet().eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        out = model(x)
    bilinear = F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)
    diff = (out - bilinear).abs().mean().item()
    assert 0 < diff < 1e-3  # residual branch is live but tiny (about 5e-6 in practice)


# ----------------------------------------------------------------------------- save / load

@pytest.mark.parametrize("make", [
    lambda: SRResNet(num_feat=16, num_block=2),
    lambda: MSRResNet(num_feat=16, num_block=2),
    lambda: SRGANDiscriminator(num_feat=8, input_size=32),
])
def test_state_dict_round_trip(make):
    torch.manual_seed(0)
    model = make()
    size = 32 if isinstance(model, SRGANDiscriminator) else 8
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        model.train()(x)  # move BN running stats away from their defaults
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    torch.manual_seed(1)
    fresh = make()
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    with torch.no_grad():
        assert torch.equal(model.eval()(x), fresh.eval()(x))


# ----------------------------------------------------------------------------- BasicSR import

# Key names and shapes exactly as BasicSR's MSRResNet(num_feat=8, num_block=2, upscale=4)
# writes them.
BASICSR_X4_F8_B2 = {
    "conv_first.weight": (8, 3, 3, 3), "conv_first.bias": (8,),
    "body.0.conv1.weight": (8, 8, 3, 3), "body.0.conv1.bias": (8,),
    "body.0.conv2.weight": (8, 8, 3, 3), "body.0.conv2.bias": (8,),
    "body.1.conv1.weight": (8, 8, 3, 3), "body.1.conv1.bias": (8,),
    "body.1.conv2.weight": (8, 8, 3, 3), "body.1.conv2.bias": (8,),
    "upconv1.weight": (32, 8, 3, 3), "upconv1.bias": (32,),
    "upconv2.weight": (32, 8, 3, 3), "upconv2.bias": (32,),
    "conv_hr.weight": (8, 8, 3, 3), "conv_hr.bias": (8,),
    "conv_last.weight": (3, 8, 3, 3), "conv_last.bias": (3,),
}
# The older mmsr / ESRGAN-repo spelling of the same network.
LEGACY_NAMES = {"body.": "recon_trunk.", "conv_hr.": "HRconv."}


def fake_basicsr(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: 0.1 * torch.randn(shape, generator=g) for k, shape in BASICSR_X4_F8_B2.items()}


def basicsr_forward(sd, x, num_block=2):
    """Independent reference: BasicSR's MSRResNet x4 forward written with F.* on its own keys."""
    c = lambda t, n: F.conv2d(t, sd[n + ".weight"], sd[n + ".bias"], padding=1)  # noqa: E731
    lrelu = lambda t: F.leaky_relu(t, 0.1)  # noqa: E731
    feat = lrelu(c(x, "conv_first"))
    for i in range(num_block):
        feat = feat + c(F.relu(c(feat, f"body.{i}.conv1")), f"body.{i}.conv2")
    feat = lrelu(F.pixel_shuffle(c(feat, "upconv1"), 2))
    feat = lrelu(F.pixel_shuffle(c(feat, "upconv2"), 2))
    out = c(lrelu(c(feat, "conv_hr")), "conv_last")
    return out + F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)


def from_basicsr(state: dict, tmp_path) -> torch.nn.Module:
    """A BasicSR file loaded the way a user loads it (srlib eval/upscale, load_generator)."""
    torch.save(state, tmp_path / "net_g.pth")
    return load_generator(tmp_path / "net_g.pth")


def test_basicsr_checkpoint_maps_every_tensor(tmp_path):
    src = fake_basicsr()
    ckpt = {"params": {"module." + k: v for k, v in src.items()}}
    model = from_basicsr(ckpt, tmp_path)
    assert (model.scale, len(model.body), model.conv_first.out_channels) == (4, 2, 8)
    ours = model.state_dict()
    assert set(ours) == set(src)
    for k, v in src.items():
        assert torch.equal(ours[k], v), k
    x = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(model(x), basicsr_forward(src, x))


def test_basicsr_prefers_ema_and_loads_from_file(tmp_path):
    ema, plain = fake_basicsr(1), fake_basicsr(2)
    path = tmp_path / "net_g.pth"
    torch.save({"params": plain, "params_ema": ema}, path)
    assert torch.equal(load_basicsr_msrresnet(path)["conv_last.weight"], ema["conv_last.weight"])
    chosen = load_basicsr_msrresnet(str(path), param_key="params")
    assert torch.equal(chosen["conv_last.weight"], plain["conv_last.weight"])


def test_basicsr_legacy_names(tmp_path):
    src = fake_basicsr()
    legacy = {}
    for k, v in src.items():
        for new, old in LEGACY_NAMES.items():
            if k.startswith(new):
                k = old + k[len(new):]
        legacy[k] = v
    assert "recon_trunk.1.conv2.weight" in legacy and "HRconv.bias" in legacy
    model = from_basicsr(legacy, tmp_path)
    x = torch.rand(1, 3, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(model(x), basicsr_forward(src, x))


@pytest.mark.parametrize("scale", [2, 3])
def test_basicsr_infers_scale(scale, tmp_path):
    src = MSRResNet(num_feat=8, num_block=3, scale=scale).state_dict()  # same names as BasicSR
    model = from_basicsr(src, tmp_path)
    assert model.scale == scale and len(model.body) == 3
    assert model(torch.rand(1, 3, 4, 4)).shape == (1, 3, 4 * scale, 4 * scale)


def test_basicsr_bad_keys_are_listed():
    src = fake_basicsr()
    with pytest.raises(ValueError, match=r"unknown keys.*body\.0\.bn\.weight"):
        load_basicsr_msrresnet({**src, "body.0.bn.weight": torch.ones(8)})
    missing = dict(src)
    del missing["body.1.conv2.weight"], missing["conv_hr.bias"]
    with pytest.raises(ValueError, match=r"missing keys.*body\.1\.conv2\.weight.*conv_hr\.bias"):
        load_basicsr_msrresnet(missing)
    with pytest.raises(ValueError, match="shape mismatch"):
        load_basicsr_msrresnet({**src, "conv_hr.weight": torch.zeros(8, 8, 1, 1)})


# ----------------------------------------------------------------------------- discriminator

def test_discriminator_logit_shape_and_downsampling():
    model = SRGANDiscriminator(num_feat=8, input_size=48)
    x = torch.rand(3, 3, 48, 48)
    assert model.features(x).shape == (3, 64, 3, 3)  # 8 * num_feat wide, halved 4 times
    logits = model(x)
    assert logits.shape == (3, 1)
    assert not any(isinstance(m, torch.nn.Sigmoid) for m in model.modules())  # raw logits


def test_discriminator_default_forward():
    model = SRGANDiscriminator().eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 96, 96)).shape == (2, 1)


def test_discriminator_size_errors():
    with pytest.raises(ValueError, match="divisible by 16"):
        SRGANDiscriminator(input_size=100)
    model = SRGANDiscriminator(num_feat=8, input_size=96)
    with pytest.raises(ValueError) as err:
        model(torch.rand(1, 3, 128, 128))
    msg = str(err.value)
    assert "128x128" in msg and "96x96" in msg and "input_size" in msg and "HR patch size" in msg


@pytest.mark.parametrize("name", ["srresnet", "msrresnet"])
def test_generator_output_is_fp32_under_bf16_autocast(name):
    """bf16's step near 1.0 is 2^-8 (about a grey level): the image the losses see is fp32."""
    from srlib.build import MODELS
    model = MODELS[name](num_feat=8, num_block=1)
    x = torch.rand(1, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
        assert torch.nn.functional.conv2d(x, torch.rand(1, 3, 1, 1)).dtype == torch.bfloat16
    assert out.dtype == torch.float32
    assert torch.allclose(out, model(x), atol=0.05)  # the same image, to bf16's precision
