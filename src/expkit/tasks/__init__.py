"""Tasks: what a step computes (names load on first use: ``tasks.options`` stays torch-free)."""
from expkit.lazy import exports

__all__ = ["ClassificationTask", "LanguageModelTask", "RegressionTask", "StepResult", "Task"]
__getattr__, __dir__ = exports(__name__, {"ClassificationTask": "classification", "LanguageModelTask": "language_model",
                                          "RegressionTask": "regression", "StepResult": "base", "Task": "base"})
