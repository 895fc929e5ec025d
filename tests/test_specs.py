"""Tests for gdlab.specs: the text notation for Gaussians and Gaussian mixtures."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gdlab.specs import MixtureSpec, SpecError, format_distribution, parse_distribution


def assert_valid(spec: MixtureSpec) -> None:
    """Invariants every successfully parsed spec satisfies."""
    k, d = spec.n_components, spec.dim
    assert spec.weights.shape == (k,) and spec.means.shape == (k, d) and spec.covs.shape == (k, d, d)
    for a in (spec.weights, spec.means, spec.covs):
        assert a.dtype == np.float64 and np.all(np.isfinite(a))
    assert np.all(spec.weights > 0)
    assert abs(spec.weights.sum() - 1.0) <= 1e-9
    for c in spec.covs:
        np.linalg.cholesky(c)  # positive definite
        assert np.allclose(c, c.T, rtol=0, atol=1e-12 * np.abs(c).max())


def error_message(text: str, **kwargs) -> str:
    with pytest.raises(SpecError) as info:
        parse_distribution(text, **kwargs)
    message = str(info.value)
    assert len(message.splitlines()) == 1 and "\n" not in message
    return message


# ----------------------------------------------------------------- parsing

def test_scalar_normal():
    spec = parse_distribution("N(2, 1)")
    np.testing.assert_array_equal(spec.weights, [1.0])
    np.testing.assert_array_equal(spec.means, [[2.0]])
    np.testing.assert_array_equal(spec.covs, [[[1.0]]])
    assert spec.dim == 1 and spec.n_components == 1 and spec.is_gaussian and spec.scalar
    assert spec.text == "N(2, 1)"


def test_full_covariance():
    spec = parse_distribution("N([1,2], [[2,0.5],[0.5,1]])")
    np.testing.assert_array_equal(spec.means, [[1.0, 2.0]])
    np.testing.assert_array_equal(spec.covs, [[[2.0, 0.5], [0.5, 1.0]]])
    assert spec.dim == 2 and not spec.scalar and spec.is_gaussian


def test_isotropic_covariance():
    spec = parse_distribution("N([1,2], 2)")
    np.testing.assert_array_equal(spec.covs, [[[2.0, 0.0], [0.0, 2.0]]])
    assert spec.dim == 2 and not spec.scalar


def test_diagonal_covariance():
    spec = parse_distribution("N([1,2], [2, 1])")
    np.testing.assert_array_equal(spec.covs, [[[2.0, 0.0], [0.0, 1.0]]])


def test_vector_form_in_one_dimension():
    spec = parse_distribution("N([3], [[2]])")
    np.testing.assert_array_equal(spec.means, [[3.0]])
    np.testing.assert_array_equal(spec.covs, [[[2.0]]])
    assert spec.dim == 1 and not spec.scalar


def test_weighted_mixture():
    spec = parse_distribution("0.3*N(-2,0.36) + 0.7*N(1.5,0.16)")
    np.testing.assert_array_equal(spec.weights, [0.3, 0.7])
    np.testing.assert_array_equal(spec.means, [[-2.0], [1.5]])
    np.testing.assert_array_equal(spec.covs, [[[0.36]], [[0.16]]])
    assert spec.n_components == 2 and not spec.is_gaussian and spec.scalar and spec.dim == 1


def test_unweighted_mixture_gets_equal_weights():
    spec = parse_distribution("N(0,1) + N(1,2) + N(3,4)")
    np.testing.assert_array_equal(spec.weights, np.full(3, 1 / 3))


def test_mixture_moments_1d():
    spec = parse_distribution("0.5*N(-2,0.25)+0.5*N(2,0.25)")
    np.testing.assert_array_equal(spec.mean(), [0.0])
    np.testing.assert_array_equal(spec.cov(), [[4.25]])  # 0.25 + 4


def test_mixture_moments_2d():
    spec = parse_distribution("0.25*N([0,0], 1) + 0.75*N([2,4], [[2,0.5],[0.5,1]])")
    np.testing.assert_allclose(spec.mean(), [1.5, 3.0])
    # E[xx^T] = .25 I + .75 ([[2,.5],[.5,1]] + [[4,8],[8,16]]) = [[4.75, 6.375], [6.375, 13]]
    np.testing.assert_allclose(spec.cov(), [[4.75 - 2.25, 6.375 - 4.5], [6.375 - 4.5, 13 - 9]])


def test_gaussian_moments_are_its_parameters():
    spec = parse_distribution("N([1,-2], [[2,0.5],[0.5,1]])")
    np.testing.assert_array_equal(spec.mean(), [1.0, -2.0])
    np.testing.assert_allclose(spec.cov(), [[2.0, 0.5], [0.5, 1.0]], atol=1e-15)


@pytest.mark.parametrize(
    "text, value",
    [("N(-2, 1)", -2.0), ("N(+2, 1)", 2.0), ("N(.5, 1)", 0.5), ("N(2., 1)", 2.0),
     ("N(1e-3, 1)", 1e-3), ("N(2.5E+4, 1)", 2.5e4), ("N(-1.5e2, 1)", -150.0)],
)
def test_number_forms(text, value):
    assert parse_distribution(text).means[0, 0] == value


def test_whitespace_between_tokens():
    spaced = parse_distribution("  0.5 * N ( [ 1 , 2 ] , [ [ 2 , 0 ] , [ 0 , 1 ] ] )\t+\n0.5*N([0,0],1) ")
    tight = parse_distribution("0.5*N([1,2],[[2,0],[0,1]])+0.5*N([0,0],1)")
    assert spaced == tight


def test_nearly_symmetric_covariance_is_accepted_as_written():
    spec = parse_distribution("N([0,0], [[1, 0.5], [0.5000000000000001, 1]])")
    assert spec.covs[0, 1, 0] == 0.5000000000000001  # kept as written, not symmetrised


def test_weights_within_tolerance_are_accepted():
    spec = parse_distribution("0.1*N(0,1) + 0.2*N(1,1) + 0.7000000001*N(2,1)")
    np.testing.assert_array_equal(spec.weights, [0.1, 0.2, 0.7000000001])


def test_spec_is_frozen_and_compares_by_value():
    spec = parse_distribution("N([1,2], 2)")
    with pytest.raises(ValueError):
        spec.means[0, 0] = 5.0  # read-only array
    with pytest.raises(AttributeError):
        spec.scalar = True  # type: ignore[misc]
    assert spec == parse_distribution("N([1, 2], [[2, 0], [0, 2]])")
    assert spec != parse_distribution("N([1,2], 3)")
    assert parse_distribution("N(1, 2)") != parse_distribution("N([1], [[2]])")  # scalar flag differs


def test_non_string_is_a_type_error():
    with pytest.raises(TypeError):
        parse_distribution(None)  # type: ignore[arg-type]


# ------------------------------------------------------------------ errors

def test_message_examples_from_the_design():
    assert error_message("N(2,", what="--target") == (
        '--target "N(2,": expected a number at position 4 (end of text); '
        "write a normal as N(mean, variance), e.g. N(0, 1)."
    )
    assert error_message("N(0, -1)") == (
        'distribution "N(0, -1)": the variance of component 1 must be positive, got -1.0; '
        "write N(mean, variance) with variance > 0."
    )
    assert error_message("0.3*N(0,1) + 0.6*N(2,1)") == (
        'distribution "0.3*N(0,1) + 0.6*N(2,1)": mixture weights sum to 0.9, not 1; '
        "make them add up to 1, e.g. 0.5*N(0, 1) + 0.5*N(2, 1)."
    )


def test_unexpected_character_names_it_and_what_was_expected():
    assert 'unexpected "x" at position 2; expected "("' in error_message("N x")


def test_empty_text():
    for text in ("", "   ", "\n\t"):
        message = error_message(text)
        assert "empty" in message and "N(mean, variance)" in message and "N(0" in message


SYNTAX_ERRORS = [
    ("N(0, 1", "position 6"),  # missing ')'
    ("N 0, 1)", 'expected "("'),  # missing '('
    ("N(0 1)", 'expected ","'),  # missing comma
    ("N(0, 1) +", "position 9"),  # trailing '+'
    ("N(0, 1) + ", "end of text"),
    ("*N(0, 1)", 'unexpected "*" at position 0'),  # '*' without weight
    ("0.5 N(0, 1)", 'expected "*"'),
    ("0.5*", "end of text"),
    ("N([1, 2, 1)", 'expected "," or "]"'),  # unbalanced brackets
    ("N([1, 2]], 1)", 'unexpected "]"'),
    ("N([0, 0], [[1, 0], [0, 1])", "position"),
    ("N([0, 0], [[1, 0], 0])", 'expected "["'),
    ("N([], 1)", "expected a number"),
    ("N([1,], 1)", "expected a number"),
    ("N(abc, 1)", 'unexpected "abc"'),  # letters
    ("n(0, 1)", 'expected "N"'),
    ("Normal(0, 1)", 'unexpected "Normal"'),
    ("__import__('os')", 'unexpected "__import__" at position 0'),
    ("N(0, nan)", "expected a number"),
    ("N(inf, 1)", "expected a number"),
    ("N(0, 1) N(1, 1)", 'expected "+" or the end of the text'),
    ("N(0, 1))", "position 7"),
    ("N(0, 1) - N(1, 1)", 'unexpected "-"'),
    ("N(- 1, 1)", 'a number right after "-"'),
    ("N(1e, 1)", 'unexpected "e"'),
    ("N(1.2.3, 1)", 'unexpected ".3"'),
    ("N(1_000, 1)", "position 3"),
    ("N(０, 1)", "position 2"),  # full-width digit is not an ASCII number
    ("N(1e999, 1)", "too large"),
    ("N(0, {1})", 'unexpected "{"'),
    ("N([[1]], 1)", 'unexpected "["'),
    ("N(0, [[1]]]", "position"),
]


@pytest.mark.parametrize("text, fragment", SYNTAX_ERRORS)
def test_syntax_errors(text, fragment):
    message = error_message(text)
    assert message.startswith(f'distribution "{text}": ')
    assert "position" in message
    assert fragment in message
    assert message.endswith(".")


def test_nan_message_says_nan_is_not_allowed():
    assert "nan and infinity are not allowed" in error_message("N(0, nan)")


INVALID = [
    ("N(0, 0)", "variance of component 1 must be positive, got 0.0"),
    ("N(0, -1)", "must be positive, got -1.0"),
    ("N(0, 1e-400)", "must be positive, got 0.0"),  # underflows to zero
    ("N([0, 0], -2)", "variance of component 1 must be positive"),
    ("N([0, 0], [1, 0])", "variance 2 of component 1 must be positive, got 0.0"),
    ("N([0, 0], [[1, 0.5], [0.4, 1]])", "not symmetric: entry [1, 2] is 0.5 but entry [2, 1] is 0.4"),
    ("N([0, 0], [[1, 2], [2, 1]])", "not positive definite (smallest eigenvalue -1)"),
    ("N([0, 0], [[0, 0], [0, 0]])", "not positive definite"),
    ("N([3], [[-2]])", "not positive definite"),
    ("N([0, 0], [[1, 0], [0]])", "not square: it has 2 rows but row 2 has length 1"),  # ragged
    ("N([0, 0], [[1, 0, 0], [0, 1, 0], [0, 0, 1]])", "mean of dimension 2 but a 3x3 covariance"),
    ("N([0, 0], [1, 1, 1])", "mean of dimension 2 but a diagonal covariance of length 3"),
    ("N(0, [[1, 0], [0, 1]])", "mean of dimension 1 but a 2x2 covariance"),
    ("N(0, 1) + N([0, 0], 1)", "component 2 has dimension 2 but component 1 has dimension 1"),
    ("0*N(0, 1) + 1*N(1, 1)", "weight of component 1 must be positive, got 0.0"),
    ("-0.5*N(0, 1) + 1.5*N(1, 1)", "weight of component 1 must be positive, got -0.5"),
    ("0.5*N(0, 1) + 0.6*N(1, 1)", "mixture weights sum to 1.1, not 1"),
    ("0.5*N(0, 1)", "mixture weights sum to 0.5, not 1; make them add up to 1, e.g. 1*N(0, 1)"),
    ("0.2*N(0,1)+0.2*N(1,1)+0.2*N(2,1)", "e.g. 0.3333*N(0, 1) + 0.3333*N(1, 1) + 0.3334*N(2, 1)"),
    ("0.1*N(0,1)+0.1*N(1,1)+0.1*N(2,1)+0.1*N(3,1)+0.1*N(4,1)", "leave out every weight"),
    ("N(0, 1) + 0.5*N(1, 1)", "component 1 has no weight but component 2 has one"),
    ("0.5*N(0, 1) + N(1, 1)", "component 2 has no weight but component 1 has one"),
]


@pytest.mark.parametrize("text, fragment", INVALID)
def test_invalid_distributions(text, fragment):
    message = error_message(text)
    assert message.startswith(f'distribution "{text}": ')
    assert fragment in message
    assert message.endswith(".")


def test_weight_suggestion_parses_and_sums_to_one():
    message = error_message("0.2*N(0,1)+0.2*N(1,1)+0.2*N(2,1)")
    suggestion = message.split("e.g. ", 1)[1].rstrip(".")
    assert parse_distribution(suggestion).n_components == 3


def test_messages_stay_on_one_line_for_multiline_and_control_text():
    for text in ("N(0,\n1", "N(0,\r\n1\x85", "N(\u2028", "x\x00y", "N(0, 1)\n+\nN(1, -1)"):
        message = error_message(text)
        assert "\\n" in message or "\\x" in message or "\\u" in message or text == "x\x00y"


def test_long_text_is_shortened_in_message():
    text = "N(0, 1) + " * 100 + "oops"
    message = error_message(text)
    assert "..." in message and len(message) < 400 and f"position {len(text) - 4}" in message


# -------------------------------------------------------------- properties

GRAMMAR_ALPHABET = "N()[],+*-.e0123456789 "
FRAGMENTS = ["N(", "N", "(", ")", "[", "]", ",", " + ", "+", "*", "0.5*", "-", "0", "1", "-1", "2.5",
             "1e-3", ".5", "[1, 2]", "[[1, 0], [0, 1]]", "[[2, 3], [3, 1]]", "[1]", "0", "1e400", "nan"]


def check_never_crashes(text: str) -> None:
    try:
        spec = parse_distribution(text)
    except SpecError as error:
        assert len(str(error).splitlines()) == 1
    else:
        assert_valid(spec)
        assert spec.text == text


@settings(max_examples=300)
@given(st.text())
def test_random_text_only_raises_spec_error(text):
    check_never_crashes(text)


@settings(max_examples=300)
@given(st.text(alphabet=GRAMMAR_ALPHABET, max_size=60))
def test_grammar_alphabet_only_raises_spec_error(text):
    check_never_crashes(text)


@settings(max_examples=300)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=25).map("".join))
def test_grammar_fragments_only_raise_spec_error(text):
    check_never_crashes(text)


MEANS = ["0", "-1.5", "2e3", "[1]", "[1, 2]", "[0, 0, 0]"]
COVS = ["1", "0", "-1", ".5", "[1, 2]", "[1]", "[2, -1]", "[[1]]", "[[2, 0.5], [0.5, 1]]", "[[1, 2], [2, 1]]",
        "[[1, 0], [0]]", "[[1, 0.5], [0.4, 1]]", "[[0, 0], [0, 0]]", "1e400", "[[1e308, -1e308], [-1e308, 1e308]]"]
WEIGHTS = ["", "", "0.5*", "1*", "0.25*", "-0.5*", "0*", "2*"]


@st.composite
def near_specs(draw) -> str:
    """Texts shaped like the grammar with valid and invalid values, sometimes with one character changed."""
    terms = [draw(st.sampled_from(WEIGHTS)) + f"N({draw(st.sampled_from(MEANS))}, {draw(st.sampled_from(COVS))})"
             for _ in range(draw(st.integers(1, 3)))]
    text = " + ".join(terms)
    if draw(st.booleans()):
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(st.sampled_from(["", *GRAMMAR_ALPHABET])) + text[i + 1:]
    return text


@settings(max_examples=500)
@given(near_specs())
def test_near_valid_texts_only_raise_spec_error(text):
    check_never_crashes(text)


finite = st.floats(allow_nan=False, allow_infinity=False)
positive = st.floats(min_value=0.0, exclude_min=True, allow_infinity=False)


@st.composite
def weight_vectors(draw, k: int) -> np.ndarray | None:
    """None (unweighted) or positive weights normalised to sum to 1 within the parser's tolerance."""
    if draw(st.booleans()):
        return None
    raw = np.array(draw(st.lists(st.floats(0.01, 1.0), min_size=k, max_size=k)))
    weights = raw / raw.sum()
    assume(abs(weights.sum() - 1.0) <= 1e-9)
    return weights


