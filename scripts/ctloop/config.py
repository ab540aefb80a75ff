"""Settings of the ML core, read from the environment once (pydantic-settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CoreSettings(BaseSettings):
    """Where the data and models live and how the reference data is built."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    data_dir: Path = Field(
        Path("data"), description="Folder of ref_data.csv, prod_data.csv, samples/"
    )
    artifacts_dir: Path = Field(Path("artifacts"), description="Model registry folder")
    secrets_dir: Path = Field(
        Path("secrets"),
        description="Folder of the secrets generated at first start when none is set "
        "(api_token, evidently_secret, grafana_admin_password); ignored by git",
    )
    dataset: str = Field(
        "digits",
        description="'digits' (scikit-learn's bundled set) or a folder of one sub-folder per class",
    )
    pca_components: int = Field(32, ge=1, description="Size of the embedding")
    image_size: int = Field(
        8, ge=4, le=64, description="Side of the square pixel grid images are reduced to"
    )
    unseen_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share of the dataset kept out of ref_data.csv"
    )
    split_seed: int = Field(42, description="Seed of every deterministic split")
    holdout_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share of reference rows never trained on"
    )
    prod_holdout_every: int = Field(
        5, ge=2, description="Every n-th production row is held out for the gate"
    )
    prod_weight: float = Field(
        1.0, gt=0, description="Sample weight of production rows in a retrain"
    )
    max_image_pixels: int = Field(
        16_777_216, ge=64, description="Larger images are refused (decompression bombs)"
    )
    max_image_side: int = Field(
        8192, ge=8, description="Images with a longer side are refused, before decoding"
    )
    max_image_aspect: float = Field(
        16.0, ge=1, description="Images whose sides differ by more than this factor are refused"
    )
    retrain_every: int = Field(
        20, ge=1, description="Retrain each time prod_data.csv reaches a multiple of k rows"
    )
    promotion_policy: Literal["gate", "always"] = Field(
        "gate",
        description="'gate': promote a retrained model only if not worse; 'always': always",
    )
    gate_tolerance: float = Field(
        0.0, ge=0, le=1, description="A challenger may score this much below and pass"
    )
    gate_class_tolerance: float = Field(
        0.1,
        ge=0,
        le=1,
        description="A challenger is rejected if, on the held-out reference rows, its recall of "
        "any class falls more than this below the champion's (feedback cannot steer those rows)",
    )
    gate_reference_tolerance: float = Field(
        0.01,
        ge=0,
        le=1,
        description="A challenger is rejected if its accuracy on the held-out reference rows "
        "falls more than this below the champion's or the first model's (the reference floor)",
    )
    gate_recent_rows: int = Field(
        200, ge=1, description="Newest held-out production rows in the gate set"
    )
    trigger_window_rows: int = Field(
        100,
        ge=2,
        description="W: the drift and quality triggers look at the latest W production rows",
    )
    trigger_check_rows: int = Field(
        10, ge=1, description="Drift and quality are looked at every this many new rows"
    )
    trigger_min_rows: int = Field(
        30, ge=2, description="Rows needed in the window before drift and quality are judged"
    )
    drift_threshold: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="A column drifted when its KS p-value is at most this (the dashboard's test)",
    )
    drift_trigger_share: float = Field(
        0.5, gt=0, le=1, description="A retrain starts when this share of columns drifted"
    )
    quality_trigger_margin: float = Field(
        0.05,
        ge=0,
        le=1,
        description="A retrain starts when the served accuracy on the window falls below the "
        "served version's held-out accuracy minus this",
    )
    registry_keep_ancestors: int = Field(
        10,
        ge=1,
        description="Pruning keeps the served version and this many generations of its parents",
    )
    registry_keep_others: int = Field(
        5, ge=0, description="Pruning also keeps this many of the newest other versions"
    )
    head_model: Literal["mlp", "svc"] = Field(
        "mlp",
        description="Classifier head: 'mlp' (fine-tunes) or 'svc' (the first head; scratch only)",
    )
    finetune_epochs: int = Field(
        10, ge=0, description="Epochs of a fine-tune over its window and replay rows"
    )
    finetune_interpolation: float = Field(
        0.3,
        gt=0,
        le=1,
        description="Share of a fine-tune's step kept: the weights end at base + this * "
        "(fine-tuned - base); 1 keeps the fine-tuned weights",
    )
    retrain_mode: Literal["finetune", "scratch"] = Field(
        "finetune",
        description="'finetune': a retrain continues the served version's head on the rows since "
        "it plus a replay sample; 'scratch': a new head on the reference and the rows read",
    )
    scratch_every: int = Field(
        10,
        ge=0,
        description="In finetune mode, a full rebuild (scratch) after this many fine-tunes "
        "(0: never); it competes through the same gate",
    )
    retrain_read_rows: int = Field(
        2000,
        ge=1,
        description="A retrain reads only the newest this many production rows (its window, "
        "replay pool and held-out rows), so its cost does not grow with prod_data.csv",
    )
    finetune_window_rows: int = Field(
        500,
        ge=1,
        description="A fine-tune trains on at most this many production rows since the served "
        "version (the newest)",
    )
    finetune_replay_production: float = Field(
        1.0, ge=0, description="Older production rows replayed per window row in a fine-tune"
    )
    finetune_replay_reference: float = Field(
        10.0,
        ge=0,
        description="Reference rows replayed per window row in a fine-tune (stratified by class)",
    )
    augment_reference_copies: int = Field(
        8, ge=0, description="Transformed copies of each reference row at training time"
    )
    augment_feedback_copies: int = Field(
        8, ge=0, description="Transformed copies of each production row at training time"
    )
    augment_embedding_copies: int = Field(
        8, ge=0, description="Transformed copies of each reference image the PCA is fitted on"
    )
    retrain_nice: int = Field(
        10, ge=0, le=19, description="Scheduling niceness of the retrain process"
    )

    # -- progressive delivery (ctloop.delivery, ctloop.stage; issue 17) --------------------------
    promotion_strategy: Literal["direct", "shadow", "canary"] = Field(
        "direct",
        description="How a challenger that passed the gate reaches clients: 'direct' (at once), "
        "'shadow' (beside the champion, answers kept out of replies) or 'canary' (a share of "
        "the clients)",
    )
    shadow_percent: float = Field(
        100.0, ge=0, le=100, description="Share of /predict requests the shadow also answers"
    )
    shadow_min_rows: int = Field(
        100, ge=1, description="Feedback rows during a shadow stage before it is judged"
    )
    canary_percent: float = Field(
        5.0,
        gt=0,
        le=100,
        description="Share of clients (X-Client-ID, else requests) the canary answers",
    )
    canary_min_rows: int = Field(
        50, ge=1, description="Feedback rows answered by the canary before it is judged"
    )
    stage_margin: float = Field(
        0.02,
        ge=0,
        le=1,
        description="A challenger is promoted if its live accuracy is not below the champion's "
        "on the same period by more than this, and rolled back otherwise",
    )
    canary_error_margin: float = Field(
        0.02,
        ge=0,
        le=1,
        description="A canary whose server-error ratio exceeds the champion's by more than this "
        "is rolled back at once",
    )
    canary_latency_factor: float = Field(
        3.0,
        ge=1,
        description="A canary whose p99 latency exceeds the champion's times this is "
        "rolled back at once",
    )
    canary_min_requests: int = Field(
        200, ge=1, description="Requests the canary must answer before its health is judged"
    )

    @property
    def ref_data_path(self) -> Path:
        return self.data_dir / "ref_data.csv"

    @property
    def prod_data_path(self) -> Path:
        return self.data_dir / "prod_data.csv"

    @property
    def samples_dir(self) -> Path:
        return self.data_dir / "samples"

    @property
    def reference_info_path(self) -> Path:
        return self.data_dir / "reference.json"

    @property
    def embedding_dir(self) -> Path:
        return self.artifacts_dir / "embedding"

    @property
    def retrain_log_path(self) -> Path:
        return self.artifacts_dir / "retrains.jsonl"
