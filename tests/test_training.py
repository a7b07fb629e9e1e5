"""Training runs: what a run leaves behind, exact resume after SIGKILL, divergence, GAN."""
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, tiny_config, write_config

from srlib import config as config_mod
from srlib import train as train_mod
from srlib.checkpoint import FORMAT
from srlib.config import LoaderParams
from srlib.data.sampler import make_batches
from srlib.evaluate import bicubic_baseline
from srlib.logbook import TrainingDiverged
from srlib.train import make_run, train


def read_log(logdir, kind="train"):
    lines = (logdir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_run_leaves_config_checkpoints_and_metrics(tmp_path, capsys):
    cfg = config_mod.from_dict(tiny_config(tmp_path))
    summary = train(cfg, progress=False)
    said = capsys.readouterr().out  # without a bar: status lines a papermill log can show
    assert "iteration 12/12  loss" in said and "it/s  ETA" in said
    assert "validation at 12: set5 Y-PSNR" in said and "(best" in said
    run = tmp_path / "run"
    assert summary["iterations"] == 12
    assert json.loads((run / "config.json").read_text())["model"] == "msrresnet"
    state = torch.load(run / "last.pt", weights_only=True)  # no pickled objects inside
    assert state["format"] == FORMAT and state["iteration"] == 12
    assert {"networks", "ema", "rng", "config"} <= set(state) and list(state["networks"]) == ["g"]
    assert set(state["networks"]["g"]) == {"weights", "optimizer", "scheduler", "scaler"}
    assert state["config"]["model_params"] == {"num_feat": 8, "num_block": 1}
    train_log, val_log = read_log(run), read_log(run, "val")
    assert [r["iteration"] for r in train_log] == list(range(1, 13))
    assert all(abs(r["time"] - time.time()) < 600 for r in train_log + val_log)  # wall clock
    assert [r["iteration"] for r in val_log] == [0, 6, 12]  # curves start at the untrained model
    # best.pt is the checkpoint of the best validation PSNR, not of the lowest training loss
    best = torch.load(run / "best.pt", weights_only=True)
    best_val = max(val_log, key=lambda r: r["psnr_y"])
    assert best["iteration"] == best_val["iteration"]
    assert best["best_psnr"] == pytest.approx(best_val["psnr_y"])
    # bicubic is scored on the same two images the model was validated on, not all of Set5
    first_two = bicubic_baseline(ROOT / "data/Set5", 4)[:2]
    assert summary["bicubic_psnr_y"] == pytest.approx(sum(r["psnr_y"] for r in first_two) / 2)
    assert summary["bicubic_psnr_y"] > 28.5  # baby and bird are easier than Set5's mean
    assert not list(run.glob("*.tmp")) and not list(run.glob(".*tmp"))


def test_training_moves_towards_the_data(tmp_path):
    """L1 on a fixed held-out batch falls: the data and the model really meet (the original
    moved neither to the device). Measured on a 2-core AMD EPYC, 8 seeds of this config: the
    ratio after/before is 0.859 to 0.868, so 0.93 sits 6 seed-spreads (0.01) above the worst
    and far outside float noise between CPUs. (100 steps of lr 3e-3 gave 0.98: a 2% edge that
    another CPU's rounding crossed.)"""
    data = tiny_config(tmp_path, iterations=300, validation=None, log_every=100,
                       model_params={"num_feat": 16, "num_block": 1},
                       optimizer={"name": "adam", "params": {"lr": 2e-3}})
    data["dataset"]["params"]["batch_size"] = 8
    run = make_run(config_mod.from_dict(data), progress=False)
    held_out = next(iter(make_batches(run.data, LoaderParams(batch_size=32), seed=99, total=1)))

    def l1() -> float:
        with torch.no_grad():
            return (run.g.module(held_out["lr"]) - held_out["hr"]).abs().mean().item()

    before = l1()
    train_mod.fit(run)
    assert l1() < 0.93 * before


def _run_cli(config, *extra):
    cmd = [sys.executable, "-m", "srlib", "train", "--config", str(config), "--no-progress", *extra]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path):
    changes = dict(iterations=60, save_every=10, validation=None,
                   model_params={"num_feat": 16, "num_block": 2}, patch_size=64)
    straight = tmp_path / "straight"
    straight.mkdir()
    config_a = write_config(straight, **changes)
    assert _run_cli(config_a).wait(timeout=300) == 0

    killed = tmp_path / "killed"
    killed.mkdir()
    config_b = write_config(killed, **changes)
    proc = _run_cli(config_b)
    log, last = killed / "run/metrics.jsonl", killed / "run/last.pt"
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until a checkpoint exists and training went past it
        if last.exists() and log.exists() and len(log.read_text().splitlines()) >= 15:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    resumed_from = torch.load(last, weights_only=True)["iteration"]
    assert 10 <= resumed_from < 60

    assert _run_cli(config_b, "--resume", str(last)).wait(timeout=300) == 0
    a = {r["iteration"]: r["loss"] for r in read_log(straight / "run")}
    b = read_log(killed / "run")
    assert [r["iteration"] for r in b] == list(range(1, 61))  # no duplicates from the crash
    after = [(r["iteration"], r["loss"]) for r in b if r["iteration"] > resumed_from]
    assert after and all(loss == a[i] for i, loss in after)
    final_a = torch.load(straight / "run/last.pt", weights_only=True)["networks"]["g"]["weights"]
    final_b = torch.load(killed / "run/last.pt", weights_only=True)["networks"]["g"]["weights"]
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    original = train_mod.standard_step

    calls = []

    def poisoned(*args):
        calls.append(1)
        logs = original(*args)
        return dict(logs, loss=float("nan")) if len(calls) == 9 else logs

    monkeypatch.setattr(train_mod, "standard_step", poisoned)
    cfg = config_mod.from_dict(tiny_config(tmp_path, validation=None))
    with pytest.raises(TrainingDiverged, match="iteration 9.*last good checkpoint"):
        train(cfg, progress=False)
    assert torch.load(tmp_path / "run/last.pt", weights_only=True)["iteration"] == 6