@st.composite
def mixtures_1d(draw) -> MixtureSpec:
    k = draw(st.integers(1, 5))
    weights = draw(weight_vectors(k))
    if weights is None:
        weights = np.full(k, 1.0 / k)
    means = np.array(draw(st.lists(finite, min_size=k, max_size=k))).reshape(k, 1)
    covs = np.array(draw(st.lists(positive, min_size=k, max_size=k))).reshape(k, 1, 1)
    return MixtureSpec(weights, means, covs, scalar=draw(st.booleans()), text="")


@st.composite
def spd_2x2(draw) -> np.ndarray:
    a = draw(st.floats(1e-3, 1e3))
    c = draw(st.floats(1e-3, 1e3))
    rho = draw(st.floats(-0.99, 0.99))
    b = rho * math.sqrt(a * c)
    return np.array([[a, b], [b, c]])


@st.composite
def mixtures_2d(draw) -> MixtureSpec:
    k = draw(st.integers(1, 4))
    weights = draw(weight_vectors(k))
    if weights is None:
        weights = np.full(k, 1.0 / k)
    means = np.array(draw(st.lists(st.tuples(finite, finite), min_size=k, max_size=k)))
    covs = np.stack([draw(spd_2x2()) for _ in range(k)])
    return MixtureSpec(weights, means, covs, scalar=False, text="")


