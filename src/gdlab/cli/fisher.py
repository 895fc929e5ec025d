"""``gdlab fisher``: the Fisher information of q three ways (and in closed form), and KL ≈ ½ δᵀFδ."""

from __future__ import annotations

from typing import Optional

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gdlab.cli import UserError, app, check_json_path, emit_json, fmt, json_num

DELTAS = (1e-1, 1e-2, 1e-3, 1e-4)


@app.command("fisher", no_args_is_help=True)
@click.option("--at", "at", required=True, help='The distribution q_theta, e.g. "N(1, 2)" (mean 1, VARIANCE 2) or '
              '"N([0,0], [[1,0.5],[0.5,2]])".')
@click.option("--param", default=None, help="Parameterization of a 1-D q: mean_var (default), mean_std, mean_logstd, "
              "mean_precision, natural, expectation. d-D: cholesky (gaussian) or mean_logstd (diag-gaussian).")
@click.option("--family", type=click.Choice(["gaussian", "diag-gaussian"]), default="gaussian", show_default=True,
              help="q's family: full covariance or diagonal.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Seed of the random direction of delta in the second-order check.")
@click.option("--json", "json_out", default=None, metavar="PATH|-",
              help="Write the matrices and checks as JSON to PATH, or to stdout with '-'.")
def fisher_command(at: str, param: Optional[str], family: str, seed: int, json_out: Optional[str]) -> None:
    """The Fisher information F(theta) of q: in closed form and by three autodiff routes.

    \b
    kl_hessian   the Hessian of KL(q_theta || q_theta') at theta' = theta (F is KL's curvature)
    score        E[grad log q  grad log q^T], the covariance of the score (exact cubature)
    neg_hessian  -E[Hessian of log q] (exact cubature)

    Prints each matrix, their largest difference from one another, F's eigenvalues, and the
    second-order check KL(q_theta || q_theta+delta) against 1/2 delta^T F delta for |delta| = 1e-1 ... 1e-4
    along a random direction: the ratio tends to 1 as delta shrinks.

    \b
    Example:
      gdlab fisher --at "N(1, 2)" --param mean_var
    """
    import jax

    check_json_path(json_out)
    with jax.enable_x64(True):
        report = _report(at, param, family, seed)
    emit_json(report, json_out)
    if json_out != "-":
        _print(Console(), report)


def _report(at: str, param: Optional[str], family_name: str, seed: int) -> dict:
    import itertools

    import jax.numpy as jnp
    import numpy as np

    from gdlab.divergences import kl_gaussian
    from gdlab.families import make_family
    from gdlab.fisher import METHODS, fisher_information
    from gdlab.specs import parse_distribution

    spec = parse_distribution(at, what="--at")
    if spec.n_components != 1:
        raise UserError(f'--at "{at}" is a mixture; the Fisher information is of one Gaussian q, N(mean, variance).')
    fam = make_family(family_name, spec.dim, param)
    cov = np.asarray(spec.covs[0])
    if fam.name == "diag-gaussian" and spec.dim > 1 and np.any(cov != np.diag(np.diag(cov))):
        raise UserError(f'--at "{at}" has a non-diagonal covariance; use --family gaussian or a diagonal covariance.')
    theta = fam.from_moments(jnp.asarray(spec.means[0]), jnp.asarray(cov))
    if not bool(fam.in_domain(theta)) or not bool(jnp.all(jnp.isfinite(theta))):
        raise UserError(f'--at "{at}" has no finite parameters in {fam.param!r}; give a less extreme distribution.')
    matrices = {m: np.asarray(fisher_information(fam, theta, m)) for m in METHODS}
    if not all(np.all(np.isfinite(f)) for f in matrices.values()):
        raise UserError(f'the Fisher information at "{at}" overflows float64 in {fam.param!r}; give a less extreme distribution.')
    max_diff = max(float(np.max(np.abs(matrices[a] - matrices[b]))) for a, b in itertools.combinations(METHODS, 2))
    analytic = matrices["analytic"]
    direction = np.random.default_rng(seed).normal(size=fam.n_params)
    direction /= np.linalg.norm(direction)
    m0, c0 = fam.moments(theta)
    checks = []
    for size in DELTAS:
        delta = size * direction
        m1, c1 = fam.moments(theta + jnp.asarray(delta))
        kl = float(kl_gaussian(m0, c0, m1, c1))
        quadratic = 0.5 * float(delta @ analytic @ delta)
        checks.append({"delta_norm": size, "kl": kl, "quadratic": quadratic,
                       "ratio": kl / quadratic if quadratic > 0 else float("nan")})
    return {"param": fam.param, "family": fam.name, "at": spec.text, "param_names": list(fam.param_names),
            "theta": json_num(theta), **{m: json_num(f) for m, f in matrices.items()},
            "max_abs_diff": max_diff, "eigenvalues": json_num(np.linalg.eigvalsh(0.5 * (analytic + analytic.T))),
            "direction": json_num(direction), "second_order": checks}


def _print(console: Console, report: dict) -> None:
    import numpy as np

    console.print(f"Fisher information of q = {report['at']} in {report['family']} / {report['param']}: "
                  f"theta = ({', '.join(report['param_names'])}) = {fmt(report['theta'])}", highlight=False)
    table = Table(header_style="bold")
    table.add_column("method")
    table.add_column("F(theta)", overflow="fold")
    labels = {"analytic": "analytic (closed form)", "kl_hessian": "Hessian of KL(q_theta||q_theta')",
              "score": "E[score score^T]", "neg_hessian": "-E[Hessian of log q]"}
    for method, label in labels.items():
        table.add_row(Text(label), fmt(np.array(report[method], dtype=float)))
    console.print(table)
    console.print(f"largest difference between the four: {report['max_abs_diff']:.3g}", highlight=False)
    console.print(f"eigenvalues of F: {fmt(report['eigenvalues'])}", highlight=False)
    check = Table(title="second order: KL(q_theta || q_theta+delta) vs 1/2 delta^T F delta", header_style="bold")
    for col in ("|delta|", "KL", "1/2 delta^T F delta", "ratio"):
        check.add_column(col, justify="right")
    for row in report["second_order"]:
        check.add_row(f"{row['delta_norm']:.0e}", f"{row['kl']:.6e}", f"{row['quadratic']:.6e}", f"{row['ratio']:.6f}")
    console.print(check)
