"""Classification quality on the feedback rows as Evidently metrics, computed by `ctloop.evaluate`.

Evidently 0.7 has no balanced accuracy, and its F1, precision, recall and accuracy switch to
binary scores (with pos_label=1, which fails on string labels) as soon as the production rows hold
only two classes. These metrics give the project's own definitions (`ctloop.evaluate`, the ones
the manifests and the gate use) on every row set instead: MacroF1, MacroPrecision, MacroRecall,
AccuracyScore and BalancedAccuracy.

They read the target and prediction columns from the data definition's classification, like
Evidently's own metrics, and return a SingleValue, so `evidently ui` stores and plots them without
importing this module.
"""

from __future__ import annotations

import abc
from typing import ClassVar, Generic, TypeVar

import numpy as np
import pandas as pd
from evidently.core.datasets import Dataset
from evidently.core.metric_types import (
    SingleValue,
    SingleValueCalculation,
    SingleValueMetric,
    get_default_render,
)
from evidently.core.report import Context
from evidently.legacy.model.widget import BaseWidgetInfo
from evidently.legacy.renderers.html_widgets import WidgetSize, table_data
from sklearn.metrics import precision_recall_fscore_support

from ctloop import evaluate


class FeedbackQuality(SingleValueMetric):
    """Base of the quality metrics: which classification of the data definition to score."""

    classification_name: str = "default"


TQuality = TypeVar("TQuality", bound=FeedbackQuality)


class FeedbackQualityCalculation(SingleValueCalculation[TQuality], Generic[TQuality], abc.ABC):
    """Score the current rows' prediction against their target with one scikit-learn function."""

    title: ClassVar[str]

    @staticmethod
    @abc.abstractmethod
    def score(target: np.ndarray, prediction: np.ndarray, /) -> float:
        """The metric's value on these labels (a function of `ctloop.evaluate`)."""

    def calculate(
        self, context: Context, current_data: Dataset, reference_data: Dataset | None
    ) -> SingleValue:
        target, prediction = labels(context, current_data, self.metric.classification_name)
        if len(target) == 0:
            raise ValueError(f"{self.title}: no feedback rows to score")
        value = float(self.score(target, prediction))
        result = self.result(value)
        result.widget = self.widgets(result, context, target, prediction, reference_data)
        return result

    def widgets(
        self,
        result: SingleValue,
        context: Context,
        target: np.ndarray,
        prediction: np.ndarray,
        reference_data: Dataset | None,
    ) -> list:
        """A half-width counter, so that the scores sit side by side in the report."""
        widgets = get_default_render(self.display_name(), result)
        for widget in widgets:
            widget.size = WidgetSize.HALF.value
        return widgets

    def display_name(self) -> str:
        return self.title


def labels(context: Context, data: Dataset, classification_name: str) -> tuple[np.ndarray, ...]:
    """The target and prediction columns named by the data definition, as strings."""
    classification = context.data_definition.get_classification(classification_name)
    if classification is None or classification.prediction_labels is None:
        raise ValueError(f"the data definition has no classification {classification_name!r}")
    frame = data.as_dataframe()
    return (
        frame[classification.target].astype(str).to_numpy(),
        frame[classification.prediction_labels].astype(str).to_numpy(),
    )


class MacroF1(FeedbackQuality):
    """Macro F1 of the served predictions on the feedback rows (ctloop.evaluate.macro_f1)."""


class MacroF1Calculation(FeedbackQualityCalculation[MacroF1]):
    title = "F1 (macro)"
    score = staticmethod(evaluate.macro_f1)


class MacroPrecision(FeedbackQuality):
    """Macro precision of the served predictions on the feedback rows."""


class MacroPrecisionCalculation(FeedbackQualityCalculation[MacroPrecision]):
    title = "Precision (macro)"
    score = staticmethod(evaluate.macro_precision)


class MacroRecall(FeedbackQuality):
    """Macro recall of the served predictions on the feedback rows."""


class MacroRecallCalculation(FeedbackQualityCalculation[MacroRecall]):
    title = "Recall (macro)"
    score = staticmethod(evaluate.macro_recall)


class AccuracyScore(FeedbackQuality):
    """Share of feedback rows whose served prediction was right."""


class AccuracyScoreCalculation(FeedbackQualityCalculation[AccuracyScore]):
    title = "Accuracy"
    score = staticmethod(evaluate.accuracy)


class BalancedAccuracy(FeedbackQuality):
    """Mean recall over the classes present in the feedback (scikit-learn's definition)."""


class BalancedAccuracyCalculation(FeedbackQualityCalculation[BalancedAccuracy]):
    title = "Balanced accuracy"
    score = staticmethod(evaluate.balanced_accuracy)

    def widgets(
        self,
        result: SingleValue,
        context: Context,
        target: np.ndarray,
        prediction: np.ndarray,
        reference_data: Dataset | None,
    ) -> list:
        """The counter, then the per-class table that shows which recalls were averaged."""
        widgets = super().widgets(result, context, target, prediction, reference_data)
        known: list[str] = []
        if reference_data is not None:
            # Reference classes too, so that a class absent from production shows as absent.
            known = labels(context, reference_data, self.metric.classification_name)[0].tolist()
        return [*widgets, per_class_table(target, prediction, known)]


def per_class_table(target: np.ndarray, prediction: np.ndarray, known: list[str]) -> BaseWidgetInfo:
    """One row per class: feedback rows, recall, precision, F1, and whether it is averaged."""
    classes = sorted(set(known) | set(target.tolist()) | set(prediction.tolist()))
    precision, recall, f1, support = precision_recall_fscore_support(
        target, prediction, labels=classes, zero_division=0
    )
    predicted = pd.Series(prediction).value_counts()
    rows = [
        [
            label,
            int(count),
            int(predicted.get(label, 0)),
            f"{r:.3f}" if count else "-",
            f"{p:.3f}" if predicted.get(label, 0) else "-",
            f"{f:.3f}" if count or predicted.get(label, 0) else "-",
            "yes" if count else "no: absent from the feedback",
        ]
        for label, p, r, f, count in zip(classes, precision, recall, f1, support, strict=True)
    ]
    return table_data(
        title="Per class, on the feedback rows (balanced accuracy = mean of the averaged recalls)",
        column_names=[
            "Class",
            "Feedback rows",
            "Predicted",
            "Recall",
            "Precision",
            "F1",
            "In balanced accuracy",
        ],
        data=rows,
        size=WidgetSize.FULL,
    )
