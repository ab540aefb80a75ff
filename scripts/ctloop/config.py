"""Settings of the ML core, read from the environment once (pydantic-settings).

Each setting is declared here once with `stackconf.setting`; docs/configuration.md, .env.example,
docker-compose.yml's environment and Kubernetes' ConfigMap are generated from it (`make config`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import field_validator
from pydantic_settings import NoDecode

from stackconf import DataSettings, MonitoringSettings, Renamed, SecretsSettings, setting

DATA = "Data and embedding"
LIMITS = "Input limits"
RETRAIN = "Retraining"
GATE = "The gate"
TRIGGERS = "Triggers and monitoring"
DELIVERY = "Progressive delivery"
REGISTRY = "Registry"
AUTO = "auto"  # a preprocessing setting `ctloop init` chooses by measurement (ctloop.choose)


class CoreSettings(DataSettings, SecretsSettings, MonitoringSettings):
    """Where the data and models live, how the reference is built, how the loop retrains."""

    artifacts_dir: Path = setting(
        Path("artifacts"),
        "Model registry folder (the images set it)",
        env="ARTIFACTS_DIR",
        section="Folders",
        compose="no",
    )
    dataset: str = setting(
        "digits",
        "'digits' (scikit-learn's bundled set) or a folder of one sub-folder per class",
        env="DATASET",
        section=DATA,
        start=True,
    )
    pca_components: int | Literal["auto"] = setting(
        AUTO,
        "Size of the embedding: 1 or more, or 'auto' (32 or 64, measured by `ctloop init`)",
        env="PCA_COMPONENTS",
        section=DATA,
    )
    image_size: int | Literal["auto"] = setting(
        AUTO,
        "Side of the square pixel grid images are reduced to: 4 to 64, or 'auto' (8, 16 or 28 "
        "up to the images' own side, measured by `ctloop init`)",
        env="IMAGE_SIZE",
        section=DATA,
    )
    image_framing: Literal["auto", "strokes", "whole"] = setting(
        AUTO,
        "How an image becomes the grid: 'strokes' (ink on a plain background: inverted to light "
        "on dark, cropped to the ink, thin pens widened, trained with a pen's variations; digits, "
        "letters, sketches), 'whole' (the whole picture averaged down as it is; photographs, "
        "textures) or 'auto' (measured by `ctloop init`)",
        env="IMAGE_FRAMING",
        section=DATA,
    )
    image_channels: int | Literal["auto"] = setting(
        AUTO,
        "Channels of the grid: 1 (grey), 3 (red, green, blue; with IMAGE_FRAMING=whole), for "
        "classes that colour tells apart, or 'auto' (colour tried when the images hold some)",
        env="IMAGE_CHANNELS",
        section=DATA,
    )
    embedding_model: str = setting(
        "",
        "A pretrained image encoder in ONNX, images (N, 3, H, W) or (N, H, W, 3) in, features "
        "out (pooled if they are maps): its features, reduced by PCA_COMPONENTS (64 with 'auto'), "
        "are the embedding; empty: a PCA of the grid's pixels (docs/own-data.md)",
        env="EMBEDDING_MODEL",
        section=DATA,
    )
    embedding_input_size: int | Literal["auto"] = setting(
        AUTO,
        "Side of the images the encoder takes; 'auto': read from the model's input shape",
        env="EMBEDDING_INPUT_SIZE",
        section=DATA,
    )
    embedding_channel_order: Literal["rgb", "bgr"] = setting(
        "rgb",
        "Channel order the encoder expects (torchvision: rgb; Caffe-era models: bgr)",
        env="EMBEDDING_CHANNEL_ORDER",
        section=DATA,
    )
    embedding_mean: Annotated[list[float], NoDecode] = setting(
        lambda: [0.485, 0.456, 0.406],
        "Comma-separated per-channel means subtracted from pixels in [0, 1] (ImageNet's)",
        env="EMBEDDING_MEAN",
        section=DATA,
    )
    embedding_std: Annotated[list[float], NoDecode] = setting(
        lambda: [0.229, 0.224, 0.225],
        "Comma-separated per-channel standard deviations pixels are divided by (ImageNet's)",
        env="EMBEDDING_STD",
        section=DATA,
    )
    unseen_fraction: float = setting(
        0.2,
        "Share of the dataset kept out of ref_data.csv",
        env="UNSEEN_FRACTION",
        section=DATA,
        gt=0,
        lt=1,
    )
    split_seed: int = setting(
        42, "Seed of every deterministic split", env="SPLIT_SEED", section=DATA
    )
    holdout_fraction: float = setting(
        0.2,
        "Share of reference rows never trained on",
        env="HOLDOUT_FRACTION",
        section=DATA,
        gt=0,
        lt=1,
    )
    augment_embedding_copies: int = setting(
        8,
        "Transformed copies of each reference image the PCA is fitted on",
        env="AUGMENT_EMBEDDING_COPIES",
        section=DATA,
        ge=0,
    )
    max_image_pixels: int = setting(
        16_777_216,
        "Larger images are refused (decompression bombs)",
        env="MAX_IMAGE_PIXELS",
        section=LIMITS,
        ge=64,
    )
    max_image_side: int = setting(
        8192,
        "Images with a longer side are refused, before decoding",
        env="MAX_IMAGE_SIDE",
        section=LIMITS,
        ge=8,
    )
    max_image_aspect: float = setting(
        16.0,
        "Images whose sides differ by more than this factor are refused",
        env="MAX_IMAGE_ASPECT",
        section=LIMITS,
        ge=1,
    )
    max_audio_seconds: float = setting(
        30.0,
        "Longer sounds are refused, on their header, before decoding",
        env="MAX_AUDIO_SECONDS",
        section=LIMITS,
        gt=0,
        le=600,
    )
    audio_seconds: float = setting(
        1.0,
        "Audio datasets: each sound, its silence trimmed, is centred in this many seconds "
        "(padded or cut) before its spectrogram",
        env="AUDIO_SECONDS",
        section=DATA,
        gt=0,
        le=30,
    )
    retrain_every: int = setting(
        20,
        "k: a retrain each time prod_data.csv reaches a multiple of k rows",
        env="RETRAIN_EVERY",
        section=RETRAIN,
        start=True,
        ge=1,
    )
    retrain_mode: Literal["finetune", "scratch"] = setting(
        "finetune",
        "'finetune': a retrain continues the served version's head on the rows since it plus a "
        "replay sample; 'scratch': a new head on the reference and the rows read",
        env="RETRAIN_MODE",
        section=RETRAIN,
    )
    head_model: Literal["mlp", "svc"] = setting(
        "mlp",
        "Classifier head: 'mlp' (fine-tunes) or 'svc' (the first head; scratch only)",
        env="HEAD_MODEL",
        section=RETRAIN,
    )
    head_members: int = setting(
        5,
        "Networks averaged in the MLP head (one network of this many times 128 hidden units)",
        env="HEAD_MEMBERS",
        section=RETRAIN,
        ge=1,
        le=32,
    )
    head_epochs: int = setting(
        60,
        "Most epochs of a head trained from scratch (it stops earlier once the loss stops falling)",
        env="HEAD_EPOCHS",
        section=RETRAIN,
        ge=1,
    )
    finetune_epochs: int = setting(
        10,
        "Epochs of a fine-tune over its window and replay rows",
        env="FINETUNE_EPOCHS",
        section=RETRAIN,
        ge=0,
    )
    finetune_interpolation: float = setting(
        0.3,
        "Share of a fine-tune's step kept: the weights end at base + this * (fine-tuned - base); "
        "1 keeps the fine-tuned weights",
        env="FINETUNE_INTERPOLATION",
        section=RETRAIN,
        gt=0,
        le=1,
    )
    scratch_every: int = setting(
        10,
        "In finetune mode, a full rebuild (scratch) after this many fine-tunes (0: never); it "
        "competes through the same gate",
        env="SCRATCH_EVERY",
        section=RETRAIN,
        ge=0,
    )
    retrain_read_rows: int = setting(
        2000,
        "A retrain reads only the newest this many production rows (its window, replay pool and "
        "held-out rows), so its cost does not grow with prod_data.csv",
        env="RETRAIN_READ_ROWS",
        section=RETRAIN,
        ge=1,
    )
    finetune_window_rows: int = setting(
        500,
        "A fine-tune trains on at most this many production rows since the served version "
        "(the newest)",
        env="FINETUNE_WINDOW_ROWS",
        section=RETRAIN,
        ge=1,
    )
    finetune_replay_production: float = setting(
        1.0,
        "Older production rows replayed per window row in a fine-tune",
        env="FINETUNE_REPLAY_PRODUCTION",
        section=RETRAIN,
        ge=0,
    )
    finetune_replay_reference: float = setting(
        10.0,
        "Reference rows replayed per window row in a fine-tune (stratified by class)",
        env="FINETUNE_REPLAY_REFERENCE",
        section=RETRAIN,
        ge=0,
    )
    augment_reference_copies: int = setting(
        8,
        "Transformed copies of each reference row at training time",
        env="AUGMENT_REFERENCE_COPIES",
        section=RETRAIN,
        ge=0,
    )
    augment_feedback_copies: int = setting(
        8,
        "Transformed copies of each production row at training time",
        env="AUGMENT_FEEDBACK_COPIES",
        section=RETRAIN,
        ge=0,
    )
    prod_weight: float = setting(
        1.0,
        "Sample weight of production rows in a retrain",
        env="PROD_WEIGHT",
        section=RETRAIN,
        gt=0,
    )
    retrain_nice: int = setting(
        10,
        "Scheduling niceness of the retrain process",
        env="RETRAIN_NICE",
        section=RETRAIN,
        ge=0,
        le=19,
    )
    promotion_policy: Literal["gate", "always"] = setting(
        "gate",
        "'gate': promote a retrained model only if not worse; 'always': always (the workshop's)",
        env="PROMOTION_POLICY",
        section=GATE,
        start=True,
    )
    gate_tolerance: float = setting(
        0.0,
        "A challenger may score this much below and pass",
        env="GATE_TOLERANCE",
        section=GATE,
        ge=0,
        le=1,
    )
    gate_class_tolerance: float = setting(
        0.1,
        "A challenger is rejected if, on the held-out reference rows, its recall of any class "
        "falls more than this below the champion's (feedback cannot steer those rows)",
        env="GATE_CLASS_TOLERANCE",
        section=GATE,
        ge=0,
        le=1,
    )
    gate_reference_tolerance: float = setting(
        0.01,
        "A challenger is rejected if its accuracy on the held-out reference rows falls more than "
        "this below the champion's or the first model's (the reference floor)",
        env="GATE_REFERENCE_TOLERANCE",
        section=GATE,
        ge=0,
        le=1,
    )
    gate_recent_rows: int = setting(
        200,
        "Newest held-out production rows in the gate set",
        env="GATE_RECENT_ROWS",
        section=GATE,
        ge=1,
    )
    prod_holdout_every: int = setting(
        5,
        "Every n-th production row is held out for the gate",
        env="PROD_HOLDOUT_EVERY",
        section=GATE,
        ge=2,
    )
    trigger_check_rows: int = setting(
        10,
        "Drift and quality are looked at every this many new rows",
        env="TRIGGER_CHECK_ROWS",
        section=TRIGGERS,
        ge=1,
    )
    drift_trigger_share: float = setting(
        0.5,
        "A retrain starts when this share of the embedding columns drifted in the window",
        env="DRIFT_TRIGGER_SHARE",
        section=TRIGGERS,
        gt=0,
        le=1,
    )
    quality_trigger_margin: float = setting(
        0.05,
        "A retrain starts when the served accuracy on the window falls below the served "
        "version's held-out accuracy minus this",
        env="QUALITY_TRIGGER_MARGIN",
        section=TRIGGERS,
        ge=0,
        le=1,
    )
    promotion_strategy: Literal["direct", "shadow", "canary"] = setting(
        "direct",
        "How a challenger that passed the gate reaches clients: 'direct' (at once), 'shadow' "
        "(beside the champion, answers kept out of replies) or 'canary' (a share of the clients)",
        env="PROMOTION_STRATEGY",
        section=DELIVERY,
        start=True,
    )
    shadow_share: float = setting(
        1.0,
        "Share of /predict requests the shadow also answers (0 to 1)",
        env="SHADOW_SHARE",
        section=DELIVERY,
        renamed=(Renamed("SHADOW_PERCENT", "percent"),),
        ge=0,
        le=1,
    )
    shadow_min_rows: int = setting(
        100,
        "Feedback rows during a shadow stage before it is judged",
        env="SHADOW_MIN_ROWS",
        section=DELIVERY,
        ge=1,
    )
    canary_share: float = setting(
        0.05,
        "Share of clients (X-Client-ID, else requests) the canary answers (0 to 1)",
        env="CANARY_SHARE",
        section=DELIVERY,
        renamed=(Renamed("CANARY_PERCENT", "percent"),),
        gt=0,
        le=1,
    )
    canary_min_rows: int = setting(
        50,
        "Feedback rows answered by the canary before it is judged",
        env="CANARY_MIN_ROWS",
        section=DELIVERY,
        ge=1,
    )
    stage_margin: float = setting(
        0.02,
        "A challenger is promoted if its live accuracy is not below the champion's on the same "
        "period by more than this, and rolled back otherwise",
        env="STAGE_MARGIN",
        section=DELIVERY,
        ge=0,
        le=1,
    )
    canary_error_margin: float = setting(
        0.02,
        "A canary whose server-error ratio exceeds the champion's by more than this is rolled "
        "back at once",
        env="CANARY_ERROR_MARGIN",
        section=DELIVERY,
        ge=0,
        le=1,
    )
    canary_latency_factor: float = setting(
        3.0,
        "A canary whose p99 latency exceeds the champion's times this is rolled back at once",
        env="CANARY_LATENCY_FACTOR",
        section=DELIVERY,
        ge=1,
    )
    canary_min_requests: int = setting(
        200,
        "Requests the canary must answer before its health is judged",
        env="CANARY_MIN_REQUESTS",
        section=DELIVERY,
        ge=1,
    )
    registry_keep_ancestors: int = setting(
        10,
        "Pruning keeps the served version and this many generations of its parents",
        env="REGISTRY_KEEP_ANCESTORS",
        section=REGISTRY,
        ge=1,
    )
    registry_keep_others: int = setting(
        5,
        "Pruning also keeps this many of the newest other versions",
        env="REGISTRY_KEEP_OTHERS",
        section=REGISTRY,
        ge=0,
    )

    @field_validator("image_channels")
    @classmethod
    def _grey_or_colour(cls, value: int | str) -> int | str:
        if value not in (1, 3, AUTO):
            raise ValueError("1 (grey), 3 (red, green, blue) or 'auto'")
        return value

    @field_validator("embedding_mean", "embedding_std", mode="before")
    @classmethod
    def _three_numbers(cls, value: object) -> object:
        if isinstance(value, str):
            return [float(part) for part in value.split(",") if part.strip()]
        return value

    @field_validator("embedding_mean", "embedding_std")
    @classmethod
    def _per_channel(cls, value: list[float]) -> list[float]:
        if len(value) != 3:
            raise ValueError("three numbers: red, green, blue")
        return value

    @field_validator("embedding_std")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        if min(value) <= 0:
            raise ValueError("standard deviations must be positive")
        return value

    @field_validator("embedding_input_size")
    @classmethod
    def _encoder_side(cls, value: int | str) -> int | str:
        if value != AUTO and int(value) < 1:
            raise ValueError("a side in pixels, or 'auto'")
        return value

    @field_validator("image_size")
    @classmethod
    def _grid_side(cls, value: int | str) -> int | str:
        if value != AUTO and not 4 <= int(value) <= 64:
            raise ValueError("4 to 64, or 'auto'")
        return value

    @field_validator("pca_components")
    @classmethod
    def _embedding_size(cls, value: int | str) -> int | str:
        if value != AUTO and int(value) < 1:
            raise ValueError("1 or more, or 'auto'")
        return value

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
