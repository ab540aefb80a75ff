"""MLflow beside the stack: `mlflow server` (tracking.server) and the mirror of the stack's
registry (tracking.mirror): every version a run and a registered model version, the pointer's
moves as aliases and tags, and the `champion` alias moved by a person taken back as a promotion.

The stack's registry (artifacts/) stays what serving loads; nothing on the request path talks to
MLflow and the trainer never waits on it: the mirror reads artifacts/ and catches up.
"""
