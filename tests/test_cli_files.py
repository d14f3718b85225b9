"""Every input file the command line reads, broken in every common way: one line naming the file, exit 2.

The files: train's DATA (.npz, .npy) and --y (.npy, .csv), predict's MODEL and DATA (.npz,
.npy), inspect's FILE (.npz, .npy). The ways: truncated (at several lengths), empty, foreign
(bytes of another format under the right name) and missing.
"""

import numpy as np
import pytest

from kronsgd import KroneckerData, TwoLayerNet
from kronsgd.cli.main import main

N, DIMS = 30, (3, 4)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """One valid file of every kind, and the argv that reads it as each command does."""
    folder = tmp_path_factory.mktemp("good")
    rng = np.random.default_rng(0)
    factors = [rng.standard_normal((N, 1, d)) for d in DIMS]
    dense = KroneckerData(factors).to_dense()  # (N, 12)
    y = rng.standard_normal(N)
    paths = {kind: str(folder / name) for kind, name in [
        ("npz", "data.npz"), ("npy", "x.npy"), ("y.npy", "y.npy"), ("y.csv", "y.csv"), ("model", "model.npz"),
    ]}  # fmt: skip
    np.savez(paths["npz"], X=dense, y=y, extra=np.arange(500.0))  # several entries: a cut can land in any
    np.save(paths["npy"], dense)
    np.save(paths["y.npy"], y)
    np.savetxt(paths["y.csv"], y, delimiter=",")
    TwoLayerNet(DIMS, width=8, seed=1).save(paths["model"])
    return paths


# where the broken file goes in each command line; "{good:...}" is a valid file of that kind
USES = {
    "train DATA.npz": ("npz", ["train", "{bad}", "--out", "{out}"]),
    "train DATA.npy": ("npy", ["train", "{bad}", "--y", "{good:y.npy}", "--out", "{out}"]),
    "train --y .npy": ("y.npy", ["train", "{good:npz}", "--y", "{bad}", "--out", "{out}"]),
    "train --y .csv": ("y.csv", ["train", "{good:npz}", "--y", "{bad}", "--out", "{out}"]),
    "predict MODEL": ("model", ["predict", "{bad}", "{good:npz}"]),
    "predict DATA.npz": ("npz", ["predict", "{good:model}", "{bad}"]),
    "predict DATA.npy": ("npy", ["predict", "{good:model}", "{bad}"]),
    "inspect FILE.npz": ("npz", ["inspect", "{bad}"]),
    "inspect FILE.npy": ("npy", ["inspect", "{bad}"]),
}
SUFFIX = {"npz": ".npz", "npy": ".npy", "y.npy": ".npy", "y.csv": ".csv", "model": ".npz"}


def _foreign(kind, good):
    """Bytes of another format under this kind's name: a .npz for a .npy, a .npy for a .npz, a DATA
    file for a model, binary for a CSV."""
    if kind == "y.csv":
        return bytes(range(256))
    other = good["npz"] if kind in ("npy", "y.npy", "model") else good["npy"]
    with open(other, "rb") as handle:
        return handle.read()


def _argv(use, path, good, tmp_path):
    """The command line of ``use`` with ``path`` in the place of the file under test."""
    argv = [
        path if part == "{bad}" else str(tmp_path / "out.npz") if part == "{out}" else good[part[6:-1]]
        if part.startswith("{good:") else part
        for part in USES[use][1]
    ]  # fmt: skip
    return argv + (["--steps", "2", "--width", "8", "--batch", "4", "--quiet"] if argv[0] == "train" else [])


def _run(use, bad, good, tmp_path, capsys):
    argv = _argv(use, bad, good, tmp_path)
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (use, err)
    assert out == "" and err.startswith(f"kronsgd {argv[0]}: error: ") and err.count("\n") == 1, err
    assert repr(bad) in err or bad in err, err  # names the file
    assert "internal error" not in err and "Traceback" not in err
    assert not (tmp_path / "out.npz").exists()
    return err


@pytest.mark.parametrize("use", list(USES))
def test_truncated_files(use, good, tmp_path, capsys):
    kind = USES[use][0]
    with open(good[kind], "rb") as handle:
        whole = handle.read()
    bad = str(tmp_path / f"cut{SUFFIX[kind]}")
    cuts = [10, 60, len(whole) // 2, len(whole) - 10]  # in the first header, the first entry, mid-file, the tail
    if kind == "y.csv":  # a CSV cut in the middle of a number reads as a shorter, valid column: cut after a comma
        whole = b"1.5,2\n3,4\n5,"
        cuts = [len(whole)]
    for cut in cuts:
        with open(bad, "wb") as handle:
            handle.write(whole[:cut])
        err = _run(use, bad, good, tmp_path, capsys)
        phrase = {"y.csv": "not a numeric CSV", "model": "damaged or truncated"}.get(kind, "truncated")
        assert phrase in err, (cut, err)


@pytest.mark.parametrize("use", list(USES))
def test_empty_files(use, good, tmp_path, capsys):
    bad = tmp_path / f"empty{SUFFIX[USES[use][0]]}"
    bad.write_bytes(b"")
    assert "empty" in _run(use, str(bad), good, tmp_path, capsys)


@pytest.mark.parametrize("use", list(USES))
def test_foreign_files(use, good, tmp_path, capsys):
    kind = USES[use][0]
    bad = tmp_path / f"foreign{SUFFIX[kind]}"
    bad.write_bytes(_foreign(kind, good))
    err = _run(use, str(bad), good, tmp_path, capsys)
    phrase = {"y.csv": "not a numeric CSV", "model": "not a kronsgd model"}.get(kind, "rename it to end in")
    assert phrase in err, err


@pytest.mark.parametrize("use", list(USES))
def test_missing_files(use, good, tmp_path, capsys):
    bad = str(tmp_path / f"nothing{SUFFIX[USES[use][0]]}")
    assert "does not exist" in _run(use, bad, good, tmp_path, capsys)


def test_a_file_of_no_known_format_is_named_as_such(good, tmp_path, capsys):
    bad = tmp_path / "text.npz"
    bad.write_text("hello, this is not an archive\n")
    err = _run("train DATA.npz", str(bad), good, tmp_path, capsys)
    assert "does not start with the signature of a .npz file, so it is another kind of file" in err


def test_the_good_files_are_good(good, tmp_path, capsys):
    """The same command lines with valid files succeed: the failures above come from the damage."""
    for use, (kind, _) in USES.items():
        assert main(_argv(use, good[kind], good, tmp_path)) == 0, (use, capsys.readouterr().err)
        assert capsys.readouterr().err == ""
