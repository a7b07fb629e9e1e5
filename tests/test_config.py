"""Config loading: the original format works, and every mistake gets one clear message."""
import json
from pathlib import Path

import pytest

from srlib import build
from srlib import config as config_mod
from srlib.config import ConfigError
from srlib.train import make_run

ROOT = Path(__file__).resolve().parents[1]

ORIGINAL = {
    "logdir": "runs/msrresnet", "model": "srresnet", "solver": "std", "epochs": 10,
    "loss_fn": "mse", "patch_size": 128,
    "dataset": {"root": "data/div2k", "name": "div2k",
                "params": {"batch_size": 16, "num_workers": 2, "shuffle": True}},
    "optimizer": {"name": "adam", "params": {"lr": 1e-4, "betas": [0.9, 0.99]}},
    "scheduler": {"name": "reduce", "params": {}},
}


def write(tmp_path, data, name="c.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def error_of(tmp_path, data) -> str:
    """The one-line message of a bad config: from loading it, or from checking its names
    against the build tables (what `srlib train` does before building anything)."""
    with pytest.raises(ConfigError) as info:
        build.check(config_mod.load(write(tmp_path, data)))
    return str(info.value)


def test_original_format_loads_with_typed_sections(tmp_path):
    cfg = config_mod.load(write(tmp_path, ORIGINAL))
    assert cfg.model == "srresnet" and cfg.solver == "std" and cfg.epochs == 10
    assert cfg.dataset.params.batch_size == 16 and cfg.dataset.params.num_workers == 2
    assert cfg.optimizer.params["betas"] == [0.9, 0.99]
    assert cfg.scheduler.name == "reduce"
    assert [(t.name, t.weight) for t in cfg.loss_fn] == [("mse", 1.0)]
    # relative paths start at the config's own folder when it is not under configs/
    assert Path(cfg.logdir) == tmp_path / "runs/msrresnet"


def test_paths_in_project_configs_start_at_the_project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # wherever you run from
    cfg = config_mod.load(ROOT / "configs/quick/msrresnet.json")
    assert Path(cfg.dataset.root) == ROOT / "data/T91"


def test_every_shipped_config_is_valid():
    paths = sorted((ROOT / "configs").rglob("*.json"))
    assert paths
    for path in paths:
        data = json.loads(path.read_text())
        # generator_path / checkpoint point at files a previous run makes
        data.pop("generator_path", None)
        data.pop("checkpoint", None)
        build.check(config_mod.from_dict(data, base_dir=ROOT))


def test_loss_list_with_weights_and_adversarial_shorthand(tmp_path):
    data = dict(ORIGINAL, loss_fn=[{"name": "l1", "weight": 0.01}, "perceptual"])
    cfg = config_mod.load(write(tmp_path, data))
    assert [(t.name, t.weight) for t in cfg.loss_fn] == [("l1", 0.01), ("perceptual", 1.0)]
    gan = config_mod.load(write(tmp_path, dict(ORIGINAL, solver="gan", loss_fn="adversarial")))
    assert [(t.name, t.weight) for t in gan.loss_fn] == [("perceptual", 1.0), ("adversarial", 1e-3)]
    assert gan.loss_fn[0].params == {"before_activation": False}  # the paper's phi_5,4
    assert gan.discriminator.name == "srgan"  # default discriminator filled in


def test_dumps_round_trip(tmp_path):
    cfg = config_mod.load(write(tmp_path, ORIGINAL))
    saved = tmp_path / "run" / "config.json"
    saved.parent.mkdir()
    saved.write_text(config_mod.dumps(cfg))
    again = config_mod.load(saved)
    assert again == cfg


def test_overrides(tmp_path):
    cfg = config_mod.load(write(tmp_path, ORIGINAL),
                          ["iterations=7", "optimizer.params.lr=5e-4",
                           "dataset.params.shuffle=false"])
    assert cfg.iterations == 7 and cfg.optimizer.params["lr"] == 5e-4
    assert cfg.dataset.params.shuffle is False
    with pytest.raises(ConfigError, match="key=value"):
        config_mod.load(write(tmp_path, ORIGINAL), ["iterations"])


def test_an_override_inside_a_default_section_keeps_its_other_defaults(tmp_path):
    """--set optimizer.params.lr on a config without optimizer.params used to replace the
    default {"lr", "betas"} by {"lr"} alone, silently changing the betas to torch's."""
    data = {k: v for k, v in ORIGINAL.items() if k != "optimizer"}
    cfg = config_mod.load(write(tmp_path, data), ["optimizer.params.lr=5e-4",
                                                  "discriminator.params.num_feat=16"])
    assert cfg.optimizer.params == {"lr": 5e-4, "betas": [0.9, 0.99]}
    assert cfg.discriminator.optimizer.params == {"lr": 1e-4, "betas": [0.9, 0.99]}
    cfg = config_mod.load(write(tmp_path, dict(data, optimizer={"name": "adamw"})),
                          ["optimizer.params.weight_decay=0.01"])
    assert cfg.optimizer.name == "adamw"
    assert cfg.optimizer.params == {"lr": 1e-4, "betas": [0.9, 0.99], "weight_decay": 0.01}


@pytest.mark.parametrize("loss_fn,key", [([5], "loss_fn[0]"), (["l1", [2]], "loss_fn[1]"),
                                         ([], "loss_fn"), (7, "loss_fn")])
def test_a_loss_term_that_is_not_a_name_or_an_object_is_one_line(tmp_path, loss_fn, key):
    msg = error_of(tmp_path, dict(ORIGINAL, loss_fn=loss_fn))
    assert f'key "{key}"' in msg and "\n" not in msg


def test_values_out_of_range_for_their_type(tmp_path):
    assert "64 bits" in error_of(tmp_path, dict(ORIGINAL, seed=2**70))
    assert "finite" in error_of(tmp_path, dict(ORIGINAL, max_minutes=float("inf")))
    assert 'key "logdir": empty' in error_of(tmp_path, dict(ORIGINAL, logdir=" "))


def test_a_config_file_that_is_not_utf8_or_not_a_file_is_one_line(tmp_path):
    latin = tmp_path / "latin.json"
    latin.write_bytes('{"logdir": "café"}'.encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        config_mod.load(latin)
    with pytest.raises(ConfigError, match="Is a directory"):
        config_mod.load(tmp_path)


def test_invalid_json_names_line_and_column(tmp_path):
    msg = error_of(tmp_path, '{\n  "logdir": "x",\n  "model": msrresnet\n}')
    assert "c.json" in msg and "line 3" in msg and "column 12" in msg


def test_unknown_key_suggests_the_right_one(tmp_path):
    msg = error_of(tmp_path, dict(ORIGINAL, epoch=3))
    assert 'unknown key "epoch"' in msg and 'did you mean "epochs"' in msg
    msg = error_of(tmp_path, dict(ORIGINAL, dataset=dict(ORIGINAL["dataset"], batch_size=4)))
    assert 'unknown key "dataset.batch_size"' in msg and "params" in msg


@pytest.mark.parametrize("key,table", [("model", build.MODELS), ("solver", config_mod.SOLVERS)])
def test_unknown_option_lists_valid_choices(tmp_path, key, table):
    msg = error_of(tmp_path, dict(ORIGINAL, **{key: "nope"}))
    assert f'key "{key}"' in msg and '"nope"' in msg
    assert all(name in msg for name in table)


def test_unknown_nested_options(tmp_path):
    msg = error_of(tmp_path, dict(ORIGINAL, optimizer={"name": "sgd", "params": {}}))
    assert 'key "optimizer.name"' in msg and "adam" in msg
    msg = error_of(tmp_path, dict(ORIGINAL, scheduler={"name": "step"}))
    assert 'key "scheduler.name"' in msg and "cosine" in msg
    msg = error_of(tmp_path, dict(ORIGINAL, dataset=dict(ORIGINAL["dataset"], name="imagenet")))
    assert 'key "dataset.name"' in msg and "df2k" in msg
    msg = error_of(tmp_path, dict(ORIGINAL, loss_fn=["l1", {"name": "ssim"}]))
    assert 'key "loss_fn[1].name"' in msg and "perceptual" in msg


def test_wrong_types_and_ranges(tmp_path):
    msg = error_of(tmp_path, dict(ORIGINAL, epochs="10"))
    assert 'key "epochs": expected an integer, got "10"' in msg
    assert 'key "epochs": must be >= 1' in error_of(tmp_path, dict(ORIGINAL, epochs=0))
    small_batch = dict(ORIGINAL["dataset"], params={"batch_size": 0})
    msg = error_of(tmp_path, dict(ORIGINAL, dataset=small_batch))
    assert 'key "dataset.params.batch_size": must be >= 1' in msg
    assert 'key "optimizer.params.lr"' in error_of(
        tmp_path, dict(ORIGINAL, optimizer={"name": "adam", "params": {"lr": -1}}))
    assert 'key "patch_size"' in error_of(tmp_path, dict(ORIGINAL, patch_size=130))
    assert 'key "dataset.params.shuffle": expected true or false' in error_of(
        tmp_path, dict(ORIGINAL, dataset=dict(ORIGINAL["dataset"], params={"shuffle": "yes"})))
    assert "top level" in error_of(tmp_path, [1, 2])


def test_missing_required_keys(tmp_path):
    msg = error_of(tmp_path, {k: v for k, v in ORIGINAL.items() if k != "model"})
    assert 'missing required key "model"' in msg
    msg = error_of(tmp_path, dict(ORIGINAL, dataset={"name": "t91"}))
    assert 'missing required key "dataset.root"' in msg
    msg = error_of(tmp_path, {k: v for k, v in ORIGINAL.items() if k != "epochs"})
    assert '"epochs" or "iterations"' in msg


def test_paths_that_do_not_exist(tmp_path):
    msg = error_of(tmp_path, dict(ORIGINAL, checkpoint="runs/nothing/last.pt"))
    assert 'key "checkpoint": file not found' in msg and "last.pt" in msg
    msg = error_of(tmp_path, dict(ORIGINAL, solver="gan", loss_fn="adversarial",
                                  generator_path="nope.pt"))
    assert 'key "generator_path": file not found' in msg
    with pytest.raises(ConfigError, match="absent.json: No such file or directory"):
        config_mod.load(tmp_path / "absent.json")


def test_solver_and_loss_must_agree(tmp_path):
    assert 'needs an "adversarial" term' in error_of(tmp_path, dict(ORIGINAL, solver="gan"))
    assert 'needs "solver": "gan"' in error_of(tmp_path, dict(ORIGINAL, loss_fn="adversarial"))


@pytest.mark.parametrize("change,key,hint", [
    ({"optimizer": {"name": "adam", "params": {"lrr": 1e-3}}}, "optimizer.params", "lrr"),
    ({"model_params": {"num_feet": 8}}, "model_params", "num_feat"),
    ({"model_params": {"num_feat": -3}}, "model_params", "-3"),
    ({"scheduler": {"name": "cosine", "params": {"eta_mn": 0}}}, "scheduler.params", "eta_mn"),
    ({"loss_fn": [{"name": "l1", "params": {"kind": "l2"}}]}, "loss_fn[0].params", "kind"),
])
def test_bad_builder_parameters_are_one_line_naming_the_key(tmp_path, change, key, hint):
    """A typo or a refused value inside a params dict names its key, not a traceback."""
    data = dict(ORIGINAL, model="msrresnet", iterations=1, scheduler=None,
                dataset={"root": str(ROOT / "data/T91"), "name": "t91"}, validation=None)
    cfg = config_mod.load(write(tmp_path, dict(data, **change)))
    with pytest.raises(ConfigError) as info:
        make_run(cfg, device="cpu", progress=False)
    message = str(info.value)
    assert f'key "{key}' in message and hint in message and "\n" not in message
