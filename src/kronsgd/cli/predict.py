"""``kronsgd predict``: load a saved model and write its outputs on the points of a DATA file.

A dense X is factored in the model's own dims with ``rank="auto"`` at ``energy=1``: the
smallest rank that discards only rounding (at most 1e-20 of Σ||x||², a relative residual of
about 1e-10), which is the full rank min(d1, d2) for data without structure. The outputs
depend on a point only through the pre-activations <w_r, x>, which are the same for every
exact factorization of x, so they equal the outputs on the dense input; only the cost
(O(m · n · d · R) for the initial weights' part) grows with the rank R. A kernel model
(``kronsgd train --solver kernel``) depends on a point only through its inner products with
the training points, which are likewise the same for every exact factorization.
"""

from __future__ import annotations

import os

import numpy as np

from ..base.errors import KronsgdError, ValidationError
from . import args as A
from .files import check_output_path, check_targets_for, load_points, write_predictions

_EXACT = 1.0  # energy kept when a dense X is factored for prediction: all of it, up to rounding


def add_parser(sub, formatter) -> None:
    """Register ``predict`` on the subcommand set ``sub``."""
    p = sub.add_parser(
        "predict",
        help="outputs of a saved model on the points of a .npz file",
        description=(
            "Load MODEL (written by 'kronsgd train' with either solver, TwoLayerNet.save or KernelModel.save) and "
            "predict on DATA: factors "
            "factor_0, factor_1, ... or a dense X, which is factored exactly in the model's dims (the smallest "
            "rank that loses only rounding), so predictions equal those on the dense points. If DATA holds y, "
            "the error on it is reported."
        ),
        formatter_class=formatter,
    )
    p.add_argument("model", metavar="MODEL.npz", help="a saved model")
    p.add_argument("data", metavar="DATA", help=".npz with X or factor_0, factor_1, ... (a .npy is read as X)")
    p.add_argument("--out", metavar="FILE", help="write predictions to FILE.npy or FILE.csv (default: print them)")
    p.add_argument(
        "--classify",
        action="store_true",
        help="output the class label argmax_c f_c(x) per point (a kernel classifier: its own labels)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON report (with the predictions when no --out)")
    p.set_defaults(handler=run_predict)


def load_model(path: str):
    """``kronsgd.load(path)``, with a missing or unreadable file reported as a ValidationError."""
    from .. import load

    if not os.path.isfile(path):
        raise ValidationError(f"MODEL {path!r} does not exist (or is not a file).")
    try:
        return load(path)
    except KronsgdError:
        raise  # the loader's own message names the file and what is wrong with it
    except Exception as exc:  # any file the loader cannot parse is bad input, not a crash
        raise ValidationError(f"MODEL {path!r} is not a kronsgd model file ({type(exc).__name__}: {exc})") from None


def run_predict(args) -> int:
    """Predict, write or print; returns the exit code (errors are raised to ``main``)."""
    if args.out:
        check_output_path(args.out, "--out", (".npy", ".csv"))
    net = load_model(args.model)
    if args.classify and net.outputs < 2:
        raise ValidationError(f"--classify needs a model with 2 or more outputs; {args.model!r} has 1.")
    points = load_points(args.data, shape=net.dims, rank="auto", energy=_EXACT, expect_d=net.d)
    try:
        outputs = net.predict(points.data)  # (n,) or (n, C)
    except KronsgdError as exc:
        raise ValidationError(f"DATA {args.data!r}: {exc}") from None
    labels = _labels(net, outputs)  # (n,) or None for one output
    result = labels if args.classify else outputs
    report = {"model": args.model, "data": points.describe(), "outputs": net.outputs, "out": args.out}
    report["kind"] = type(net).__name__
    if points.y is not None:
        report.update(_error_on(points.y, outputs, labels, args))
    if args.out:
        write_predictions(args.out, result)
    if args.json:
        if not args.out:
            report["predictions"] = result
        print(A.dump_json(report))
        return 0
    if not args.out:
        for row in np.atleast_2d(result.T).T:
            print(",".join(_number(v) for v in row))
        return 0
    kind = "class labels" if args.classify else f"{net.outputs} output(s) per point"
    print(f"wrote {result.shape[0]:,} predictions ({kind}) to {args.out}")
    for key, label in (("accuracy", "accuracy on DATA's y: "), ("rmse", "RMSE on DATA's y: "), ("note", "")):
        if key in report:
            print(label + (report[key] if key == "note" else f"{report[key]:.6g}"))
    return 0


def _labels(model, outputs: np.ndarray):
    """argmax_c f_c(x) per point (n,), as the class labels of a kernel classifier's columns; None for one output."""
    if outputs.ndim != 2 or outputs.shape[1] < 2:
        return None
    best = np.argmax(outputs, axis=1)  # (n,)
    classes = getattr(model, "classes", None)  # a kernel classifier's label per output column
    return best if classes is None else classes[best]


def _error_on(y, outputs: np.ndarray, labels, args) -> dict:
    """Accuracy (labels y against argmax of C >= 2 outputs) or RMSE against DATA's stored y.

    A y of another shape is not an error (prediction does not need it): it is noted instead.
    """
    y = check_targets_for(y, outputs.shape[0], f"DATA {args.data!r} (array y)")
    if labels is not None and y.ndim == 1:
        return {"accuracy": float(np.mean(labels == y))}
    if y.shape == outputs.shape:
        return {"rmse": float(np.sqrt(np.mean((outputs - y) ** 2)))}
    return {"note": f"y in DATA ignored: shape {y.shape} does not match the outputs {outputs.shape}"}


def _number(value) -> str:
    return str(value) if isinstance(value, (int, np.integer, str)) else f"{value:.10g}"
