"""Make the README's pictures in docs/figures/ by running the gdlab commands the README shows.

    make figures          (or: .venv/bin/python scripts/make_figures.py [--out docs/figures] [--only NAME ...])

Each picture is one ``gdlab`` command (printed before it runs), so anyone can make it again, change
it, or make it at another size with ``--plot-size``. The three ``guide_*.png`` pictures are figures
of the guides in examples/: the script runs those guides at full size (as ``make docs`` does) and
copies the figure.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

COMMANDS = {
    "double_well.png": 'gdlab landscape --function double-well --init 1.5 '
                       '--compare "gd:lr=0.01" "gd:lr=0.1,schedule=warm-restarts,period=50,period_mult=2" '
                       '"momentum:lr=0.01,momentum=0.9" --plot {out}',
    "himmelblau_multistart.png": "gdlab landscape --function himmelblau --multistart 64 --seed 0 --plot {out}",
    "rosenbrock_compare.png": 'gdlab landscape --function rosenbrock --init=-1.5,2 --max-steps 5000 '
                              '--compare "gd:lr=0.001" "momentum:lr=0.001,momentum=0.9" '
                              '"nesterov:lr=0.001,momentum=0.9" "adam:lr=0.02" --plot {out}',
    "sweep_heatmap.png": 'gdlab sweep fit --target "0.5*N(-2,0.25)+0.5*N(2,0.25)" --init "N(0.5,5)" '
                         "--divergence reverse --optimizer momentum --grid lr=0.001:1:40:log "
                         "--grid momentum=0,0.5,0.9,0.99 --max-steps 2000 --out {tmp}/sweep.csv --heatmap {out}",
    "fit_reverse.png": 'gdlab fit --target "0.5*N(-2,0.25)+0.5*N(2,0.25)" --init "N(0.5,5)" --divergence reverse '
                       "--optimizer momentum --lr 0.05 --momentum 0.9 --plot {out}",
}

# README picture -> (guide in examples/, the figure it writes)
GUIDE_FIGURES = {
    "guide_kl_step_sizes.png": ("kl_gradient_descent", "step_sizes.png"),
    "guide_sgd.png": ("supervised_gradient_descent", "sgd.png"),
    "guide_invariance.png": ("natural_gradient", "invariance.png"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    parser.add_argument("--only", nargs="*", default=None, help="make only these files")
    args = parser.parse_args()
    from gdlab.cli import main as gdlab

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, command in COMMANDS.items():
            if args.only and name not in args.only:
                continue
            line = command.format(out=args.out / name, tmp=tmp)
            print(f"$ {line}", flush=True)
            rc = gdlab(shlex.split(line)[1:])
            if rc != 0:
                print(f"failed: {name}", file=sys.stderr)
                return rc
        sys.path.insert(0, str(ROOT / "scripts"))
        from build_docs import run_example

        for name, (guide, figure) in GUIDE_FIGURES.items():
            if args.only and name not in args.only:
                continue
            print(f"$ python examples/{guide}.py --out {tmp}/{guide}   # then {figure} -> {name}", flush=True)
            run_example(guide, Path(tmp) / guide, quick=False)
            shutil.copy(Path(tmp) / guide / figure, args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
