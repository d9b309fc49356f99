"""The command line with a choice of model: --model lenet|resnet, --variant bn; train, eval, summary, resume."""
import re

import pytest
from test_cli import data_root, tiny  # noqa: F401  (the generated-MNIST fixture)

from tinyconv import cli


def test_summary_of_each_model(capsys):
    assert cli.main(["summary", "--model", "resnet"]) == 0
    out = capsys.readouterr().out
    assert "layer2.0.downsample.0 (Conv2d)" in out and "Total params: 77,754" in out
    assert "Mult-adds per example: 2,636,672" in out
    assert cli.main(["summary", "--variant", "bn"]) == 0
    out = capsys.readouterr().out
    assert "bn3 (BatchNorm1d)" in out and "Total params: 62,158" in out


def _config(*argv):
    args = cli.build_parser().parse_args(["train", *argv])
    return cli.resolve_config(args)


def test_resnet_has_its_own_defaults_and_options_still_win():
    config = _config("--model", "resnet")
    assert (config["model"], config["schedule"], config["lr"], config["epochs"]) == ("resnet", "onecycle", 3e-3, 15)
    assert cli.default_out_dir(config).as_posix() == "runs/resnet"
    config = _config("--model", "resnet", "--lr", "1e-3", "--schedule", "cosine")
    assert (config["lr"], config["schedule"]) == (1e-3, "cosine")
    lenet = _config("--variant", "bn")
    assert (lenet["model"], lenet["variant"], lenet["lr"], lenet["schedule"]) == ("lenet", "bn", 1e-3, "cosine")
    assert cli.default_out_dir(lenet).as_posix() == "runs/lenet-bn"
    assert cli.default_out_dir(_config()).as_posix() == "runs/lenet"


def test_variant_with_resnet_is_a_usage_error(capsys):
    assert cli.main(["train", "--model", "resnet", "--variant", "bn"]) == 2
    assert "--variant chooses a LeNet variant" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--model", "vgg"])
    assert e.value.code == 2


def test_a_saved_config_without_a_model_is_a_lenet():
    saved = {k: v for k, v in _config().items() if k != "model"}
    assert cli.check_config(saved, "old.npz")["model"] == "lenet"
    with pytest.raises(Exception, match="model is not valid"):
        cli.check_config(dict(saved, model="vgg"), "bad.npz")


# Two tiny epochs (10 batches) only check that each model trains, saves, evaluates and resumes through the CLI:
# batch norm's running statistics are far from settled after 10 batches, and the generated digits (bars whose row
# is the class) are invisible to the ResNet's global average pooling, so the accuracy here says nothing.
@pytest.mark.parametrize("argv, label", [(["--model", "resnet"], "ResNet"), (["--variant", "bn"], "LeNet (bn")])
def test_train_eval_and_resume(data_root, tmp_path, capsys, argv, label):  # noqa: F811
    out = tmp_path / "run"
    assert cli.main(tiny(data_root, out, *argv)) == 0
    text = capsys.readouterr().out
    first = text.splitlines()[0]
    assert first.startswith(label) and "parameters" in first, first
    assert re.search(r"epoch +2/2 ", text), text
    assert cli.main(["eval", str(out / "checkpoint.npz"), "--data", str(data_root), "--custom-data",
                     "--test-limit", "200"]) == 0
    text = capsys.readouterr().out
    assert label in text and "after 2 epoch(s)" in text and "test accuracy:" in text
    assert cli.main(tiny(data_root, out, *argv, "--resume")) == 0  # a complete run: nothing changes
    assert "nothing to resume" in capsys.readouterr().err