def test_gan_runs_from_a_trained_generator(tmp_path):
    (tmp_path / "g").mkdir()
    train(config_mod.from_dict(tiny_config(tmp_path / "g")), progress=False)
    g_ckpt = tmp_path / "g/run/best.pt"
    gan_dir = tmp_path / "gan"
    gan_dir.mkdir()
    cfg = config_mod.from_dict(tiny_config(
        gan_dir, solver="gan", loss_fn=[{"name": "l1", "weight": 1.0},
                                        {"name": "perceptual", "weight": 1.0,
                                         "params": {"layer": "vgg22"}},
                                        {"name": "adversarial", "weight": 1e-3}],
        generator_path=str(g_ckpt), allow_random_vgg=True, iterations=4, save_every=2,
        discriminator={"params": {"num_feat": 8}}))
    run = make_run(cfg, progress=False)
    g_state = torch.load(g_ckpt, weights_only=True)["networks"]["g"]["weights"]
    assert all(torch.equal(v, g_state[k]) for k, v in run.g.module.state_dict().items())
    summary = train(cfg, progress=False)
    run = gan_dir / "run"
    state = torch.load(run / "last.pt", weights_only=True)
    assert list(state["networks"]) == ["g", "d"]  # G and D in one shape
    assert state["networks"]["d"].keys() == state["networks"]["g"].keys()
    logs = read_log(run)
    assert {"l1", "perceptual", "adversarial", "d_loss", "d_real", "d_fake"} <= set(logs[0])
    assert all(0 < r["d_real"] < 1 and 0 < r["d_fake"] < 1 for r in logs)
    assert any("RANDOM" in n for n in summary["notes"])  # said plainly in the run's notes
    notes = read_log(run, "note")
    assert notes and "RANDOM" in notes[0]["text"]


def test_ema_starts_from_the_loaded_generator(tmp_path):
    """generator_path + ema_decay: the EMA copy starts from the loaded weights, not random ones."""
    (tmp_path / "g").mkdir()
    train(config_mod.from_dict(tiny_config(tmp_path / "g", validation=None)), progress=False)
    g_state = torch.load(tmp_path / "g/run/last.pt", weights_only=True)["networks"]["g"]["weights"]
    for solver, loss in (("std", "l1"), ("gan", [{"name": "l1"}, {"name": "adversarial"}])):
        (tmp_path / solver).mkdir()
        cfg = config_mod.from_dict(tiny_config(
            tmp_path / solver, solver=solver, loss_fn=loss, ema_decay=0.999,
            generator_path=str(tmp_path / "g/run/last.pt"),
            discriminator={"params": {"num_feat": 8}}))
        ema = make_run(cfg, progress=False).ema.module.state_dict()
        assert all(torch.equal(ema[k], v) for k, v in g_state.items()), solver


@pytest.mark.parametrize("kind,passes", [("vanilla", 3), ("relativistic", 4)])
def test_gan_step_runs_d_on_hr_for_g_only_when_the_loss_needs_it(tmp_path, kind, passes):
    """Vanilla G loss looks at D(SR) alone: D(SR) for G, then D(HR), D(SR) for D's update."""
    cfg = config_mod.from_dict(tiny_config(
        tmp_path, solver="gan", validation=None,
        loss_fn=[{"name": "l1"}, {"name": "adversarial", "params": {"kind": kind}}],
        discriminator={"name": "vgg_style", "params": {"num_feat": 8}}))
    run = make_run(cfg, progress=False)
    calls = []
    run.d.module.register_forward_hook(lambda *_: calls.append(1))
    batch = next(iter(make_batches(run.data, cfg.dataset.params, cfg.seed, 1)))
    logs = train_mod.gan_step(run.g, run.d, run.content_loss, run.adversarial, run.adv_weight,
                              batch["lr"], batch["hr"])
    assert len(calls) == passes and torch.isfinite(logs["adversarial"])


