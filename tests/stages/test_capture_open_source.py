"""open_source(): one entry point from a URL, a path or a *Config to the right source."""
import pytest

from stages.capture import (CaptureError, ImageFolderSource, RtspSource, SyntheticConfig, SyntheticSource,
                            VideoFileSource, open_source)


def test_synthetic_url_with_options_is_typed_and_works():
    src = open_source("synthetic://ir?seed=3&paced=0&max_frames=2&smoke=0.5")
    assert isinstance(src, SyntheticSource)
    assert (src.config.modality, src.config.seed, src.config.paced, src.config.max_frames, src.config.smoke) == \
        ("ir", 3, False, 2, 0.5)
    src.start()
    kinds = [src.read(1.0).kind for _ in range(3)]
    assert kinds == ["frame", "frame", "eos"]


def test_kinds_by_scheme_and_path(tmp_path):
    assert isinstance(open_source("rtsp://u:p@cam/x", modality="vis"), RtspSource)
    assert isinstance(open_source(str(tmp_path), modality="ir"), ImageFolderSource)
    assert isinstance(open_source(str(tmp_path / "*.png"), modality="ir", fps=5), ImageFolderSource)
    assert isinstance(open_source(str(tmp_path / "clip.mkv"), modality="vis", loop=True), VideoFileSource)
    src = open_source(SyntheticConfig(modality="vis"), paced=False)
    assert isinstance(src, SyntheticSource) and src.config.paced is False


def test_errors_name_the_problem_and_mask_passwords():
    # One schema for URL options and config keys (common.schema): the same one-line errors.
    with pytest.raises(CaptureError, match=r"^open_source\.url: synthetic://ir\?sed=3: sed: unknown key \(expected one of: modality, seed"):
        open_source("synthetic://ir?sed=3")
    with pytest.raises(CaptureError, match=r"^open_source\.url: synthetic://vis\?paced=maybe: paced: expected true or false, got 'maybe'"):
        open_source("synthetic://vis?paced=maybe")
    with pytest.raises(CaptureError, match=r"rtsp://u:\*\*\*@cam/x.*needs a modality") as e:
        open_source("rtsp://u:secretpw@cam/x")
    assert "secretpw" not in str(e.value)
