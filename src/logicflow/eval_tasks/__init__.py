"""lm-eval task templates of LogicFlow's offline tasks (rendered with absolute paths by evaluation.tasks)."""
