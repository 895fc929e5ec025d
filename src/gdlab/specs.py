"""Parse and format the text notation for Gaussians and Gaussian mixtures.

``N(m, v)`` is a normal with mean ``m`` and **variance** ``v`` (not the
standard deviation).  A mixture is a sum of weighted normals::

    N(2, 1)                                  1-D, scalar form
    N([1, 2], [[2, 0.5], [0.5, 1]])          2-D, full covariance
    N([1, 2], 2)                             2-D, isotropic covariance 2*I
    N([1, 2], [2, 1])                        2-D, diagonal covariance diag(2, 1)
    N([3], [[2]])                            1-D, vector form
    0.3*N(-2, 0.36) + 0.7*N(1.5, 0.16)       two-component mixture

Grammar (whitespace is allowed between tokens)::

    spec    := term ('+' term)*
    term    := [number '*'] normal
    normal  := 'N' '(' mean ',' cov ')'
    mean    := number | vector
    cov     := number | vector | matrix
    vector  := '[' number (',' number)* ']'
    matrix  := '[' vector (',' vector)* ']'
    number  := optional sign directly followed by digits with an optional
               '.' and an optional exponent: -2, +2, .5, 2., 1e-3, 2.5E+4

Conventions:

* Weights must be > 0 and sum to 1 (within 1e-9); they are never normalised
  silently.  If *no* term has a weight, every component gets weight 1/k.
  Weighting some terms but not others is an error.
* All components share one dimension.  Covariances must be symmetric (within
  1e-12 relative to their largest entry) and positive definite; variances
  must be > 0.  ``nan`` and ``inf`` are not numbers in this grammar.
* The parser is hand-written recursive descent over a tokenizer: the text is
  never evaluated, so any string is safe to pass.  Every problem raises
  :class:`SpecError` with a one-line message saying what is wrong, where
  (0-based character position) and how to fix it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple, NoReturn

import numpy as np

__all__ = ["SpecError", "MixtureSpec", "parse_distribution", "format_distribution"]

WEIGHT_SUM_TOL = 1e-9  # absolute tolerance on sum(weights) == 1
SYMMETRY_RTOL = 1e-12  # |C - C^T| relative to max |C|


class SpecError(ValueError):
    """A distribution text that is malformed or names an invalid distribution."""


@dataclass(frozen=True, eq=False)
class MixtureSpec:
    """A Gaussian mixture: ``sum_i weights[i] * N(means[i], covs[i])``.

    Arrays are float64 copies marked read-only, so the spec really is frozen.
    ``==`` compares the distribution (arrays and ``scalar``), not ``text``.
    """

    weights: np.ndarray  # (k,)
    means: np.ndarray  # (k, d)
    covs: np.ndarray  # (k, d, d)
    scalar: bool  # every component was written as N(number, number)
    text: str

    def __post_init__(self) -> None:
        for name in ("weights", "means", "covs"):
            array = np.array(getattr(self, name), dtype=np.float64)
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        k = self.weights.shape[0] if self.weights.ndim == 1 else -1
        d = self.means.shape[1] if self.means.ndim == 2 else -1
        if k < 1 or self.means.shape != (k, d) or self.covs.shape != (k, d, d):
            raise ValueError(
                f"inconsistent shapes: weights {self.weights.shape}, means {self.means.shape}, "
                f"covs {self.covs.shape}; expected (k,), (k, d), (k, d, d)"
            )

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    @property
    def n_components(self) -> int:
        return int(self.weights.shape[0])

    @property
    def is_gaussian(self) -> bool:
        return self.n_components == 1

    def mean(self) -> np.ndarray:
        """Mixture mean, sum_i w_i m_i, shape (d,)."""
        return self.weights @ self.means

    def cov(self) -> np.ndarray:
        """Mixture covariance, sum_i w_i (C_i + m_i m_i^T) - mean mean^T, shape (d, d)."""
        mu = self.mean()
        outer = self.means[:, :, None] * self.means[:, None, :]
        return np.einsum("k,kij->ij", self.weights, self.covs + outer) - np.outer(mu, mu)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MixtureSpec):
            return NotImplemented
        return (
            self.scalar == other.scalar
            and all(
                a.shape == b.shape and np.array_equal(a, b)
                for a, b in ((self.weights, other.weights), (self.means, other.means), (self.covs, other.covs))
            )
        )

    __hash__ = None  # type: ignore[assignment]  # arrays are not hashable; equality is by value


# ---------------------------------------------------------------- tokenizer

class Token(NamedTuple):
    kind: str  # "number", "word", one of "()[],+-*", "other" or "end"
    text: str
    pos: int


# Numbers are unsigned here: "+" is also the mixture operator, so the parser
# attaches a sign only where a number is expected.  ASCII digits only, so
# exotic Unicode digits that float() would accept are rejected.
_TOKEN_RE = re.compile(
    r"(?P<space>\s+)"
    r"|(?P<number>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<punct>[()\[\],+\-*])"
)


def tokenize(text: str, token_re: re.Pattern = _TOKEN_RE, literal: str = "punct") -> list[Token]:
    """Split ``text`` into tokens by the named groups of ``token_re``: a ``space`` match is dropped,
    a ``literal`` match is its own kind (``"("``, ``"+"``), any other group names the kind; a
    character no group matches becomes an ``other`` token, which the parser refuses in context
    with its position. Ends with an ``end`` token. The expression grammar reuses it.

    Args:
      text: the text to split.
      token_re: a compiled pattern of named groups (default: the spec grammar's).
      literal: the group whose matches are their own kind.

    Returns:
      The tokens (kind, text, position), the last of kind ``end``.

    Example:
      >>> [(t.kind, t.text) for t in tokenize("N(2, 1)")]
      [('word', 'N'), ('(', '('), ('number', '2'), (',', ','), ('number', '1'), (')', ')'), ('end', '')]
    """
    tokens, pos = [], 0
    while pos < len(text):
        match = token_re.match(text, pos)
        if match is None:
            tokens.append(Token("other", text[pos], pos))
            pos += 1
            continue
        kind = match.lastgroup
        if kind == literal:
            tokens.append(Token(match.group(), match.group(), pos))
        elif kind != "space":
            tokens.append(Token(kind, match.group(), pos))
        pos = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


def quote(text: str, limit: int = 40) -> str:
    r"""Text fit to quote inside a one-line message: no line breaks or control characters.

    Args:
      text: what the user gave.
      limit: characters kept before "...".

    Returns:
      The text, escaped and cut.

    Example:
      >>> quote("N(0,\n1)"), quote("x" * 50, limit=5)
      ('N(0,\\n1)', 'xxxxx...')
    """
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit])
    return shown + ("..." if len(text) > limit else "")


def _short(x: float) -> str:
    """Readable number for messages ("1" rather than "1.0") that still means x exactly."""
    s = f"{x:g}"
    return s if float(s) == x else repr(float(x))


# ------------------------------------------------------------------- parser

_HINT_NORMAL = "write a normal as N(mean, variance), e.g. N(0, 1)"
_HINT_SPEC = "write a normal as N(mean, variance), e.g. N(0, 1), or a mixture such as 0.5*N(-2, 1) + 0.5*N(2, 1)"
_HINT_WEIGHT = "write a weighted component as weight*N(mean, variance), e.g. 0.5*N(0, 1)"
_HINT_VECTOR = "write a vector as [0, 1], e.g. N([0, 1], [1, 2])"
_HINT_MATRIX = "write a covariance matrix row by row, e.g. N([0, 0], [[1, 0.5], [0.5, 1]])"

Value = tuple  # ("number", float) | ("vector", list[float]) | ("matrix", list[list[float]])


class _Term(NamedTuple):
    weight: float | None
    mean: Value
    cov: Value


class _Parser:
    def __init__(self, text: str, what: str) -> None:
        self.text, self.what = text, what
        self.tokens = tokenize(text)
        self.i = 0

    def error(self, problem: str, fix: str) -> SpecError:
        return SpecError(f'{self.what} "{quote(self.text, 200)}": {problem}; {fix}.')

    def fail(self, found: str | None, pos: int, expected: str, fix: str) -> NoReturn:
        if found is None:
            raise self.error(f"expected {expected} at position {pos} (end of text)", fix)
        raise self.error(f'unexpected "{quote(found, 20)}" at position {pos}; expected {expected}', fix)

    def peek(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        token = self.tokens[self.i]
        self.i += token.kind != "end"  # never move past the end marker
        return token

    def expect(self, kind: str, expected: str, fix: str) -> Token:
        token = self.peek()
        if token.kind != kind:
            self.fail(token.text if token.kind != "end" else None, token.pos, expected, fix)
        return self.advance()

    def spec(self) -> list[_Term]:
        if self.peek().kind == "end":
            raise self.error("the text is empty but a distribution is needed", _HINT_SPEC)
        terms = [self.term()]
        while self.peek().kind == "+":
            self.advance()
            terms.append(self.term())
        self.expect("end", '"+" or the end of the text', _HINT_SPEC)
        return terms

    def term(self) -> _Term:
        weight = None
        if self.peek().kind in ("number", "+", "-"):
            weight = self.number("a number", _HINT_WEIGHT)
            self.expect("*", '"*"', _HINT_WEIGHT)
        token = self.peek()
        if token.kind != "word" or token.text != "N":
            self.fail(token.text or None, token.pos, '"N"', _HINT_NORMAL if weight is None else _HINT_WEIGHT)
        self.advance()
        self.expect("(", '"("', _HINT_NORMAL)
        if self.peek().kind == "[":
            mean: Value = ("vector", self.vector(_HINT_VECTOR))
        else:
            mean = ("number", self.number("a number", _HINT_NORMAL))
        self.expect(",", '","', _HINT_NORMAL)
        cov = self.covariance()
        self.expect(")", '")"', _HINT_NORMAL)
        return _Term(weight, mean, cov)

    def covariance(self) -> Value:
        if self.peek().kind != "[":
            return ("number", self.number("a number", _HINT_NORMAL))
        if self.tokens[self.i + 1].kind != "[":  # safe: "[" is never the end token
            return ("vector", self.vector(_HINT_VECTOR))
        self.advance()
        rows = [self.vector(_HINT_MATRIX)]
        while self.peek().kind == ",":
            self.advance()
            rows.append(self.vector(_HINT_MATRIX))
        self.expect("]", '"," or "]"', _HINT_MATRIX)
        return ("matrix", rows)

    def vector(self, fix: str) -> list[float]:
        self.expect("[", '"["', fix)
        values = [self.number("a number", fix)]
        while self.peek().kind == ",":
            self.advance()
            values.append(self.number("a number", fix))
        self.expect("]", '"," or "]"', fix)
        return values

    def number(self, expected: str, fix: str) -> float:
        token = self.advance()
        sign = ""
        if token.kind in ("+", "-"):
            # The sign belongs to the number, so nothing may separate them.
            sign, after = token.text, token.pos + 1
            token = self.advance()
            if token.kind != "number" or token.pos != after:
                found = self.text[after] if after < len(self.text) else None
                self.fail(found, after, f'a number right after "{sign}"', fix)
        if token.kind != "number":
            if token.text.lower() in ("nan", "inf", "infinity"):
                expected = "a number (nan and infinity are not allowed)"
            self.fail(token.text if token.kind != "end" else None, token.pos, expected, fix)
        value = float(sign + token.text)
        if not np.isfinite(value):
            raise self.error(
                f'the number "{sign}{quote(token.text, 20)}" at position {token.pos} is too large for a float',
                "use a number below 1.7e308 in magnitude",
            )
        return value


# ------------------------------------------------------------------ checks

def _mean_vector(mean: Value) -> np.ndarray:
    return np.array([mean[1]] if mean[0] == "number" else mean[1], dtype=np.float64)


def _covariance_matrix(p: _Parser, cov: Value, d: int, n: int) -> np.ndarray:
    """Build and check the (d, d) covariance of component n (1-based)."""
    kind, value = cov
    if kind == "number":
        if not value > 0:
            raise p.error(f"the variance of component {n} must be positive, got {value!r}",
                          "write N(mean, variance) with variance > 0")
        return value * np.eye(d)
    if kind == "vector":
        if len(value) != d:
            raise p.error(f"component {n} has a mean of dimension {d} but a diagonal covariance of "
                          f"length {len(value)}", f"give {d} variances, one per coordinate, or one variance for all")
        for j, v in enumerate(value, start=1):
            if not v > 0:
                raise p.error(f"variance {j} of component {n} must be positive, got {v!r}",
                              "every diagonal variance must be > 0")
        return np.diag(np.array(value, dtype=np.float64))
    rows = len(value)
    for r, row in enumerate(value, start=1):
        if len(row) != rows:
            raise p.error(f"the covariance matrix of component {n} is not square: it has {rows} rows "
                          f"but row {r} has length {len(row)}", _HINT_MATRIX)
    if rows != d:
        raise p.error(f"component {n} has a mean of dimension {d} but a {rows}x{rows} covariance matrix",
                      f"give a {d}x{d} covariance matrix to match the mean")
    c = np.array(value, dtype=np.float64)
    scale = float(np.abs(c).max())
    with np.errstate(over="ignore"):  # 1e308 - (-1e308) is inf: asymmetric, as it should be
        asym = np.abs(c - c.T)
    if asym.max() > SYMMETRY_RTOL * scale:
        i, j = np.unravel_index(np.argmax(asym), asym.shape)
        raise p.error(f"the covariance matrix of component {n} is not symmetric: entry [{i + 1}, {j + 1}] is "
                      f"{float(c[i, j])!r} but entry [{j + 1}, {i + 1}] is {float(c[j, i])!r}",
                      "make the matrix equal to its transpose")
    try:
        positive_definite = bool(np.all(np.isfinite(np.linalg.cholesky(c))))
    except np.linalg.LinAlgError:
        positive_definite = False
    if not positive_definite:
        # Scale to |entries| <= 1 first so the eigenvalue solver cannot overflow.
        unit = scale if scale > 0 else 1.0
        with np.errstate(over="ignore"):
            smallest = float(np.linalg.eigvalsh(c / unit).min()) * unit
        raise p.error(f"the covariance matrix of component {n} is not positive definite "
                      f"(smallest eigenvalue {smallest:.6g})",
                      "all eigenvalues must be > 0, e.g. [[1, 0.5], [0.5, 1]]; in 1-D the variance must be > 0")
    return c


def _weight_fix(terms: list[_Term]) -> str:
    """Suggest the user's own components with equal weights that add up to 1 exactly."""
    k = len(terms)
    if k <= 4:
        equal = Decimal(1) / k
        shares = [round(equal, 4)] * (k - 1)
        shares.append(Decimal(1) - sum(shares))
        parts = [f"{share.normalize()}*N({_short_value(t.mean)}, {_short_value(t.cov)})"
                 for share, t in zip(shares, terms)]
        example = " + ".join(parts)
        if len(example) <= 120:  # a longer example would bury the message
            return "make them add up to 1, e.g. " + example
    return "make them add up to 1, or leave out every weight to give the components equal weights"


def _short_value(value: Value) -> str:
    kind, x = value
    if kind == "number":
        return _short(x)
    if kind == "vector":
        return "[" + ", ".join(_short(v) for v in x) + "]"
    return "[" + ", ".join(_short_value(("vector", row)) for row in x) + "]"


def _weights(p: _Parser, terms: list[_Term]) -> np.ndarray:
    k = len(terms)
    given = [t.weight is not None for t in terms]
    if not any(given):
        return np.full(k, 1.0 / k)
    if not all(given):
        n, m = given.index(False) + 1, given.index(True) + 1
        raise p.error(f"component {n} has no weight but component {m} has one",
                      "give every component a weight, summing to 1, or give none for equal weights")
    weights = np.array([t.weight for t in terms], dtype=np.float64)
    for n, w in enumerate(weights, start=1):
        if not w > 0:
            raise p.error(f"the weight of component {n} must be positive, got {float(w)!r}",
                          "drop the component or give it a weight > 0")
    total = float(weights.sum())
    if abs(total - 1.0) > WEIGHT_SUM_TOL:
        raise p.error(f"mixture weights sum to {total:.12g}, not 1", _weight_fix(terms))
    return weights


# ------------------------------------------------------------------ public

def parse_distribution(text: str, what: str = "distribution") -> MixtureSpec:
    r"""Parse a normal or mixture written as in the module docstring.

    ``what`` names the input in error messages, e.g. ``what="--target"``.
    Raises :class:`SpecError` (and nothing else) for any string that is not a valid spec.

    .. math::  p(x) = \sum_k w_k\, \mathcal N(x;\ m_k, C_k), \qquad w_k > 0,\ \sum_k w_k = 1

    Args:
      text: e.g. ``"N(2, 1)"`` (mean, **variance**), ``"0.3*N(-2, 0.36) + 0.7*N(1.5, 0.16)"`` or
        ``"N([1, 2], [[2, 0.5], [0.5, 1]])"``.
      what: the input's name for error messages.

    Returns:
      A :class:`MixtureSpec`: weights (K,), means (K, d), covariances (K, d, d) and the text.

    Example:
      >>> spec = parse_distribution("0.3*N(-2, 0.36) + 0.7*N(1.5, 0.16)")
      >>> spec.weights.tolist(), spec.means[:, 0].tolist(), spec.covs[:, 0, 0].tolist()
      ([0.3, 0.7], [-2.0, 1.5], [0.36, 0.16])
      >>> parse_distribution("N(0, -1)", what="--target")
      Traceback (most recent call last):
      ...
      gdlab.specs.SpecError: --target "N(0, -1)": the variance of component 1 must be positive, got -1.0; write N(mean, variance) with variance > 0.
    """
    if not isinstance(text, str):
        raise TypeError(f"{what}: expected a string, got {type(text).__name__}")
    p = _Parser(text, what)
    terms = p.spec()  # all syntax errors surface before any semantic check
    means, covs = [], []
    for n, term in enumerate(terms, start=1):
        mean = _mean_vector(term.mean)
        if means and mean.shape != means[0].shape:
            raise p.error(f"component {n} has dimension {mean.shape[0]} but component 1 has dimension "
                          f"{means[0].shape[0]}", "all components of a mixture must have the same dimension")
        means.append(mean)
        covs.append(_covariance_matrix(p, term.cov, mean.shape[0], n))
    weights = _weights(p, terms)
    scalar = all(t.mean[0] == "number" and t.cov[0] == "number" for t in terms)
    return MixtureSpec(weights, np.stack(means), np.stack(covs), scalar, text)


def format_distribution(spec: MixtureSpec) -> str:
    """Canonical text for ``spec``; ``parse_distribution`` of it gives back the same arrays exactly.

    Numbers are written with ``repr(float)`` (shortest exact form).  Scalar 1-D specs use the scalar
    form N(m, v); all others a mean vector and a full covariance matrix.  Weights are left out when they
    are exactly the equal weights 1/k that the parser assigns to unweighted mixtures.

    Args:
      spec: a parsed spec.

    Returns:
      The text.

    Example:
      >>> format_distribution(parse_distribution("0.25*N(-2, 0.36) + 0.75*N(1.5, 0.16)"))
      '0.25*N(-2.0, 0.36) + 0.75*N(1.5, 0.16)'
    """
    def num(x: float) -> str:
        return repr(float(x))  # float() first: repr(np.float64) is "np.float64(...)" in numpy 2

    def vec(xs: np.ndarray) -> str:
        return "[" + ", ".join(num(x) for x in xs) + "]"

    k = spec.n_components
    equal = np.array_equal(spec.weights, np.full(k, 1.0 / k))
    parts = []
    for w, m, c in zip(spec.weights, spec.means, spec.covs):
        if spec.scalar and spec.dim == 1:
            normal = f"N({num(m[0])}, {num(c[0, 0])})"
        else:
            normal = f"N({vec(m)}, [{', '.join(vec(row) for row in c)}])"
        parts.append(normal if equal else f"{num(w)}*{normal}")
    return " + ".join(parts)
