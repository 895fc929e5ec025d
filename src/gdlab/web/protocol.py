"""The explorer's WebSocket protocol: the messages a page sends, validated by pydantic.

Client → server (JSON objects, one per WebSocket text message, each with a ``type``):

=========  =====================================================================================
``start``  ``{"type": "start", "config": RunConfig, "play": true}``: build a run (compiled code
           is cached, so a second run of the same kind starts at once) and play it, or hold it
           paused at step 0 with ``"play": false``.
``pause``  stop streaming; the run keeps its state.
``resume`` go on streaming from where the run paused.
``step``   ``{"type": "step", "n": 1}``: make n more steps, then pause.
``reset``  back to the starting q, paused at step 0 (the same configuration).
``update`` change ``lr``, ``momentum``, the schedule options, ``divergence`` or ``speed`` mid-run,
           without a reset (a constant step size and the momentum are traced values in the
           optimizer's state, so no recompilation). The ``updated`` reply gives the step at
           which the change applied; a page records its direction switches as
           ``config.switches`` (``[{"step": 137, "divergence": "forward"}, ...]``), which a
           later ``start`` replays exactly (a link reproduces a run that switched mid-run).
=========  =====================================================================================

Server → client: ``started`` (the target's components, the KL landscape, the first point),
``frames`` (a list of ``{step, params, mean, var, kl_forward, kl_reverse, loss, lr, grad}``,
one per step; ``grad`` is ‖∇L‖; NaN and ±inf are sent as null), ``state`` (``playing`` or
``paused``), ``stopped`` (``converged``, ``max_steps`` or ``diverged``, with the step and one
sentence), and ``error`` (``field``: the field at fault or null; ``message``: one sentence
naming the field and the allowed values). An error never closes the connection.

The names and limits are those of ``gdlab fit`` (``--target``, ``--init``, ``--divergence``,
``--optimizer``, ``--lr``, ...), so a run on the page is a run on the command line.
"""

from __future__ import annotations

import math
from typing import Iterable, Literal, Mapping, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from gdlab.families import PARAMS_1D
from gdlab.optim import OPTIMIZERS
from gdlab.schedules import SCHEDULES

MAX_MESSAGE_CHARS = 65_536        # a run configuration is a few hundred characters
MAX_SPEC_CHARS = 2_000
MAX_STEPS_LIMIT = 1_000_000       # a page's run; the CLI allows more
MAX_SPEED = 1_000_000             # steps per second; the engine's chunks set the real ceiling
MOMENTUM_MAX = 0.999
MOMENTUM_OPTIMIZERS = ("momentum", "nesterov", "natural")
WEB_PARAMS = tuple(p for p in PARAMS_1D if p != "expectation")   # the four the page offers, plus natural


def finite(v: Optional[float]) -> Optional[float]:
    """A field check shared by every tab's config: None or a finite number."""
    if v is not None and not math.isfinite(v):
        raise ValueError("must be a finite number")
    return v


