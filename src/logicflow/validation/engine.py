"""One ephemeral Great Expectations context: a suite and a checkpoint per table, Data Docs, failing rows.

Each table is validated through a `Checkpoint` (one `ValidationDefinition`, an `UpdateDataDocsAction`) into a
static Data Docs site at an absolute folder, with `result_format` COMPLETE and the unique row key as
`unexpected_index_column_names`, so every failing row (not just the first 200) comes back by its key.
Before that, each input file passes a schema gate (the table-level expectations run directly on a batch):
the derived columns can only be computed from columns that exist with the right types.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from logicflow.validation.suites import Check
from logicflow.validation.tables import KEY

logger = logging.getLogger(__name__)
SITE = "logicflow"


@dataclass
class CheckResult:
    check: Check
    success: bool
    mostly: float
    element_count: int = 0
    unexpected_count: int = 0
    unexpected_keys: list[str] = field(default_factory=list)
    observed: Any = None  # table-level expectations: what GX saw (e.g. the column's type)
    error: str | None = None  # the expectation could not run (e.g. its column is missing)

    @property
    def failed_rows(self) -> bool:
        return not self.check.table_level and bool(self.unexpected_keys)

    def summary(self) -> dict[str, Any]:
        return {
            "family": self.check.family,
            "table": self.check.table,
            "success": self.success,
            "mostly": self.mostly,
            "unexpected": self.unexpected_count,
            "evaluated": self.element_count,
        }


class GXEngine:
    """Owns the context; `validate` runs one suite over one frame and returns a result per check."""

    def __init__(self, docs_dir: Path):
        started = time.perf_counter()
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        for name in list(logging.root.manager.loggerDict):  # GX sets some of its loggers to INFO itself
            if name.startswith("great_expectations"):
                logging.getLogger(name).setLevel(logging.WARNING)

        self.gx = gx
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(
            globally=False
        )  # one bar per metric otherwise
        self.context.add_data_docs_site(
            site_name=SITE,
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir.resolve()),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        self.source = self.context.data_sources.add_pandas("logicflow")
        logger.info("Great Expectations context ready in %.1fs", time.perf_counter() - started)

    def validate(
        self, suite_name: str, frame: pd.DataFrame, checks: list[Check], mostly: dict[str, float]
    ) -> list[CheckResult]:
        """Run `checks` over `frame` through a checkpoint that stores the result and updates Data Docs."""
        gx = self.gx
        asset = self.source.add_dataframe_asset(name=suite_name)
        batch = asset.add_batch_definition_whole_dataframe(f"{suite_name}.all")
        suite = self.context.suites.add(gx.ExpectationSuite(name=suite_name))
        for check in checks:
            suite.add_expectation(check.expectation(mostly.get(check.name, 1.0)))
        definition = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=suite_name, data=batch, suite=suite)
        )
        checkpoint = self.context.checkpoints.add(
            gx.Checkpoint(
                name=suite_name,
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=[SITE])],
                result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [KEY]},
            )
        )
        outcome = checkpoint.run(batch_parameters={"dataframe": frame.reset_index(drop=True)})
        return [
            self._result(res, checks, mostly) for run in outcome.run_results.values() for res in run.results
        ]

    def gate(self, name: str, frame: pd.DataFrame, checks: list[Check]) -> list[CheckResult]:
        """Run table-level `checks` directly on a batch (no store, no Data Docs): the schema gate that must
        pass before derived columns can be computed. The same checks run again in the content suites, so
        they show in Data Docs."""
        gx = self.gx
        batch = (
            self.source.add_dataframe_asset(name=f"{name}.gate")
            .add_batch_definition_whole_dataframe("all")
            .get_batch(batch_parameters={"dataframe": frame.reset_index(drop=True)})
        )
        suite = gx.ExpectationSuite(name=f"{name}.gate", expectations=[c.expectation(1.0) for c in checks])
        outcome = batch.validate(suite, result_format={"result_format": "SUMMARY"})
        return [self._result(res, checks, {}) for res in outcome.results]

    @staticmethod
    def _result(res: Any, checks: list[Check], mostly: dict[str, float]) -> CheckResult:
        check = next(c for c in checks if c.name == res.expectation_config.meta["check"])
        info = res.exception_info or {}
        raised = info.get("raised_exception") or any(
            isinstance(v, dict) and v.get("raised_exception") for v in info.values()
        )
        detail = res.result or {}
        keys = [entry[KEY] for entry in detail.get("unexpected_index_list") or [] if isinstance(entry, dict)]
        return CheckResult(
            check=check,
            success=bool(res.success),
            mostly=mostly.get(check.name, 1.0),
            element_count=int(detail.get("element_count") or 0),
            unexpected_count=int(detail.get("unexpected_count") or 0),
            unexpected_keys=keys,
            observed=detail.get("observed_value"),
            error=_exception_message(info) if raised else None,
        )


def _exception_message(info: dict[str, Any]) -> str:
    if "exception_message" in info:
        return str(info.get("exception_message"))
    for value in info.values():
        if isinstance(value, dict) and value.get("exception_message"):
            return str(value["exception_message"])
    return "unknown error"
