"""ctloop.media: the medium is the dataset's; it is recorded, and nothing after the preprocessing
depends on it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from ctloop.audio import AudioSpec, preprocess_audio
from ctloop.dataset import load_folder_dataset, load_samples
from ctloop.embed import load_embedding
from ctloop.media import AUDIO, IMAGE, SUFFIXES, medium_of_file, preprocess_input, spec_from_dict
from ctloop.predict import load_model
from ctloop.preprocess import PreprocessSpec, preprocess
from ctloop.reference import check_reference, embedding_mismatch
from ctloop.registry import ModelRegistry
from ctloop.util import InputError
from harness.data import copy_workspace
from pictures import encode, render_grid

soundfile = pytest.importorskip("soundfile")


def tone(rate: int = 16_000) -> bytes:
    t = np.arange(rate // 2) / rate
    out = io.BytesIO()
    soundfile.write(out, 0.3 * np.sin(2 * np.pi * 440 * t), rate, format="WAV")
    return out.getvalue()


def picture() -> bytes:
    return encode(render_grid(np.eye(8).reshape(-1), 4))


def test_suffixes_tell_the_medium() -> None:
    assert medium_of_file("a/b/c.WAV") == AUDIO
    assert medium_of_file("x.flac") == medium_of_file("x.mp3") == AUDIO
    assert medium_of_file("x.png") == medium_of_file("x.JPeG") == IMAGE
    assert medium_of_file("notes.txt") is None
    assert not set(SUFFIXES[IMAGE]) & set(SUFFIXES[AUDIO])


def test_a_folder_of_sounds_is_a_sound_dataset(tmp_path: Path) -> None:
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        (tmp_path / label / "one.wav").write_bytes(tone())
        (tmp_path / label / "README.txt").write_text("skipped")
    dataset = load_folder_dataset(tmp_path)
    assert dataset.medium == AUDIO
    assert dataset.labels == ["a", "b"]
    assert dataset.filenames == ["one.wav", "one.wav"]


def test_a_folder_mixing_pictures_and_sounds_is_refused(tmp_path: Path) -> None:
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
    (tmp_path / "a" / "one.wav").write_bytes(tone())
    (tmp_path / "b" / "one.png").write_bytes(picture())
    with pytest.raises(ValueError, match=r"mixes media: audio \(a/one.wav\), image \(b/one.png\)"):
        load_folder_dataset(tmp_path)


def test_specs_record_their_medium_and_older_records_are_pictures() -> None:
    audio = AudioSpec(seconds=2.0)
    assert audio.to_dict()["medium"] == AUDIO
    assert spec_from_dict(audio.to_dict()) == audio
    picture_spec = PreprocessSpec(size=16, framing="whole")
    assert picture_spec.to_dict()["medium"] == IMAGE
    assert spec_from_dict(picture_spec.to_dict()) == picture_spec
    assert spec_from_dict({"size": 8}) == PreprocessSpec.from_dict({"size": 8})
    with pytest.raises(ValueError, match="medium 'video'"):
        spec_from_dict({"medium": "video"})


def test_one_preprocessing_call_for_both_media() -> None:
    assert np.array_equal(preprocess_input(picture(), PreprocessSpec()), preprocess(picture()))
    assert np.array_equal(preprocess_input(tone(), AudioSpec()), preprocess_audio(tone()))
    with pytest.raises(InputError) as refused:
        preprocess_input(picture(), AudioSpec())
    assert refused.value.code == "not_audio"
    with pytest.raises(InputError) as refused:
        preprocess_input(tone(), PreprocessSpec())
    assert refused.value.code == "not_an_image"


def test_a_sound_model_records_its_medium_everywhere(built_audio) -> None:
    embedding = load_embedding(built_audio.embedding_dir)
    assert embedding.info["medium"] == AUDIO
    assert spec_from_dict(embedding.info["preprocessing"]) == AudioSpec()
    reference = json.loads(built_audio.reference_info_path.read_text())
    assert reference["medium"] == AUDIO
    registry = ModelRegistry(built_audio.artifacts_dir)
    files = registry.load(registry.current_version())
    assert files.manifest["medium"] == AUDIO
    assert files.manifest["preprocessing"]["medium"] == AUDIO
    assert files.manifest["training"]["augmented_rows"] == 0  # a pen's transformations: pictures
    model = load_model(files)
    assert model.spec == AudioSpec()
    samples = load_samples(built_audio.samples_dir)
    assert samples.medium == AUDIO
    rows = np.stack([preprocess_input(data, model.spec) for data in samples.inputs])
    _, labels, _ = model.predict_pixels(rows)
    assert np.mean(labels == np.array(samples.labels)) >= 0.95


def test_init_leaves_an_up_to_date_sound_reference_alone(built_audio, tmp_path: Path) -> None:
    settings = copy_workspace(built_audio, tmp_path).model_copy(
        update={"dataset": built_audio.dataset}
    )
    assert check_reference(settings).action == "unchanged"
    longer = settings.model_copy(update={"audio_seconds": 1.5})
    check = check_reference(longer)
    assert check.action == "rebuilt"
    assert "preprocessing seconds 1.0 -> 1.5" in check.message


def test_a_picture_model_is_not_fed_rows_of_sounds(built, built_audio) -> None:
    registry = ModelRegistry(built.artifacts_dir)
    manifest = registry.load(registry.current_version()).manifest
    reason = embedding_mismatch(manifest, load_embedding(built_audio.embedding_dir).info)
    assert reason is not None
    assert "preprocessing medium image -> audio" in reason


def test_init_explains_a_sound_dataset_and_refuses_an_image_encoder(built_audio) -> None:
    from ctloop.choose import explain, resolve
    from ctloop.reference import build_reference

    settings = built_audio.model_copy(update={"dataset": built_audio.dataset})
    assert explain(resolve(settings)) == (
        "PCA_COMPONENTS=32: sound: PCA_COMPONENTS=auto takes 32 for a log-mel grid; the "
        "IMAGE_* settings do not apply"
    )
    with pytest.raises(ValueError, match=r"EMBEDDING_MODEL reads pictures; .* holds audio files"):
        build_reference(settings.model_copy(update={"embedding_model": "encoder.onnx"}))
