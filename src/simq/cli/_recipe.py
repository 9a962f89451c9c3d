"""Recipes: a command's options in a YAML file (``--config``), checked against the command's own
flags, and the resolved options written back so that a run can be repeated."""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from simq.errors import InvalidArgumentError, OutputError

__all__ = ["add_recipe_argument", "apply_recipe", "write_recipe"]

# Options that say how to run, not what to compute: never read from or written to a recipe.
_NOT_RECIPE = frozenset({"config", "resume", "debug", "run", "command", "help", "argv", "ray", "ray_share"})  # not what, but how or where


def add_recipe_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, metavar="RECIPE.yaml",
        help="read options from a YAML file (keys are the long flags, e.g. max-accuracy-drop: 1); flags given "
        "on the command line win. Every run writes its resolved recipe to OUT/recipe.yaml",
    )  # fmt: skip


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if a.dest not in _NOT_RECIPE and a.dest is not argparse.SUPPRESS}


def _explicit(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """The options given on the command line (a value equal to the default still counts): the
    command's own arguments parsed again with every default suppressed."""
    command = parser.prog.split()[-1]
    own = list(argv[argv.index(command) + 1 :]) if command in argv else list(argv)
    saved = [(action, action.default) for action in parser._actions]
    try:
        for action, _ in saved:
            action.default = argparse.SUPPRESS
        given, _ = parser.parse_known_args(own)
    finally:
        for action, default in saved:
            action.default = default
    return set(vars(given))


# Flags that set a boolean (``--keep-slower``, ``--no-early-rejection``, ``--[no-]early-acceptance``).
_SWITCHES = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse.BooleanOptionalAction)


def _convert(key: str, value: Any, action: argparse.Action, where: Path) -> Any:
    flag = key.replace("_", "-")
    if value is None:  # an option left unset, as written recipes record it
        if isinstance(action, argparse._AppendAction):
            return []
        return action.default if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)) else None
    if isinstance(action, _SWITCHES):
        if not isinstance(value, bool):
            raise InvalidArgumentError(f"{where}: {flag} is true or false, not {value!r}.")
        return value
    if isinstance(action, argparse._AppendAction):
        values = value if isinstance(value, list) else [value]
        return [_convert_one(flag, v, action, where) for v in values]
    return _convert_one(flag, value, action, where)


def _convert_one(flag: str, value: Any, action: argparse.Action, where: Path) -> Any:
    if value is None or isinstance(value, (dict, list)):
        raise InvalidArgumentError(f"{where}: {flag} takes one value, not {value!r}.")
    try:
        converted = action.type(str(value)) if action.type is not None else str(value)
    except argparse.ArgumentTypeError as e:  # the flag's own converter says what it wants, as on a command line
        raise InvalidArgumentError(f"{where}: {flag}: {e}.") from None
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{where}: {flag} cannot be {value!r}.") from None
    if action.choices is not None and converted not in action.choices:
        raise InvalidArgumentError(f"{where}: {flag} is one of {', '.join(map(str, action.choices))}, not {value!r}.")
    return converted


def apply_recipe(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: Sequence[str]) -> argparse.Namespace:
    """`args` with the recipe of ``args.config`` filled in under the flags given explicitly.

    Raises:
        InvalidArgumentError: The file is missing or not a YAML mapping, or a key is no option of
            this command (naming the key and the closest option), or a value does not fit its option.
    """
    path = getattr(args, "config", None)
    if path is None:
        return args
    try:
        recipe = yaml.safe_load(path.read_text())
    except OSError as e:
        raise InvalidArgumentError(f"--config {path}: {e.strerror or e}.") from None
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        raise InvalidArgumentError(f"--config {path} is not valid YAML{f' (line {line + 1})' if line is not None else ''}.") from None
    if recipe is None:
        return args
    if not isinstance(recipe, dict):
        raise InvalidArgumentError(f"--config {path} must map option names to values (e.g. budget: 30).")
    actions = _actions(parser)
    explicit = _explicit(parser, argv)
    for raw_key, value in recipe.items():
        key = str(raw_key).replace("-", "_")
        if key not in actions:
            close = difflib.get_close_matches(key.replace("_", "-"), [k.replace("_", "-") for k in actions], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InvalidArgumentError(f"{path}: {str(raw_key)!r} is not an option of simq {parser.prog.split()[-1]}{hint}")
        converted = _convert(key, value, actions[key], path)  # checked even where a flag wins
        if key not in explicit:
            setattr(args, key, converted)
    return args


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def write_recipe(parser: argparse.ArgumentParser, args: argparse.Namespace, path: Path) -> None:
    """Write the resolved options (every option of the command, defaults included) as YAML."""
    recipe = {key.replace("_", "-"): _plain(getattr(args, key)) for key in _actions(parser) if hasattr(args, key)}
    try:
        partial = path.with_name(path.name + ".partial")
        partial.write_text(yaml.safe_dump(recipe, sort_keys=False))
        partial.replace(path)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}.") from None
