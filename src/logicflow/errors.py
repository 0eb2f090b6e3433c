"""Errors a user can cause. The CLI prints them as one line and exits non-zero."""


class LogicFlowError(Exception):
    """Base class: the message says what went wrong and what to do."""


class ConfigError(LogicFlowError):
    """Bad `params.yaml`, profile or override: names the key and the allowed values."""


class DataError(LogicFlowError):
    """Malformed source data: names the file, row or field."""


class RowError(DataError):
    """One upstream row that cannot become a unified row: quarantined with `code`, never a stopped stage."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # e.g. "parse.thought_unclosed"


class DiskFull(LogicFlowError):
    """No space (or quota) left while writing an output: names it; the previous output is untouched."""


class ModelError(LogicFlowError):
    """A base model that cannot be resolved or loaded: says what was tried."""


class ValidationFailed(LogicFlowError):
    """Too many rows failed validation: lists the top reasons and example row ids."""


class TrainingError(LogicFlowError):
    """Training cannot start or stopped (bad targets, NaN loss, too little data)."""


class TrackingError(LogicFlowError):
    """The MLflow tracking server cannot be reached."""


class EvaluationError(LogicFlowError):
    """An eval task or model that cannot be run."""


class Interrupted(Exception):  # noqa: N818 - a stop, not an error: deliberately not a LogicFlowError
    """Stopped from outside (SIGTERM: a preemption, `kill`, a cancelled run) after saving what resumes it.
    Not the user's fault, so not a LogicFlowError: the CLI exits 143 and the flow retries the stage."""


class PublishError(LogicFlowError):
    """A publish target that refuses the upload (never includes the token)."""


class PreflightFailed(LogicFlowError):
    """A preflight check found something that would stop the run (its lines say what and how to fix it)."""
