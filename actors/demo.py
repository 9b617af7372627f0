"""Built-in demo agents, so the service does something real with no LLM.

`echo` returns its input; `calc` evaluates arithmetic through a `calculate`
tool; `sleep` thinks `steps` times spread over `seconds` (for load, timeouts
and cancellation). It sleeps with `runtime.sleep`, which costs a fraction
of `trio.sleep` when thousands of runs sleep at once, much as real agents
waiting on sockets do.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from typing import Any

import runtime

from ._agents import Agent, RunContext

MAX_EXPRESSION = 200
MAX_EXPONENT = 100
MAX_MAGNITUDE = 10**100
MAX_SLEEP_SECONDS = 3600.0
MAX_SLEEP_STEPS = 10_000


class EchoAgent(Agent):
    name = "echo"
    description = "Returns its input."

    async def run(self, ctx: RunContext, input: Any) -> Any:
        return input


_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}


def calculate(expression: str) -> int | float:
    """Evaluate arithmetic on numbers: + - * / // % ** and parentheses.

    No names, calls or attributes: the expression is parsed, never eval'd.
    At most 200 characters, exponents at most 100 in size, and every
    intermediate value at most 10**100 in magnitude. Raises ValueError
    (naming the problem) or ZeroDivisionError.
    """
    if not isinstance(expression, str):
        raise ValueError(f"expression must be a string, got {type(expression).__name__}")
    if len(expression) > MAX_EXPRESSION:
        raise ValueError(f"expression must be at most {MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"not an arithmetic expression: {expression!r}") from None
    return _evaluate(tree.body)


def _evaluate(node: ast.expr) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _bounded(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _bounded(_UNARY[type(node.op)](_evaluate(node.operand)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ValueError(f"exponents must be at most {MAX_EXPONENT} in size, got {right}")
        return _bounded(_BINARY[type(node.op)](left, right))
    raise ValueError(
        f"only numbers and + - * / // % ** ( ) are allowed, found {ast.unparse(node)!r}"
    )


def _bounded(value: Any) -> int | float:
    if isinstance(value, complex):
        raise ValueError("the result is not a real number")
    if abs(value) > MAX_MAGNITUDE:
        raise ValueError("the result is too large (more than 10**100)")
    return value  # type: ignore[no-any-return]


class CalcAgent(Agent):
    name = "calc"
    description = 'Evaluates {"expression": "2+3*4"} with the calculate tool.'

    async def run(self, ctx: RunContext, input: Any) -> Any:
        if not isinstance(input, dict) or not isinstance(input.get("expression"), str):
            raise ValueError('calc expects input {"expression": "<arithmetic>"}')
        expression = input["expression"]
        await ctx.thinking(f"evaluating {expression}")
        return await ctx.tool("calculate", {"expression": expression}, calculate)


class SleepAgent(Agent):
    name = "sleep"
    description = 'Thinks {"steps": n} times over {"seconds": s}.'

    async def run(self, ctx: RunContext, input: Any) -> Any:
        input = input if isinstance(input, dict) else {}
        seconds = input.get("seconds", 1.0)
        steps = input.get("steps", 1)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise ValueError("sleep expects seconds to be a number")
        if isinstance(steps, bool) or not isinstance(steps, int):
            raise ValueError("sleep expects steps to be a whole number")
        if not 0 <= seconds <= MAX_SLEEP_SECONDS:
            raise ValueError(f"sleep expects 0 <= seconds <= {MAX_SLEEP_SECONDS}")
        if not 1 <= steps <= MAX_SLEEP_STEPS:
            raise ValueError(f"sleep expects 1 <= steps <= {MAX_SLEEP_STEPS}")
        pause = seconds / steps
        for step in range(1, steps + 1):
            await runtime.sleep(pause)
            await ctx.thinking(f"step {step} of {steps}")
        return {"slept": seconds, "steps": steps}


DEMO_AGENTS: tuple[type[Agent], ...] = (EchoAgent, CalcAgent, SleepAgent)
