"""Independent reference computations for the tests: plain NumPy/SciPy, no gdlab code.

1-D Gaussian mixtures are (weights, means, variances) tuples.
"""

import warnings

import numpy as np
from scipy import integrate


def logp_np(x, ws, ms, vs):
    """log p(x) of a 1-D mixture, written out by hand (fast inside quad's callbacks)."""
    return np.logaddexp.reduce([np.log(w) - 0.5 * np.log(2 * np.pi * v) - 0.5 * (x - m) ** 2 / v
                                for w, m, v in zip(ws, ms, vs)], axis=0)


def quad(f, lo, hi, breaks=()):
    """scipy.integrate.quad at 1e-14 with breakpoints."""
    pts = sorted(b for b in breaks if lo < b < hi)
    with warnings.catch_warnings():  # quad notes round-off at 1e-14: expected, the answer is still good
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        val, _ = integrate.quad(f, lo, hi, points=pts, limit=5000, epsabs=1e-14, epsrel=1e-14)
    return val


def expected_logp_and_grad(ws, ms, vs, m, s):
    """E_q[log p] for q = N(m, s²) and its gradient in (m, s), by quad over t ~ N(0,1), x = m + s t."""
    lo, hi = -12.0, 12.0
    breaks = list(np.linspace(lo, hi, 49)) + [(mu - m) / s for mu in ms]

    def dlogp(x):
        comps = np.array([np.log(w) - 0.5 * np.log(2 * np.pi * v) - 0.5 * (x - mu) ** 2 / v
                          for w, mu, v in zip(ws, ms, vs)])
        r = np.exp(comps - np.logaddexp.reduce(comps))
        return float(np.sum(r * np.array([-(x - mu) / v for mu, v in zip(ms, vs)])))

    phi = lambda t: np.exp(-0.5 * t * t) / np.sqrt(2 * np.pi)  # noqa: E731
    value = quad(lambda t: phi(t) * logp_np(m + s * t, ws, ms, vs), lo, hi, breaks)
    d_m = quad(lambda t: phi(t) * dlogp(m + s * t), lo, hi, breaks)
    d_s = quad(lambda t: phi(t) * dlogp(m + s * t) * t, lo, hi, breaks)
    return value, np.array([d_m, d_s])


def reverse_kl_and_grad(ws, ms, vs, m, s):
    """KL(q‖p) for q = N(m, s²) and its gradient in (m, s): −H(q) − E_q[log p], H(q) = log s + ½log 2πe."""
    e, de = expected_logp_and_grad(ws, ms, vs, m, s)
    return -np.log(s) - 0.5 * np.log(2 * np.pi * np.e) - e, np.array([-de[0], -1.0 / s - de[1]])
