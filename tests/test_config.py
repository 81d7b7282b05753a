"""Every option has one home: the configuration dataclasses. The command line's flags, the API's
keywords and the benchmarks' flags are made from their fields and must agree with them."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from seqrec.api import SASRec, config_fields
from seqrec.cli.commands import build_parser
from seqrec.cli.options import add_option_args
from seqrec.config import CleanConfig, EvalConfig, SASRecConfig, TrainConfig
from seqrec.serving.limits import Limits

# command -> (config class, flag prefix, fields left out, how the default is introduced in the help)
COMMANDS = {
    "train": [
        (SASRecConfig, "", {"n_items"}, "without the recipe"),
        (TrainConfig, "", {"quiet"}, "without the recipe"),
        (CleanConfig, "", set(), "default"),
    ],
    "evaluate": [(CleanConfig, "", set(), "default"), (EvalConfig, "", {"protocol"}, "default")],
    "compare": [(CleanConfig, "", set(), "default"), (EvalConfig, "", {"protocol"}, "default")],
    "prepare": [(CleanConfig, "", set(), "default")],
    "serve": [(Limits, "limit", set(), "default")],
}
ALL_CONFIGS = (CleanConfig, SASRecConfig, TrainConfig, EvalConfig, Limits)


def shown(default) -> str:
    if isinstance(default, tuple):
        return ",".join(map(str, default))
    return f"{default:,}" if isinstance(default, int) and not isinstance(default, bool) else str(default)


def actions(command: str) -> dict[str, argparse.Action]:
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    return {a.dest: a for a in sub._actions if a.help != argparse.SUPPRESS}


@pytest.mark.parametrize("cls", ALL_CONFIGS)
def test_every_field_has_help(cls):
    assert all(f.metadata.get("help") for f in dataclasses.fields(cls)), cls.__name__


@pytest.mark.parametrize("command", list(COMMANDS))
def test_each_commands_flags_are_the_config_fields(command):
    got = actions(command)
    for cls, prefix, skip, note in COMMANDS[command]:
        for f in dataclasses.fields(cls):
            if f.name in skip:
                continue
            dest = f"{prefix}_{f.name}" if prefix else f.name
            action = got[dest]
            flag = f"--{prefix + '-' if prefix else ''}{f.name.replace('_', '-')}"
            assert flag in action.option_strings
            assert action.default is None  # not given: the dataclass's default applies
            assert action.help == f"{f.metadata['help']} ({note}: {shown(f.default)})"


def test_a_command_line_without_options_gives_the_dataclass_defaults():
    from seqrec.cli.options import _eval_config, config_options

    args = build_parser().parse_args(["evaluate", "synthetic"])
    assert _eval_config(args, "full") == EvalConfig()
    assert CleanConfig(**config_options(args, CleanConfig)) == CleanConfig()
    args = build_parser().parse_args(
        ["evaluate", "synthetic", "--k", "10,5", "--no-exclude-seen", "--dedupe", "--split", "valid"]
    )
    assert _eval_config(args, "sampled") == EvalConfig(
        ks=(5, 10), exclude_seen=False, split="valid", protocol="sampled"
    )
    assert config_options(args, CleanConfig) == {"dedupe": True}


def test_the_api_keywords_are_the_model_and_training_fields():
    wanted = [f for cls in (SASRecConfig, TrainConfig) for f in dataclasses.fields(cls) if f.name != "n_items"]
    got = config_fields()
    assert [f.name for f in got] == [f.name for f in wanted]
    assert [f.default for f in got] == [f.default for f in wanted]
    assert [f.help for f in got] == [f.metadata["help"] for f in wanted]
    est = SASRec(recipe="paper", hidden=32, loss="bce")
    assert est.get_params() == {"recipe": "paper", "hidden": 32, "loss": "bce"}
    with pytest.raises(Exception, match="did you mean 'hidden'"):
        SASRec(hiden=32)


def test_benchmarks_get_the_same_flags_as_the_train_command():
    p = argparse.ArgumentParser()
    add_option_args(p)
    bench = {
        a.dest: (a.option_strings, a.default, a.help)
        for a in p._actions
        if a.dest != "help" and a.help != argparse.SUPPRESS
    }
    train = actions("train")
    assert bench == {k: (train[k].option_strings, train[k].default, train[k].help) for k in bench}
    assert set(bench) == {f.name for f in config_fields()} - {"quiet"}