def test_a_run_never_destroys_another(tmp_path):
    """Unfinished: resumed. Finished: kept, one line naming --overwrite. Changed schedule on
    resume: refused. Overwrite: a clean start."""
    cfg = config_mod.from_dict(tiny_config(tmp_path, validation=None, iterations=6))
    train(cfg, progress=False)
    run, first = tmp_path / "run", torch.load(tmp_path / "run/last.pt", weights_only=True)
    assert first["finished"] and first["iteration"] == 6
    with pytest.raises(config_mod.ConfigError, match="finished run.*--overwrite"):
        train(dataclasses.replace(cfg, iterations=2), progress=False)
    assert torch.load(run / "last.pt", weights_only=True)["iteration"] == 6  # untouched
    # a run killed at iteration 6 of 12 (its last.pt not marked finished) is resumed
    torch.save(dict(first, finished=False), run / "last.pt")
    longer = dataclasses.replace(cfg, iterations=12)
    assert train(longer, progress=False)["iterations"] == 12
    assert [r["iteration"] for r in read_log(run)] == list(range(1, 13))
    # resuming with another schedule would replay the old one: refused
    torch.save(dict(first, finished=False), run / "last.pt")
    cosine = dataclasses.replace(longer, scheduler=config_mod.SchedulerConfig("cosine"))
    with pytest.raises(config_mod.ConfigError, match='key "scheduler"'):
        train(cosine, progress=False)
    train(dataclasses.replace(cfg, iterations=3), progress=False, overwrite=True)
    assert [r["iteration"] for r in read_log(run)] == [1, 2, 3]


def test_invalid_scheduler_parameters_are_refused(tmp_path):
    for params in ({"T_max": -5}, {"eta_min": -1}):
        cfg = config_mod.from_dict(tiny_config(
            tmp_path, scheduler={"name": "cosine", "params": params}))
        with pytest.raises(config_mod.ConfigError, match='key "scheduler.params.*must be'):
            make_run(cfg, progress=False)


def test_tensorboard_gets_scalars_and_images_when_installed(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    train(config_mod.from_dict(tiny_config(tmp_path, iterations=6)), progress=False)
    events = EventAccumulator(str(tmp_path / "run"), size_guidance={"images": 0}).Reload()
    assert {"train/loss", "train/lr", "val/psnr_y", "val/ssim_y"} <= set(events.Tags()["scalars"])
    assert len(events.Tags()["images"]) == 2  # tiny_config validates on 2 images
    config_text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert '"model": "msrresnet"' in config_text  # the run's config, readable in TensorBoard


def _v1_config(tmp_path) -> dict:
    """The config of the run that tests/data/v1_gan_iteration4.pt was saved from."""
    return tiny_config(tmp_path, solver="gan", iterations=8, save_every=4, validation=None,
                       ema_decay=0.9, model_params={"num_feat": 4, "num_block": 1},
                       loss_fn=[{"name": "l1"}, {"name": "adversarial", "weight": 0.01}],
                       scheduler={"name": "cosine"}, log_every=4,
                       discriminator={"name": "vgg_style", "params": {"num_feat": 4},
                                      "scheduler": {"name": "multistep"}})


def test_a_checkpoint_of_the_previous_format_resumes(tmp_path):
    """tests/data/v1_gan_iteration4.pt was written by srlib-checkpoint-v1 code (G at the top
    level, D under "extra") at iteration 4 of 8, with EMA and a schedule for G and D; the
    weights its uninterrupted run ended with were saved beside it. Resumed today, the run
    continues from 4 and ends on those weights (bit for bit on the CPU that made them;
    within float noise elsewhere)."""
    (tmp_path / "run").mkdir()
    shutil.copy(ROOT / "tests/data/v1_gan_iteration4.pt", tmp_path / "run/last.pt")
    summary = train(config_mod.from_dict(_v1_config(tmp_path)), progress=False)
    assert summary["iterations"] == 8
    assert [r["iteration"] for r in read_log(tmp_path / "run")] == [8]  # 5-8 in one window
    state = torch.load(tmp_path / "run/last.pt", weights_only=True)
    assert state["format"] == FORMAT
    ref = torch.load(ROOT / "tests/data/v1_gan_iteration8_weights.pt", weights_only=True)
    for name, saved in (("g", ref["g"]), ("d", ref["d"])):
        ours = state["networks"][name]["weights"]
        assert ours.keys() == saved.keys()
        for k in saved:
            torch.testing.assert_close(ours[k], saved[k], rtol=1e-4, atol=1e-6)
    for k in ref["ema"]:
        torch.testing.assert_close(state["ema"][k], ref["ema"][k], rtol=1e-4, atol=1e-6)


def test_a_plateau_schedule_for_the_discriminator_steps_on_validation(tmp_path):
    """D's "reduce" schedule used to be stepped inside the GAN step without a metric (an
    error); G and D now share one stepping rule: a plateau schedule steps on each validation."""
    (tmp_path / "g").mkdir()
    train(config_mod.from_dict(tiny_config(tmp_path / "g", validation=None, iterations=2)),
          progress=False)
    plateau = {"name": "reduce", "params": {"patience": 0, "threshold": 100.0,
                                            "threshold_mode": "abs", "factor": 0.5}}
    cfg = config_mod.from_dict(tiny_config(
        tmp_path, solver="gan", iterations=8, generator_path=str(tmp_path / "g/run/last.pt"),
        loss_fn=[{"name": "l1"}, {"name": "adversarial", "weight": 1e-3}],
        validation={"root": str(ROOT / "data/Set5"), "name": "set5", "every": 4,
                    "max_images": 1},
        discriminator={"params": {"num_feat": 8}, "scheduler": plateau,
                       "optimizer": {"name": "adam", "params": {"lr": 1e-3}}}))
    train(cfg, progress=False)
    d_state = torch.load(tmp_path / "run/last.pt", weights_only=True)["networks"]["d"]
    # validations at 0, 4, 8: the first sets the best, the next two (no 100 dB gain) halve it
    assert d_state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-3 / 4)


