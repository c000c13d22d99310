from expkit.tasks.base import StepResult, Task
from expkit.tasks.classification import ClassificationTask

__all__ = ["ClassificationTask", "StepResult", "Task"]
