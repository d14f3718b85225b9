"""The command line, called as main(argv) -> exit code."""

import json

from kronsgd._cli import main


def test_demo_prints_loss_and_per_step_cost(capsys):
    assert main(["demo", "--n", "256", "--width", "128", "--steps", "40"]) == 0
    out = capsys.readouterr().out
    assert "per step" in out and "multiply-adds" in out and "training loss" in out


def test_demo_json_is_machine_readable(capsys):
    assert main(["demo", "--n", "200", "--width", "64", "--steps", "30", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["summary"]["steps"] == 30
    assert report["history"][-1]["loss"] < report["history"][0]["loss"]


def test_bad_usage_exits_2(capsys):
    assert main(["demo", "--steps", "many"]) == 2
    assert "invalid int value" in capsys.readouterr().err
    assert main(["no-such-command"]) == 2


def test_bad_values_give_a_clear_message_and_exit_2(capsys):
    assert main(["demo", "--width", "0"]) == 2
    assert "width must be an int in the range [1, inf)" in capsys.readouterr().err


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "demo" in capsys.readouterr().out