def test_a_run_piped_to_a_file_logs_status_and_validation_lines(tmp_path):
    """No terminal, no bar: `srlib train > log` (nohup, a rented GPU) shows iteration, loss,
    lr, it/s, ETA and each validation in the file."""
    config = write_config(tmp_path, iterations=12, log_every=2)
    log = tmp_path / "train.log"
    with open(log, "w") as out:
        done = subprocess.run([sys.executable, "-m", "srlib", "train", "--config", str(config)],
                              cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=300,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
    text = log.read_text()
    assert done.returncode == 0, text
    assert "\r" not in text  # no progress-bar frames
    assert "iteration 12/12  loss" in text and "lr 1.00e-03" in text and "it/s  ETA" in text
    assert [line.split(":")[0] for line in text.splitlines() if line.startswith("validation")] \
        == ["validation at 0", "validation at 6", "validation at 12"]


def test_sigterm_saves_and_the_resumed_run_ends_as_an_uninterrupted_one(tmp_path):
    """What a cloud machine sends before it stops: the run ends after its current iteration,
    with last.pt at that iteration (not the last multiple of save_every), exit code 143."""
    changes = dict(iterations=200, save_every=1000, validation=None, log_every=1,
                   model_params={"num_feat": 16, "num_block": 2}, patch_size=48)
    (tmp_path / "straight").mkdir()
    assert _run_cli(write_config(tmp_path / "straight", **changes)).wait(timeout=300) == 0
    (tmp_path / "stopped").mkdir()
    config = write_config(tmp_path / "stopped", **changes)
    proc, log = _run_cli(config), tmp_path / "stopped/run/metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and log.read_text().count("train") > 30):
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 143, out
    stopped_at = torch.load(tmp_path / "stopped/run/last.pt", weights_only=True)
    assert 30 < stopped_at["iteration"] < 200 and not stopped_at["finished"]
    assert f"stopped by SIGTERM at iteration {stopped_at['iteration']}: last.pt saved" in out
    assert _run_cli(config).wait(timeout=300) == 0  # the same command resumes
    a = torch.load(tmp_path / "straight/run/last.pt", weights_only=True)["networks"]["g"]
    b = torch.load(tmp_path / "stopped/run/last.pt", weights_only=True)["networks"]["g"]
    assert all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])
    assert [r["iteration"] for r in read_log(tmp_path / "stopped/run")] == list(range(1, 201))


def test_without_tensorboard_a_run_says_so_once(tmp_path, monkeypatch, capsys):
    from srlib import logbook
    monkeypatch.setattr(logbook, "SummaryWriter", None)
    summary = train(config_mod.from_dict(tiny_config(tmp_path, iterations=2, validation=None)),
                    progress=False)
    said = capsys.readouterr().out
    assert said.count("NOTE: TensorBoard is not installed") == 1 and '".[tensorboard]"' in said
    assert any("TensorBoard" in n for n in summary["notes"])
    assert not list((tmp_path / "run").glob("events.out.tfevents*"))
