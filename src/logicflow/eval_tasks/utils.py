"""lm-eval hooks (`!function utils.<name>`) of the rendered LogicFlow tasks; logic: logicflow.evaluation.

`settings.json` beside this file (written when the tasks are rendered) holds the sandbox limits.
"""

import json
from pathlib import Path

from logicflow.evaluation import humaneval_task, ifeval_task, math_task

SETTINGS = Path(__file__).with_name("settings.json")


def math_process_results(doc, results):
    return math_task.process_results(doc, results)


def humaneval_process_results(doc, results):
    return humaneval_task.process_results(doc, results, json.loads(SETTINGS.read_text()))


def ifeval_process_results(doc, results):
    return ifeval_task.process_results(doc, results)


agg_inst_level_acc = ifeval_task.agg_inst_level_acc
