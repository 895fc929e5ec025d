r"""Safe arithmetic expressions in ``x`` (1-D) or ``x, y`` (2-D), compiled to JAX functions.

A user's landscape such as ``"x**4 - 3*x**2 + x"`` or ``"(1 - x)^2 + 100*(y - x^2)^2"`` is
read by a hand-written recursive-descent parser over a whitelist grammar; the text is never
given to ``eval``, ``exec``, ``compile``, ``ast`` or a computer-algebra system, so no string can
reach Python. Grammar (whitespace allowed between tokens)::

    expr    := term (('+' | '-') term)*
    term    := unary (('*' | '/') unary)*
    unary   := ('+' | '-') unary | power
    power   := atom (('**' | '^') unary)?          right-associative: 2**3**2 = 2**9
    atom    := number | variable | constant | function '(' expr ')' | '(' expr ')'
    number  := digits with an optional '.' and exponent: 3, 0.5, .5, 2., 1e-3 (ASCII only)
    variable:= x | y            constant := pi | e
    function:= sin | cos | exp | log | sqrt | abs | tanh

As in Python and in mathematics, ``-x**2`` is ``-(x**2)`` and ``2^-1`` is ``0.5``. An
expression that uses ``y`` is 2-D (θ = (x, y)); one that uses only ``x`` is 1-D. Anything else
(another name, a quote, a dot after a name, a comma, an unbalanced parenthesis, a third
variable) raises :class:`ExpressionError` with one sentence naming the offending token and
its position. Length and nesting are bounded so that no text can exhaust the stack.
"""

from __future__ import annotations

import math
import re
from typing import Callable, NamedTuple, NoReturn, Union

from gdlab.specs import Token, quote, tokenize

FUNCTIONS = ("sin", "cos", "exp", "log", "sqrt", "abs", "tanh")
CONSTANTS = {"pi": math.pi, "e": math.e}
VARIABLES = ("x", "y")
MAX_LENGTH = 2000      # characters
MAX_DEPTH = 64         # nested parentheses, unary signs and powers
MAX_TREE_DEPTH = 200   # operations nested in all (a chain x+x+...+x is that deep): bounds recursion

__all__ = ["ExpressionError", "Expression", "parse_expression", "FUNCTIONS", "CONSTANTS", "VARIABLES"]


class ExpressionError(ValueError):
    """A landscape expression that is malformed or uses something outside the whitelist."""


# ------------------------------------------------------------------------------- syntax tree

class Num(NamedTuple):
    value: float


class Var(NamedTuple):
    index: int          # 0 for x, 1 for y


class Unary(NamedTuple):
    op: str             # "-" ("+" is dropped while parsing)
    arg: "Node"


class Binary(NamedTuple):
    op: str             # one of + - * / **
    left: "Node"
    right: "Node"


class Call(NamedTuple):
    name: str           # one of FUNCTIONS
    arg: "Node"


Node = Union[Num, Var, Unary, Binary, Call]


class Expression(NamedTuple):
    """A parsed expression.

    Attributes:
      text: the text as given.
      dim: 1 (uses x only) or 2 (uses y).
      tree: the syntax tree (NamedTuples of this module).
      fn: θ ↦ f(θ) for θ of shape (dim,): a pure JAX function (jit, grad and vmap apply).
    """

    text: str
    dim: int
    tree: Node
    fn: Callable


# ------------------------------------------------------------------------------- tokenizer

_TOKEN_RE = re.compile(
    r"(?P<space>[ \t]+)"
    r"|(?P<number>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>\*\*|[-+*/^])"
    r"|(?P<paren>[()])",
    re.ASCII,
)


def _tokenize(text: str) -> list[Token]:
    # token kinds: "number", "name", "op" (+ - * / ** ^), "(", ")", "other", "end"
    return tokenize(text, _TOKEN_RE, literal="paren")


# ------------------------------------------------------------------------------- parser

