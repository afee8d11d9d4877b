"""What `c2f predict` (and `Predictor.predict`) gives for one video, typed: the label, every class's
probability, where the expensive network ran (decisions with timestamps), GFLOPs executed, seconds."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..evaluate import decision_rows


@dataclass
class Prediction:
    video_id: str
    path: str
    label: str                      # the class with the highest probability
    probabilities: np.ndarray       # [C] softmax, in the order of `classes`
    classes: list[str]
    fine_reads: int                 # frames (AdaFocus: patches) the expensive network ran on
    gflops: float                   # executed: every frame and patch computed, plus the head's own steps
    seconds: float                  # its decoding plus its share of its batch's compute
    decisions: pd.DataFrame         # one row per sampled frame: t, timestamp (s), fine (0/1), patch (-1: none),
    #                                 and fine_set (the set read, -1 none) where the run reads several (AR-Net)
    frames_decoded: int = -1        # sampled frames decoded (fewer than `frames` where the video stopped early)

    @property
    def frames(self) -> int:
        return len(self.decisions)

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        """The k most probable classes with their probabilities."""
        order = np.argsort(-self.probabilities)[:k]
        return [(self.classes[i], float(self.probabilities[i])) for i in order]

    def row(self) -> dict:
        """predictions.csv's row (probabilities rounded to 4 places for people)."""
        top = self.top(5)
        return {"video_id": self.video_id, "path": self.path, "pred": self.label, "prob": f"{top[0][1]:.4f}",
                "top5": "|".join(f"{name}:{p:.4f}" for name, p in top), "fine_count": self.fine_reads,
                "gflops": f"{self.gflops:.4f}", "seconds": f"{self.seconds:.4f}", "frames": self.frames,
                "frames_decoded": self.frames_decoded}


PREDICTION_COLUMNS = ["video_id", "path", "pred", "prob", "top5", "fine_count", "gflops", "seconds", "frames",
                      "frames_decoded"]


def predictions_of(batch, classes: list[str]) -> list[Prediction]:
    """The typed predictions of a predicted batch (c2f.predict.engine.BatchResult)."""
    result = batch.result
    fine = result.fine_count()
    rows = list(decision_rows(result))
    made = []
    for i, video in enumerate(batch.videos):
        own = [r for r in rows if r[0] == video.video_id]
        decisions = pd.DataFrame({"t": [r[1] for r in own], "timestamp": video.timestamps,
                                  "fine": [r[2] for r in own],
                                  "patch": [r[3] for r in own] if result.patches is not None else -1})
        if result.fine_set() is not None:
            decisions["fine_set"] = [r[-1] for r in own]
        made.append(Prediction(video.video_id, video.path, classes[int(result.scores[i].argmax())],
                               result.scores[i].copy(), classes, int(fine[i]), float(batch.executed_gflops[i]),
                               float(batch.seconds[i]), decisions,
                               len(decisions) if video.frames_decoded is None else video.frames_decoded))
    return made
