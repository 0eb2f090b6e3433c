"""Replay rows: the base model's own greedy answers to generic code and instruction prompts.

Training only on math think-blocks teaches a small model to open `<think>` and reason about sums on every
prompt, and its code and instruction-following drift. Mixing in the base model's own answers to other kinds
of prompt (self-distillation) keeps that behaviour where it was, and puts no think-block on non-math
prompts (replay rows carry no thinking, so the chat template renders none).

    rows, report = replay_rows(models_dir, "chatml", count=160, max_new_tokens=192, batch_size=16, seed=0)

The prompts are written for this purpose from the lists below (none comes from an eval set; validation
decontaminates them like every row). Answers are generated once per (model weights, template, prompts,
budget, dtype) and cached under `$LOGICFLOW_CACHE/replay/`; an answer cut off at the budget is left out
(and counted in the report), so no row teaches stopping mid-sentence.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa

from logicflow.atomic import atomic_file
from logicflow.datasets.base import UNIFIED_SCHEMA
from logicflow.errors import DataError
from logicflow.paths import user_cache_dir

logger = logging.getLogger(__name__)

SOURCE = "replay"
CODE_TASKS = (
    "reverses a string",
    "checks whether a number is prime",
    "returns the factorial of n",
    "returns the nth Fibonacci number",
    "counts the vowels in a string",
    "removes duplicates from a list while keeping the order",
    "returns the largest of three numbers",
    "converts a temperature from Celsius to Fahrenheit",
    "flattens a list of lists",
    "merges two sorted lists into one sorted list",
    "returns the sum of the digits of an integer",
    "counts how often each word appears in a sentence",
    "capitalizes the first letter of every word in a sentence",
    "finds the second largest number in a list",
    "checks whether two strings are anagrams",
    "computes the greatest common divisor of two integers",
    "returns the squares of the even numbers in a list",
    "checks whether a year is a leap year",
    "returns the median of a list of numbers",
    "rotates a list to the right by k positions",
    "splits a list into chunks of size n",
    "finds the longest word in a sentence",
    "returns a dictionary mapping each character of a string to its count",
    "checks whether a list is sorted in ascending order",
    "computes the average of a list, ignoring None values",
    "converts a binary string such as '1011' to an integer",
    "returns the items that two lists have in common",
    "returns the first n prime numbers",
    "clamps a number between a lower and an upper bound",
    "returns the index of the smallest value in a list",
    "interleaves the items of two lists",
    "counts the lines in a text",
    "checks whether a string contains only digits",
    "transposes a matrix given as a list of lists",
    "returns the running totals of a list of numbers",
    "formats a number of seconds as minutes and seconds",
    "converts a dictionary's keys to lower case",
    "returns the n most common items of a list",
    "checks whether a password has at least eight characters and one digit",
    "removes every punctuation character from a string",
)
CODE_PHRASES = (
    "Write a Python function that {task}.",
    "Write a short Python function that {task}. Include a docstring.",
)
TOPICS = (
    "why the sky is blue",
    "how a rainbow forms",
    "what photosynthesis is",
    "how to make a good cup of tea",
    "the benefits of regular exercise",
    "how to prepare for a job interview",
    "what a household budget is and why it helps",
    "how vaccines protect people",
    "the water cycle",
    "how to start learning a new language",
    "why sleep matters",
    "how to write a polite email to a teacher",
    "why recycling is useful",
    "how bees make honey",
    "the difference between weather and climate",
    "how to care for a houseplant",
    "what a computer's memory does",
    "how to stay focused while studying",
    "why the moon has phases",
    "how to plan a short weekend trip",
    "what a healthy breakfast looks like",
    "how to save money on groceries",
    "what gravity is",
    "how to be a good listener",
    "why reading every day is useful",
    "how a bicycle's gears work",
    "what the internet is",
    "how to make a simple salad",
    "why people should drink enough water",
    "how to keep a desk tidy",
    "what volcanoes are",
    "how to introduce yourself at a meeting",
    "what a public library offers",
    "how clouds form",
    "why teamwork matters",
    "how to learn to swim as an adult",
    "what the scale on a map means",
    "how to keep a journal",
    "why trees are important for cities",
    "how to fix a flat bicycle tyre",
)
TOPIC_PHRASES = (
    "Explain {topic} in a few sentences.",
    "Write a short paragraph about {topic}.",
)
# Requests with a stated form: what the base model does with them is kept too (it is not taught to comply).
FORM_PHRASES = (
    "Describe {topic} in exactly two sentences.",
    "Give three short tips about {topic}, as a bulleted list.",
    "In under 40 words, tell me {topic}.",
    "Write one sentence about {topic}, all in lowercase letters.",
)


def prompts(count: int, seed: int) -> list[str]:
    """`count` distinct replay prompts (code, explanations and requests with a form, in turn), the same
    for the same seed."""
    rng = random.Random(seed)
    kinds = [
        [p.format(task=t) for p in CODE_PHRASES for t in CODE_TASKS],
        [p.format(topic=t) for p in TOPIC_PHRASES for t in TOPICS],
        rng.sample([p.format(topic=t) for p in FORM_PHRASES for t in TOPICS], 80),
    ]
    for kind in kinds:
        rng.shuffle(kind)
    mixed = [p for triple in zip(*kinds, strict=True) for p in triple]
    if count > len(mixed):
        raise ValueError(f"data.replay.rows = {count}: at most {len(mixed)} replay prompts exist")
    return mixed[:count]


def _generate(
    model_dir: Path, template: str, texts: list[str], max_new_tokens: int, batch_size: int
) -> list[Any]:
    """Greedy answers to `texts` through the evaluation's own LM wrapper (same chat formatting as eval)."""
    import torch

    from logicflow.evaluation.harness import device_and_dtype, make_lm, pick_threads
    from logicflow.model import load_causal_lm, load_tokenizer

    torch.set_num_threads(pick_threads())
    device, dtype = device_and_dtype()
    model = load_causal_lm(model_dir, dtype=dtype).to(device).eval()
    lm = make_lm(
        model, load_tokenizer(model_dir, template=template), batch_size=batch_size, sample_timeout_s=60
    )
    contexts = [lm.apply_chat_template([{"role": "user", "content": text}]) for text in texts]
    settings = {"until": [], "max_gen_toks": max_new_tokens, "do_sample": False}
    answers = lm.generate_until([SimpleNamespace(args=(c, settings)) for c in contexts])
    return [
        {"prompt": text, "answer": answer, "finish": lm.finish_reasons.get(context, "unknown")}
        for text, answer, context in zip(texts, answers, contexts, strict=True)
    ]