_ALLOWED = (f"numbers, x and y, + - * / ** (or ^), parentheses, pi, e and the functions "
            f"{', '.join(FUNCTIONS)}")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0
        self.used: dict[str, int] = {}   # variable name -> first position

    # -- errors
    def error(self, problem: str) -> ExpressionError:
        return ExpressionError(f'expression "{quote(self.text, 80)}": {problem}; use only {_ALLOWED}.')

    def unexpected(self, token: Token, expected: str) -> NoReturn:
        if token.kind == "end":
            raise self.error(f"expected {expected} at the end of the text")
        if token.kind == "other":
            mark = "'" if token.text == '"' else '"'
            raise self.error(f"the character {mark}{quote(token.text)}{mark} at position {token.pos} is not allowed")
        raise self.error(f'unexpected "{quote(token.text)}" at position {token.pos}; expected {expected}')

    # -- cursor
    def peek(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        token = self.tokens[self.i]
        self.i += token.kind != "end"
        return token

    def deeper(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"it nests deeper than {MAX_DEPTH} levels")

    # -- grammar
    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise self.error("the text is empty")
        node = self.expr()
        token = self.peek()
        if token.kind != "end":
            if token.text == ")":
                raise self.error(f'the ")" at position {token.pos} has no matching "("')
            self.unexpected(token, "an operator (+ - * / **) or the end of the text")
        return node

    def expr(self) -> Node:
        node = self.term()
        while self.peek().kind == "op" and self.peek().text in "+-":
            op = self.advance().text
            node = Binary(op, node, self.term())
        return node

    def term(self) -> Node:
        node = self.unary()
        while self.peek().kind == "op" and self.peek().text in ("*", "/"):
            op = self.advance().text
            node = Binary(op, node, self.unary())
        return node

    def unary(self) -> Node:
        token = self.peek()
        if token.kind == "op" and token.text in "+-":
            self.advance()
            self.deeper()
            arg = self.unary()
            self.depth -= 1
            if token.text == "+":
                return arg
            # -2 is the number -2 (so 2**-2 is an integer power), -x is the negation of x
            return Num(-arg.value) if isinstance(arg, Num) else Unary("-", arg)
        return self.power()

    def power(self) -> Node:
        base = self.atom()
        if self.peek().kind == "op" and self.peek().text in ("**", "^"):
            self.advance()
            self.deeper()
            exponent = self.unary()
            self.depth -= 1
            return Binary("**", base, exponent)
        return base

    def atom(self) -> Node:
        token = self.advance()
        if token.kind == "number":
            value = float(token.text)
            if not math.isfinite(value):
                raise self.error(f'the number "{quote(token.text)}" at position {token.pos} is too large '
                                 f'for double precision')
            return Num(value)
        if token.kind == "name":
            return self.name(token)
        if token.kind == "(":
            self.deeper()
            node = self.expr()
            self.depth -= 1
            closing = self.peek()
            if closing.kind != ")":
                if closing.kind == "end":
                    raise self.error(f'the "(" at position {token.pos} is never closed; add a ")"')
                self.unexpected(closing, 'an operator or ")"')
            self.advance()
            return node
        self.unexpected(token, "a number, x, y, a function or \"(\"")

    def name(self, token: Token) -> Node:
        word = token.text
        if word in FUNCTIONS:
            opening = self.peek()
            if opening.kind != "(":
                self.unexpected(opening, f'"(" after the function {word}')
            return Call(word, self.atom())
        if word in CONSTANTS:
            return Num(CONSTANTS[word])
        if word in VARIABLES:
            self.used.setdefault(word, token.pos)
            return Var(VARIABLES.index(word))
        if len(word) == 1 and word.isalpha():
            # a single letter reads as a variable: say so rather than "unknown name"
            names = sorted({*self.used, word, *self.later_letters()}, key=lambda w: (w not in VARIABLES, w))
            if len(names) > len(VARIABLES):
                raise self.error(f'it uses {len(names)} variables ({", ".join(names)}), but a landscape is a '
                                 f'function of x (1-D) or of x and y (2-D); "{word}" at position {token.pos} '
                                 f'is one too many')
            raise self.error(f'"{word}" at position {token.pos} is not a variable name: call the variables x '
                             f'(1-D) and y (2-D)')
        raise self.error(f'unknown name "{quote(word)}" at position {token.pos}')

    def later_letters(self) -> set[str]:
        return {t.text for t in self.tokens[self.i:] if t.kind == "name" and len(t.text) == 1
                and t.text.isalpha() and t.text not in CONSTANTS}


# ------------------------------------------------------------------------------- compiler

def _compile(node: Node) -> Callable:
    """The syntax tree as a closure over ``jax.numpy`` (imported here: parsing needs no JAX)."""
    import jax.numpy as jnp

    unary_fns = {"sin": jnp.sin, "cos": jnp.cos, "exp": jnp.exp, "log": jnp.log, "sqrt": jnp.sqrt,
                 "abs": jnp.abs, "tanh": jnp.tanh}
    binary_fns = {"+": jnp.add, "-": jnp.subtract, "*": jnp.multiply, "/": jnp.divide, "**": jnp.power}

    def build(n: Node) -> Callable:
        if isinstance(n, Num):
            value = n.value
            return lambda theta: jnp.asarray(value, theta.dtype)
        if isinstance(n, Var):
            index = n.index
            return lambda theta: theta[index]
        if isinstance(n, Unary):
            arg = build(n.arg)
            return lambda theta: -arg(theta)
        if isinstance(n, Call):
            fn, arg = unary_fns[n.name], build(n.arg)
            return lambda theta: fn(arg(theta))
        if isinstance(n.right, Num) and n.op == "**" and float(n.right.value).is_integer() \
                and abs(n.right.value) <= 64:
            # x**2 by repeated multiplication (lax.integer_pow): exact for negative x and with a
            # finite gradient at 0, where jnp.power(x, 2.0) goes through log|x|
            base, k = build(n.left), int(n.right.value)
            return lambda theta: jnp.asarray(base(theta)) ** k
        fn, left, right = binary_fns[n.op], build(n.left), build(n.right)
        return lambda theta: fn(left(theta), right(theta))

    inner = build(node)

    def f(theta):
        theta = jnp.asarray(theta)
        return jnp.asarray(inner(theta), theta.dtype)

    return f


def _tree_depth(tree: Node) -> int:
    """Depth of the syntax tree, counted without recursion (a long chain must not overflow the stack)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(node, Binary):
            stack += [(node.left, depth + 1), (node.right, depth + 1)]
        elif isinstance(node, (Unary, Call)):
            stack.append((node.arg, depth + 1))
    return deepest


def parse_expression(text: str) -> Expression:
    """Parse a landscape expression in ``x`` or ``x, y`` into a JAX function, safely.

    Args:
      text: e.g. ``"x**4 - 3*x**2 + x"`` or ``"(x**2 + y - 11)**2 + (x + y**2 - 7)**2"``.

    Returns:
      An :class:`Expression`; ``fn(theta)`` evaluates it at θ = (x,) or (x, y).

    Raises:
      ExpressionError: one sentence naming the offending token and its position.

    Example:
      >>> import jax.numpy as jnp
      >>> e = parse_expression("x**4 - 3*x**2 + x")
      >>> e.dim, float(e.fn(jnp.array([2.0])))
      (1, 6.0)
      >>> parse_expression("__import__('os')")
      Traceback (most recent call last):
      ...
      gdlab.expressions.ExpressionError: expression "__import__('os')": unknown name "__import__" at position 0; use only numbers, x and y, + - * / ** (or ^), parentheses, pi, e and the functions sin, cos, exp, log, sqrt, abs, tanh.
    """
    if not isinstance(text, str):
        raise ExpressionError(f"an expression must be text such as \"x**2 + y**2\", got {type(text).__name__}.")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"the expression is {len(text):,} characters long; at most {MAX_LENGTH:,} are accepted.")
    if "\n" in text or "\r" in text:
        raise ExpressionError("the expression spans several lines; write it on one line.")
    parser = _Parser(text)
    tree = parser.parse()
    if _tree_depth(tree) > MAX_TREE_DEPTH:
        raise ExpressionError(f"the expression nests more than {MAX_TREE_DEPTH} operations; write a shorter one.")
    if not parser.used:
        raise ExpressionError(f'expression "{quote(text, 80)}" has no variable; a landscape is a function of x '
                              f'(1-D) or of x and y (2-D), e.g. "x**2" or "x**2 + y**2".')
    dim = 2 if "y" in parser.used else 1
    return Expression(text=text, dim=dim, tree=tree, fn=_compile(tree))
