"""Optional dependencies: a missing one is a kronsgd error that says what to pip install."""

import gc
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

import kronsgd
from kronsgd import KroneckerData, KronSGD, KronsgdError, MissingDependencyError, TwoLayerNet
from kronsgd.base.optional import require_module

EXTRAS = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"][
    "optional-dependencies"
]


def _missing(monkeypatch, module):
    """Make ``import module`` fail as it does where the package is not installed."""
    for name in [name for name in sys.modules if name == module or name.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # None in sys.modules: the import raises ImportError


def _check(info, what, extra, module, package):
    """The error names what needs the module and the install line, and that extra installs ``package``."""
    message = str(info.value)
    assert isinstance(info.value, KronsgdError) and isinstance(info.value, ImportError)
    assert what in message and repr(module) in message
    assert message.endswith(f"pip install 'kronsgd[{extra}]'")
    assert any(requirement.startswith(package) for requirement in EXTRAS[extra]), EXTRAS.get(extra)


def test_scikit_learn_estimators(monkeypatch):
    _missing(monkeypatch, "sklearn")
    for name in ("KronMLPRegressor", "KronMLPClassifier"):
        with pytest.raises(MissingDependencyError) as info:
            getattr(kronsgd, name)
        _check(info, f"kronsgd.{name}", "sklearn", "sklearn", "scikit-learn")
    with pytest.raises(ImportError, match=r"kronsgd\[sklearn\]"):  # what `from kronsgd import ...` sees
        exec("from kronsgd import KronMLPRegressor", {})


def test_torch_export(monkeypatch):
    _missing(monkeypatch, "torch")
    net = TwoLayerNet((2, 3), width=4)
    with pytest.raises(MissingDependencyError) as info:
        net.to_torch()
    _check(info, "TwoLayerNet.to_torch()", "torch", "torch", "torch")


def test_ray_backend(monkeypatch):
    _missing(monkeypatch, "ray")
    rng = np.random.default_rng(0)
    data = KroneckerData([rng.standard_normal((8, 1, 2)), rng.standard_normal((8, 1, 3))])
    with pytest.raises(MissingDependencyError) as info:
        KronSGD(TwoLayerNet((2, 3), width=4), data, np.zeros(8), lr=0.1, batch_size=2, workers=2, backend="ray")
    _check(info, "backend='ray'", "ray", "ray", "ray")
    # The traceback holds the half-built Ray engine: collect it here, not at a random later moment
    # (its __del__ complains about the missing Ray, which pytest reports as an unraisable warning).
    del info
    gc.collect()


def test_a_dependency_of_the_dependency_is_named(monkeypatch, tmp_path):
    (tmp_path / "optional_package.py").write_text("import its_own_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    _missing(monkeypatch, "its_own_missing_dependency")
    with pytest.raises(MissingDependencyError) as info:
        require_module("optional_package", "extra", "this feature")
    assert str(info.value) == (
        "this feature needs the optional dependency 'optional_package', which cannot be imported (missing module "
        "'its_own_missing_dependency'). Install it with: pip install 'kronsgd[extra]'"
    )
    assert require_module("math", "extra", "this feature") is sys.modules["math"]


def test_the_base_install_needs_no_extra(tmp_path):
    """Without SciPy, scikit-learn, torch and Ray (the base install), the command line, the advisor
    and KronSGD import and run: a fresh interpreter where importing any of them fails."""
    import subprocess

    script = tmp_path / "base.py"
    script.write_text(
        "import sys\n"
        "for name in ('scipy', 'sklearn', 'torch', 'ray'):\n"
        "    sys.modules[name] = None  # import fails as where it is not installed\n"
        "import numpy as np\n"
        "import kronsgd, kronsgd.cli.main\n"
        "from kronsgd.advisor.report import choose_solver\n"
        "from kronsgd.estimators.cholesky import factor_lower, solve_lower\n"
        "rng = np.random.default_rng(0)\n"
        "X = np.einsum('ia,ib->iab', rng.normal(size=(64, 8)), rng.normal(size=(64, 8))).reshape(64, 64)\n"
        "print(kronsgd.inspect(X).shape)\n"
        "print(choose_solver(64, (8, 8), 1, budget=2**30).recommended)\n"
        "H = X @ X.T + np.eye(64)\n"
        "x = solve_lower(factor_lower(H.copy(), block=16), np.ones((64, 1)), block=16)\n"
        "print(float(np.abs(H @ x - 1).max()) < 1e-8)\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    shape, solver, solved = done.stdout.splitlines()
    assert shape == "(8, 8)" and solver in ("kernel", "sgd") and solved == "True"
