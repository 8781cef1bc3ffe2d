"""Multi-step arithmetic with a written scratchpad: a verifiable task with long-tailed lengths.

Two problem families, both solved by a chain of additions written out one step at a time:

    add  prompt "Q: 3+5+9+2=\\nA: "  solution "3+5=8,8+9=17,17+2=19 #### 19"        (k-1 steps)
    mul  prompt "Q: 7*4=\\nA: "      solution "7+7=14,14+7=21,21+7=28 #### 28"      (b-1 steps)

The number of steps s is drawn from a truncated power law P(s) ~ s**-tail, so most solutions are
short and a few are long: the length distribution has the long right tail that makes GRPO
rollouts straggle. The reward is exact match of the integer after "####" (nothing but whitespace
may follow it); a completion that never writes "####" (for instance one that loops until the
token cap) scores 0.

Train and held-out splits partition the problem space by a hash of the question text, so they are
disjoint for every seed and for every n; within a split, problems are drawn by rejection sampling
from the task distribution, so `sample_problems(..., n)` is a prefix of the same call with a
larger n. Pure python + numpy: importing this module does not import torch.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from sagc.tasks.config import TaskConfig

SPLITS = ("train", "heldout")
ANSWER_MARK = "####"
_QUESTION = re.compile(r"^\s*(?:Q:\s*)?(?P<q>\d+(?:\+\d+)+=|\d+\*\d+=)")
_ANSWER_TAIL = re.compile(r"\s*(-?\d+)\s*")


@dataclass(frozen=True)
class Problem:
    kind: str  # "add" or "mul"
    operands: tuple[int, ...]  # add: the summands; mul: (multiplicand a, multiplier b)
    question: str  # "3+5+9+2=": what the split hash and the answer are computed from
    prompt: str  # "Q: 3+5+9+2=\nA: ": the text a policy is conditioned on
    solution: str  # the reference scratchpad, ending in "#### answer"
    answer: int
    steps: int  # additions written in the solution (>= 1)

    def as_record(self) -> dict[str, Any]:
        """One row of a prompt dataset (TRL passes the extra columns to the reward function)."""
        return {"prompt": self.prompt, "answer": self.answer, "solution": self.solution,
                "kind": self.kind, "steps": self.steps}


# ---------------------------------------------------------------------------- building problems

def addends(kind: str, operands: Sequence[int]) -> tuple[int, ...]:
    """The numbers the scratchpad adds up, in order: a*b is a added b times."""
    if kind == "add":
        return tuple(int(x) for x in operands)
    if kind == "mul":
        a, b = (int(x) for x in operands)
        return (a,) * b
    raise ValueError(f"kind must be one of ('add', 'mul'), got {kind!r}")


def scratchpad(terms: Sequence[int], slips: dict[int, int] | None = None) -> tuple[str, int]:
    """Write "t0+t1=r1,r1+t2=r2,..." and return (text, final running value).

    slips maps a step index (0-based) to an error added to that step's result; later steps carry
    on from the wrong value, as a model that made one mistake would.
    """
    if len(terms) < 2:
        raise ValueError(f"a scratchpad needs at least 2 terms, got {len(terms)}")
    slips = slips or {}
    value = int(terms[0])
    parts = []
    for i, term in enumerate(terms[1:]):
        result = value + int(term) + slips.get(i, 0)
        parts.append(f"{value}+{term}={result}")
        value = result
    return ",".join(parts), value


def make_problem(kind: str, operands: Sequence[int]) -> Problem:
    ops = tuple(int(x) for x in operands)
    if kind == "add":
        if len(ops) < 2 or min(ops) < 0:
            raise ValueError(f"add needs >= 2 non-negative operands, got {ops}")
        question = "+".join(str(x) for x in ops) + "="
    elif kind == "mul":
        if len(ops) != 2 or ops[0] < 0 or ops[1] < 2:
            raise ValueError(f"mul needs operands (a >= 0, b >= 2), got {ops}")
        question = f"{ops[0]}*{ops[1]}="
    else:
        raise ValueError(f"kind must be one of ('add', 'mul'), got {kind!r}")
    terms = addends(kind, ops)
    text, answer = scratchpad(terms)
    return Problem(kind=kind, operands=ops, question=question, prompt=f"Q: {question}\nA: ",
                   solution=f"{text} {ANSWER_MARK} {answer}", answer=answer, steps=len(terms) - 1)


def problem_from_prompt(prompt: str) -> Problem | None:
    """Rebuild the problem from its prompt (or bare question); None if it is not one of ours."""
    m = _QUESTION.match(prompt)
    if m is None:
        return None
    q = m.group("q")[:-1]
    if "*" in q:
        a, b = (int(x) for x in q.split("*"))
        return make_problem("mul", (a, b)) if b >= 2 else None
    return make_problem("add", [int(x) for x in q.split("+")])


def split_of(question: str, heldout_fraction: float) -> str:
    """'heldout' for a fixed share of the problem space, by a stable hash of the question."""
    digest = hashlib.blake2b(question.encode("ascii"), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2.0**64  # uniform in [0, 1), same on every machine
    return "heldout" if u < heldout_fraction else "train"


def steps_distribution(task: TaskConfig) -> tuple[np.ndarray, np.ndarray]:
    """(steps, probability) of the truncated power law P(s) ~ s**-tail on [min_steps, max_steps]."""
    steps = np.arange(task.min_steps, task.max_steps + 1)  # (m,) int
    weight = steps.astype(np.float64) ** -task.tail  # (m,)
    return steps, weight / weight.sum()


def sample_problems(task: TaskConfig, split: str, n: int, seed: int = 0) -> list[Problem]:
    """n problems of one split, drawn from the task distribution conditioned on the split.

    Deterministic in (task, split, seed); the first m of n problems equal sample_problems(..., m).
    Short problems come from small spaces (there are only 81 one-step "add" questions with
    max_operand 9), so a split repeats them; long problems are nearly always distinct.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    rng = np.random.default_rng([int(seed), SPLITS.index(split)])
    steps, p_steps = steps_distribution(task)
    # inverse-CDF draws (one uniform each) are much faster than rng.choice in a python loop
    steps_cdf = np.cumsum(p_steps)  # (m,)
    kind_cdf = np.cumsum(task.kind_weights) / sum(task.kind_weights)  # (kinds,)
    out: list[Problem] = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 1000 * (n + 10):  # only reachable if the split is (nearly) empty
            raise RuntimeError(f"could not draw {n} {split} problems from {task}")
        kind = task.kinds[min(int(np.searchsorted(kind_cdf, rng.random(), side="right")), len(kind_cdf) - 1)]
        s = int(steps[min(int(np.searchsorted(steps_cdf, rng.random(), side="right")), len(steps) - 1)])
        if kind == "add":
            ops = tuple(int(x) for x in rng.integers(1, task.max_operand + 1, size=s + 1))
            question = "+".join(str(x) for x in ops) + "="
        else:
            ops = (int(rng.integers(2, task.max_operand + 1)), s + 1)
            question = f"{ops[0]}*{ops[1]}="
        if split_of(question, task.heldout_fraction) == split:
            out.append(make_problem(kind, ops))
    return out