def assert_round_trip(spec: MixtureSpec) -> None:
    text = format_distribution(spec)
    back = parse_distribution(text)
    np.testing.assert_array_equal(back.weights, spec.weights)
    np.testing.assert_array_equal(back.means, spec.means)
    np.testing.assert_array_equal(back.covs, spec.covs)
    assert back.scalar == spec.scalar
    assert back == spec and back.text == text
    assert format_distribution(back) == text  # canonical: formatting is a fixed point


@settings(max_examples=300, suppress_health_check=[HealthCheck.filter_too_much])
@given(mixtures_1d())
def test_round_trip_1d(spec):
    assert_round_trip(spec)


@settings(max_examples=300, suppress_health_check=[HealthCheck.filter_too_much])
@given(mixtures_2d())
def test_round_trip_2d(spec):
    assert_round_trip(spec)


def test_format_examples():
    assert format_distribution(parse_distribution("N(2, 1)")) == "N(2.0, 1.0)"
    assert format_distribution(parse_distribution("0.3*N(-2,0.36) + 0.7*N(1.5,0.16)")) == (
        "0.3*N(-2.0, 0.36) + 0.7*N(1.5, 0.16)"
    )
    assert format_distribution(parse_distribution("N(0,1)+N(1,1)+N(2,1)")) == (
        "N(0.0, 1.0) + N(1.0, 1.0) + N(2.0, 1.0)"
    )
    assert format_distribution(parse_distribution("N([1,2], [2, 1])")) == (
        "N([1.0, 2.0], [[2.0, 0.0], [0.0, 1.0]])"
    )
    assert format_distribution(parse_distribution("N([3], [[2]])")) == "N([3.0], [[2.0]])"


@pytest.mark.parametrize(
    "text",
    ["N(2, 1)", "N([1,2], [[2,0.5],[0.5,1]])", "N([1,2], 2)", "N([1,2], [2, 1])", "N([3], [[2]])",
     "0.3*N(-2,0.36) + 0.7*N(1.5,0.16)", "N(1e-300, 5e-324) + N(-1.7976931348623157e308, 1e308)"],
)
def test_round_trip_examples(text):
    assert_round_trip(parse_distribution(text))
