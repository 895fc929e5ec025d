"""A griffe extension: the reST in gdlab's docstrings, read as the Markdown mkdocstrings renders.

gdlab's docstrings are Google style (Args:, Returns:, Example:) with two reST habits taken from
optax: formulas in ``.. math::`` blocks and cross-references as ``:func:`fit```. mkdocstrings reads
docstrings as Markdown, where both would print verbatim, so this rewrites them as the site loads
the code: a math block becomes ``$$ ... $$`` (pymdownx.arithmatex, typeset by MathJax) and a role
becomes inline code. The source keeps its plain-text form, which reads well in ``help()``.
"""

from __future__ import annotations

import re
import textwrap

import griffe

# `.. math::` followed by the formula on the same line, or by an indented block after it.
_MATH = re.compile(r"^(?P<indent>[ \t]*)\.\. math::[ \t]*(?P<inline>\S.*)?\n(?P<block>(?:(?:(?P=indent)[ \t]+\S.*)?\n|[ \t]*\n)*)",
                   re.MULTILINE)
_ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|obj|exc):`~?([^`]+)`")
# griffe's Google parser knows "Examples:" (it typesets the >>> lines as code); gdlab writes "Example:".
_EXAMPLE = re.compile(r"^(?P<indent>[ \t]*)Example:[ \t]*$", re.MULTILINE)


def markdown_docstring(text: str) -> str:
    r"""The docstring ``text`` with its ``.. math::`` blocks as ``$$`` blocks, its roles as code and
    its ``Example:`` section as the ``Examples:`` griffe parses.

    Args:
      text: a docstring, already dedented (as griffe stores it).

    Returns:
      The same text in the Markdown that mkdocstrings and pymdownx.arithmatex read.

    Example:
      >>> print(markdown_docstring("Step.\n\n.. math::  x_{t+1} = x_t - g\n\nSee :func:`~gdlab.fit`."))
      Step.
      <BLANKLINE>
      $$
      x_{t+1} = x_t - g
      $$
      <BLANKLINE>
      See `gdlab.fit`.
    """

    def block(match: re.Match) -> str:
        indent = match.group("indent")
        body = (match.group("inline") or "") + "\n" + textwrap.dedent(match.group("block"))
        formula = "\n".join(line for line in body.strip("\n").splitlines()).strip()
        lines = ["$$", *formula.splitlines(), "$$"]
        return "\n".join(indent + line if line.strip() else "" for line in lines) + "\n\n"

    if not text:
        return text
    return _EXAMPLE.sub(r"\g<indent>Examples:", _ROLE.sub(r"`\1`", _MATH.sub(block, text))).rstrip("\n")


class RestToMarkdown(griffe.Extension):
    """Rewrites every docstring griffe loads with :func:`markdown_docstring`."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)