def _cache_key(model_sha: str, template: str, texts: list[str], max_new_tokens: int) -> str:
    from logicflow.evaluation.harness import device_and_dtype

    settings = [model_sha, template, texts, max_new_tokens, device_and_dtype()]
    return hashlib.sha256(json.dumps(settings).encode("utf-8")).hexdigest()[:32]


def replay_rows(
    model_dir: Path, template: str, count: int, max_new_tokens: int, batch_size: int, seed: int
) -> tuple[pa.Table, dict[str, Any]]:
    """Unified replay rows (source `replay`, no thinking) and a report: prompts, rows, left out. The base
    model must be in `model_dir` (a DataError says how to get it)."""
    from logicflow.model import weights_sha256

    if not (model_dir / "config.json").is_file():
        raise DataError(f"data.replay needs the base model in {model_dir}: run `logicflow stage model`")
    texts = prompts(count, seed)
    key = _cache_key(weights_sha256(model_dir), template, texts, max_new_tokens)
    cache = user_cache_dir() / "replay" / f"{key}.json"
    if cache.is_file():
        answers = json.loads(cache.read_text(encoding="utf-8"))
        logger.info("data: %d replay answers reused from %s", len(answers), cache)
    else:
        start = time.perf_counter()
        logger.info(
            "data: generating %d replay answers with the base model (<= %d tokens)", count, max_new_tokens
        )
        answers = _generate(model_dir, template, texts, max_new_tokens, batch_size)
        logger.info("data: replay answers generated in %.1fs", time.perf_counter() - start)
        with atomic_file(cache) as tmp:
            tmp.write_text(json.dumps(answers, ensure_ascii=False, indent=1), encoding="utf-8")
    kept = [a for a in answers if a["finish"] != "max_tokens" and a["answer"].strip()]
    rows = [
        {
            "id": f"{SOURCE}-{hashlib.sha1(a['prompt'].encode('utf-8')).hexdigest()[:16]}",
            "source": SOURCE,
            "messages": [
                {"role": "user", "content": a["prompt"]},
                {"role": "assistant", "content": a["answer"].strip()},
            ],
            "thinking": "",
            "answer": None,
        }
        for a in kept
    ]
    report = {
        "prompts": len(answers),
        "rows": len(rows),
        "left_out_cut_off_or_empty": len(answers) - len(rows),
        "max_new_tokens": max_new_tokens,
    }
    logger.info("data: %d replay rows (%d left out)", len(rows), report["left_out_cut_off_or_empty"])
    return pa.Table.from_pylist(rows, schema=UNIFIED_SCHEMA), report
