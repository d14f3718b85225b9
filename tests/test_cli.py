"""The command line, called as main(argv) -> exit code."""

import json

import pytest

from kronsgd.cli.main import main


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """The demo draws into ./kronsgd-demo by default: keep it out of the source tree."""
    monkeypatch.chdir(tmp_path)


def test_demo_prints_loss_and_per_step_cost(capsys):
    assert main(["demo", "--n", "256", "--width", "128", "--steps", "40"]) == 0
    out = capsys.readouterr().out
    assert "per step" in out and "multiply-adds" in out and "training loss" in out
    assert "pictures: kronsgd-demo/demo_loss.png" in out


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


def test_demo_writes_pictures_to_the_plots_folder_and_json_lists_them(tmp_path, capsys):
    folder = tmp_path / "out"
    assert main(["demo", "--n", "128", "--width", "64", "--steps", "20", "--json", "--plots", str(folder)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["plots"] == [str(folder / "demo_loss.png"), str(folder / "demo_fired.png")]
    assert all((folder / name).stat().st_size > 0 for name in ("demo_loss.png", "demo_fired.png"))


def test_demo_no_plots_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--n", "128", "--width", "64", "--steps", "20", "--no-plots"]) == 0
    assert "pictures" not in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["demo", "inspect", "train", "predict", "bench"])
def test_every_subcommand_has_help_with_defaults(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: kronsgd {command}")
    if command not in ("predict",):
        assert "(default: " in out


def test_output_errors_are_one_line_and_exit_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["demo", "--steps", "5", "--plots", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kronsgd demo: error: --plots") and err.count("\n") == 1


def test_an_internal_error_is_one_line_exit_1_and_debug_shows_it(monkeypatch, capsys):
    import kronsgd.cli.demo

    def broken(**_):
        raise TypeError("boom")

    monkeypatch.setattr(kronsgd.cli.demo, "run_demo", broken)
    assert main(["demo", "--no-plots"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error (TypeError: boom)" in err and "KRONSGD_DEBUG" in err
    monkeypatch.setenv("KRONSGD_DEBUG", "1")
    with pytest.raises(TypeError, match="boom"):
        main(["demo", "--no-plots"])
