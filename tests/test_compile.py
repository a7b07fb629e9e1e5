"""The full configs' torch.compile path, exercised on the CPU (inductor): a restructure that
breaks a graph or forces a recompile in every step shows here, not first on a rented GPU."""
import torch
from conftest import tiny_config
from torch._dynamo.utils import counters

from srlib import config as config_mod
from srlib.data.sampler import make_batches
from srlib.train import gan_step, make_run, standard_step


def _steps(run, batches, gan: bool) -> None:
    for batch in batches:
        if gan:
            gan_step(run.g, run.d, run.content_loss, run.adversarial, run.adv_weight,
                     batch["lr"], batch["hr"])
        else:
            standard_step(run.g, run.content_loss, batch["lr"], batch["hr"])


def test_compiled_g_and_d_take_standard_and_gan_steps_without_breaks_or_recompiles(tmp_path):
    """G is compiled for a standard run; G and D for a GAN run, D in its two roles (frozen for
    G's loss, trained for its own). After two warm-up steps (which compile forward and
    backward of each), three more steps compile nothing and no graph ever breaks."""
    torch._dynamo.reset()
    counters.clear()
    for gan in (False, True):
        changes = dict(solver="gan", loss_fn=[{"name": "l1"},
                                              {"name": "adversarial", "weight": 1e-3}],
                       discriminator={"name": "vgg_style", "params": {"num_feat": 8}}) \
            if gan else {}
        (tmp_path / str(gan)).mkdir()
        cfg = config_mod.from_dict(tiny_config(tmp_path / str(gan), compile=True,
                                               validation=None, **changes))
        run = make_run(cfg, progress=False)
        assert all(isinstance(n.wrapped, torch._dynamo.eval_frame.OptimizedModule)
                   for n in run.networks().values())
        batches = list(make_batches(run.data, cfg.dataset.params, cfg.seed, 5))
        _steps(run, batches[:2], gan)
        compiled = counters["frames"]["total"]
        assert compiled > 0
        _steps(run, batches[2:], gan)
        assert counters["frames"]["total"] == compiled, dict(counters["frames"])  # no recompile
    assert not counters["graph_break"], dict(counters["graph_break"])