def check_schedule_options(schedule: str, decay: Optional[float], decay_steps: Optional[int],
                           period: Optional[int], period_mult: float) -> None:
    """As on the CLI, a schedule option that does not apply is refused rather than silently ignored."""
    if schedule not in ("exponential", "step") and decay is not None:
        raise ValueError(f"decay applies to the exponential and step schedules, not {schedule!r}")
    if schedule not in ("exponential", "step", "cosine") and decay_steps is not None:
        raise ValueError(f"decay_steps applies to the exponential, step and cosine schedules, not {schedule!r}")
    if schedule != "warm-restarts" and (period is not None or period_mult != 1.0):
        raise ValueError(f"period and period_mult apply to the warm-restarts schedule, not {schedule!r}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


MAX_SWITCHES = 1_000


class Switch(_Strict):
    """A KL direction switch at a step of the run: the page recorded it, a link replays it."""

    step: int = Field(ge=0, le=MAX_STEPS_LIMIT)
    divergence: Literal["forward", "reverse"]


class RunConfig(_Strict):
    """One run of tab 1: fit a 1-D Gaussian q to p. Field names follow ``gdlab fit``'s options."""

    target: str = Field("N(2, 1)", min_length=1, max_length=MAX_SPEC_CHARS,
                        description='p, e.g. "0.5*N(-2, 0.25) + 0.5*N(2, 0.25)"; N(mean, VARIANCE)')
    init: str = Field("N(0, 5)", min_length=1, max_length=MAX_SPEC_CHARS, description="the starting q, one N(mean, variance)")
    divergence: Literal["forward", "reverse"] = "forward"
    optimizer: Literal[OPTIMIZERS] = "momentum"  # type: ignore[valid-type]
    lr: float = Field(0.05, description="step size; negative runs gradient ascent (it runs away)")
    momentum: Optional[float] = Field(0.0, ge=0.0, le=MOMENTUM_MAX)
    param: Literal[WEB_PARAMS] = "mean_var"  # type: ignore[valid-type]
    schedule: Literal[SCHEDULES] = "constant"  # type: ignore[valid-type]
    decay: Optional[float] = Field(None, gt=0.0, le=1.0)
    decay_steps: Optional[int] = Field(None, ge=1, le=2**31 - 2)
    alpha: float = Field(0.0, ge=0.0, le=1.0)
    period: Optional[int] = Field(None, ge=1, le=2**31 - 2)
    period_mult: float = Field(1.0, ge=1.0, le=100.0)
    max_steps: int = Field(10_000, ge=0, le=MAX_STEPS_LIMIT)
    tol: float = Field(1e-15, ge=0.0, le=1.0)
    patience: int = Field(20, ge=1, le=100_000)
    speed: int = Field(200, ge=1, le=MAX_SPEED, description="steps per second streamed")
    switches: list[Switch] = Field(default_factory=list, max_length=MAX_SWITCHES,
                                   description="direction switches to replay: at each step, as an update "
                                               "with that divergence would (a link reproduces a run)")

    @field_validator("lr", "momentum", "decay", "alpha", "period_mult", "tol")
    @classmethod
    def _finite(cls, v: Optional[float]) -> Optional[float]:
        return finite(v)

    @model_validator(mode="after")
    def _options_apply(self) -> "RunConfig":
        # As on the CLI, an option that does not apply is refused rather than silently ignored.
        if self.optimizer not in MOMENTUM_OPTIMIZERS and self.momentum not in (None, 0.0):
            raise ValueError(f"momentum applies to the {', '.join(MOMENTUM_OPTIMIZERS)} optimizers, "
                             f"not {self.optimizer!r}; set it to 0 or choose one of those")
        check_schedule_options(self.schedule, self.decay, self.decay_steps, self.period, self.period_mult)
        steps = [s.step for s in self.switches]
        if steps != sorted(steps):
            raise ValueError(f"switches must be in order of step, got steps {steps[:10]}")
        return self


class Start(_Strict):
    type: Literal["start"]
    config: RunConfig = RunConfig()
    play: bool = True
    id: Optional[int] = None    # echoed in "started" and in an error refusing it: starts may overlap


class Pause(_Strict):
    type: Literal["pause"]


class Resume(_Strict):
    type: Literal["resume"]


class Step(_Strict):
    type: Literal["step"]
    n: int = Field(1, ge=1, le=10_000)


class Reset(_Strict):
    type: Literal["reset"]


class Update(_Strict):
    """Fields left out (null) keep their values."""

    type: Literal["update"]
    lr: Optional[float] = None
    momentum: Optional[float] = Field(None, ge=0.0, le=MOMENTUM_MAX)
    schedule: Optional[Literal[SCHEDULES]] = None  # type: ignore[valid-type]
    decay: Optional[float] = Field(None, gt=0.0, le=1.0)
    decay_steps: Optional[int] = Field(None, ge=1, le=2**31 - 2)
    alpha: Optional[float] = Field(None, ge=0.0, le=1.0)
    period: Optional[int] = Field(None, ge=1, le=2**31 - 2)
    period_mult: Optional[float] = Field(None, ge=1.0, le=100.0)
    divergence: Optional[Literal["forward", "reverse"]] = None
    speed: Optional[int] = Field(None, ge=1, le=MAX_SPEED)

    @field_validator("lr", "momentum", "decay", "alpha", "period_mult")
    @classmethod
    def _finite(cls, v: Optional[float]) -> Optional[float]:
        return finite(v)


Message = Union[Start, Pause, Resume, Step, Reset, Update]
_MESSAGES = {m.model_fields["type"].annotation.__args__[0]: m for m in (Start, Pause, Resume, Step, Reset, Update)}


class ProtocolError(ValueError):
    """A message the server refuses: ``field`` names the field at fault (or None)."""

    def __init__(self, message: str, field: Optional[str] = None):
        super().__init__(message)
        self.field = field


def _describe(error: dict, config_fields: Iterable[str] = ()) -> tuple[str, Optional[str]]:
    """One sentence for pydantic's first error, naming the field (``config.lr`` → ``lr``)."""
    loc = [str(x) for x in error.get("loc", ()) if not isinstance(x, int)]
    if loc and loc[0] == "config":
        loc = loc[1:]
    field = ".".join(loc) or None
    msg = error.get("msg", "is not valid")
    ctx = error.get("ctx") or {}
    if error.get("type") == "literal_error" and "expected" in ctx:
        msg = f"must be one of {ctx['expected']}"
    elif error.get("type") == "extra_forbidden":
        msg = "is not a field of this message"
    msg = msg.removeprefix("Value error, ").replace("Input should be", "must be")
    if field is None and msg.split(" ")[0] in config_fields:   # a rule across fields names its field first
        field = msg.split(" ")[0]
    got = error.get("input")
    shown = "" if isinstance(got, dict) or got is None else f", got {str(got)[:60]!r}"
    if field is None:
        return f"{msg[0].upper()}{msg[1:]}{shown}.", None
    if msg.startswith(field + " "):
        return f"{msg}{shown}.", field
    return f"{field} {msg[0].lower()}{msg[1:]}{shown}.", field


def message_type(text: str, messages: Mapping[str, type] = _MESSAGES) -> tuple[str | None, int | None]:
    """(``type``, ``id``) of a readable message of a known type, else (None, None); never raises.
    ``messages`` maps each ``type`` to its pydantic model (another tab passes its own)."""
    import json

    if len(text) > MAX_MESSAGE_CHARS:
        return None, None
    try:
        raw = json.loads(text)
    except ValueError:
        return None, None
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind not in messages:
        return None, None
    ident = raw.get("id")
    return kind, ident if isinstance(ident, int) and not isinstance(ident, bool) else None


def parse_message(text: str, messages: Mapping[str, type] = _MESSAGES) -> Message:
    """The message in ``text``, or :class:`ProtocolError` with one sentence saying what is wrong.
    ``messages`` maps each ``type`` to its pydantic model (another tab passes its own); a
    ``start`` model's ``config`` field names the fields a cross-field rule may blame."""
    import json

    if len(text) > MAX_MESSAGE_CHARS:
        raise ProtocolError(f"the message is {len(text):,} characters long; the limit is {MAX_MESSAGE_CHARS:,}.")
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ProtocolError(f"the message is not valid JSON ({exc.msg} at character {exc.pos}); "
                            f"send one JSON object such as {{\"type\": \"pause\"}}.") from None
    if not isinstance(raw, dict):
        raise ProtocolError("the message must be a JSON object with a \"type\", e.g. {\"type\": \"pause\"}.")
    kind = raw.get("type")
    if kind not in messages:
        raise ProtocolError(f"type must be one of {', '.join(messages)}, got {str(kind)[:40]!r}.", "type")
    try:
        return TypeAdapter(messages[kind]).validate_python(raw)
    except ValidationError as exc:
        start = messages.get("start")
        config = start.model_fields["config"].annotation if start is not None and "config" in start.model_fields else None
        message, field = _describe(exc.errors()[0], config.model_fields if isinstance(config, type) else ())
        raise ProtocolError(message, field) from None
