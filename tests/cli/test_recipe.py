"""A run's recipe (OUT/recipe.yaml) read back with ``--config`` is the same run: every option,
switches that default to true or to unset included."""

from __future__ import annotations

import pytest

from simq.cli._main import build_parser
from simq.cli._recipe import apply_recipe, write_recipe
from simq.errors import InvalidArgumentError


def _parsed(argv: list[str]):
    parser = build_parser()
    args = parser.parse_args(argv)
    command = parser._subparsers._group_actions[0].choices[argv[0]]
    return args, command


@pytest.mark.parametrize("flags", [
    [],
    ["--no-early-rejection", "--early-acceptance", "--keep-slower", "--budget", "7", "--final-time-limit", "none"],
    ["--no-early-acceptance", "--no-prune", "--objectives", "accuracy,size"],
])  # fmt: skip
def test_a_written_recipe_reads_back_as_the_same_options(tmp_path, flags):
    argv = ["compile", "zoo:digits-cnn", "--out", str(tmp_path / "out"), *flags]
    args, command = _parsed(argv)
    write_recipe(command, args, tmp_path / "recipe.yaml")
    again_argv = ["compile", "zoo:other", "--config", str(tmp_path / "recipe.yaml")]
    again, _ = _parsed(again_argv)
    again = apply_recipe(command, again, again_argv)
    for key, value in vars(args).items():
        if key not in ("config", "argv", "run", "model"):
            assert getattr(again, key) == value, key
    assert again.model == "zoo:other"  # a flag given on the command line wins over the recipe


def test_a_switch_in_a_recipe_is_true_or_false(tmp_path):
    (tmp_path / "recipe.yaml").write_text("early-rejection: maybe\n")
    argv = ["compile", "zoo:digits-cnn", "--config", str(tmp_path / "recipe.yaml")]
    args, command = _parsed(argv)
    with pytest.raises(InvalidArgumentError, match="early-rejection is true or false"):
        apply_recipe(command, args, argv)