# ------------------------------------------------------------- noisy targets for the warm-start

def looping_solution(problem: Problem, max_chars: int) -> str:
    """A scratchpad that runs past the last term and never answers, cut at max_chars characters.

    "add" starts over from the first summand (the writer lost its place); "mul" keeps adding a
    (the writer lost count). This is the runaway completion that stalls a synchronous rollout.
    """
    terms = list(addends(problem.kind, problem.operands))
    base = list(problem.operands) if problem.kind == "add" else [problem.operands[0]]
    text = ""
    while len(text) < max_chars:
        terms += base
        text, _ = scratchpad(terms)
    return text[:max_chars]


def erroneous_solution(problem: Problem, rng: np.random.Generator) -> str:
    """The reference scratchpad with one addition off by 1-3 (and so a wrong final answer)."""
    terms = addends(problem.kind, problem.operands)
    step = int(rng.integers(0, len(terms) - 1))
    delta = int(rng.integers(1, 4)) * (1 if rng.random() < 0.5 else -1)
    partial = sum(terms[: step + 2])
    if partial + delta < 0:  # keep every written number non-negative
        delta = -delta
    text, answer = scratchpad(terms, {step: delta})
    return f"{text} {ANSWER_MARK} {answer}"


# ------------------------------------------------------------------------------------- rewards

def _text(completion: Any) -> str:
    """A completion as plain text; conversational completions give their last message's content."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content", "")
        return content if isinstance(content, str) else ""
    return ""


def parse_answer(completion: Any) -> int | None:
    """The integer after the first "####"; None if there is none or anything but space follows."""
    text = _text(completion)
    at = text.find(ANSWER_MARK)
    if at < 0:
        return None
    m = _ANSWER_TAIL.fullmatch(text, at + len(ANSWER_MARK))
    return int(m.group(1)) if m else None


def score(completion: Any, answer: int | str) -> float:
    """1.0 if the completion's final answer equals `answer` exactly, else 0.0."""
    got = parse_answer(completion)
    try:
        want = int(answer)
    except (TypeError, ValueError):
        raise ValueError(f"answer must be an integer, got {answer!r}") from None
    return 1.0 if got is not None and got == want else 0.0


def reward_fn(prompts: Sequence[Any], completions: Sequence[Any], answer: Iterable[Any] | None = None,
              **kwargs: Any) -> list[float]:
    """Exact-match reward in TRL's reward-function signature.

    Uses the dataset's `answer` column when TRL passes it, else recomputes the answer from each
    prompt (the task is self-verifying). Raises ValueError naming the index of a prompt that is
    neither, rather than silently scoring it 0.
    """
    completions = list(completions)
    if answer is None:
        answers = []
        for i, prompt in enumerate(prompts):
            problem = problem_from_prompt(_text(prompt))
            if problem is None:
                raise ValueError(f"reward_fn: prompt {i} is not an arithmetic question and no "
                                 f"'answer' column was given: {_text(prompt)[:60]!r}")
            answers.append(problem.answer)
    else:
        answers = list(answer)
    if len(answers) != len(completions):
        raise ValueError(f"reward_fn: {len(completions)} completions but {len(answers)} answers")
    return [score(c, a) for c, a in zip(completions, answers)]


def to_records(problems: Iterable[Problem]) -> list[dict[str, Any]]:
    """Rows for `datasets.Dataset.from_list` (columns prompt, answer, solution, kind, steps)."""
    return [p.as_record() for p in problems]
