"""TensorBoard beyond scalars: confusion matrix and prediction grid at each validation,
the model graph once, read back from the event file with TensorBoard's own reader."""
from __future__ import annotations


import pytest
import torch

from conftest import FAST, train

from expkit.callbacks.tensorboard_images import confusion_image, confusion_markdown, predictions_grid


def _png_size(encoded: bytes) -> tuple[int, int]:
    """Width and height from a PNG header (no image library needed)."""
    assert encoded[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(encoded[16:20], "big"), int.from_bytes(encoded[20:24], "big")


@pytest.mark.slow
def test_images_and_graph_are_in_the_event_file(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(*FAST, "trainer.max_epochs=2", "callbacks.tensorboard_images.max_predictions=16", f"hydra.run.dir={tmp_path}")
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    assert {"val/confusion_matrix", "val/predictions"} <= set(tags["images"])
    matrices = events.Images("val/confusion_matrix")
    # At most one per validation (as the picture budget allows), and always the last validation's.
    final_step = events.Scalars("val/acc")[-1].step if "val/acc" in tags["scalars"] else None
    steps = [image.step for image in matrices]
    assert 1 <= len(steps) <= 2 and steps == sorted(set(steps)) and steps[-1] == final_step
    width, height = _png_size(matrices[-1].encoded_image_string)
    assert (width, height) == (matrices[-1].width, matrices[-1].height) and width <= 600  # fits its card
    grids = events.Images("val/predictions")
    assert [g.step for g in grids] == steps
    width, height = _png_size(grids[-1].encoded_image_string)
    assert (width, height) == (grids[-1].width, grids[-1].height) and width > height  # 16 images: 2 rows of 8
    assert tags["graph"]  # the model graph, traced once
    assert "val/confusion_matrix_counts/text_summary" in tags["tensors"]


def test_confusion_image_shades_rows_by_share():
    matrix = torch.tensor([[8, 2], [0, 5]])
    image = confusion_image(matrix)
    assert image.shape == (3, 32, 32) and 0 <= image.min() and image.max() <= 1
    cell = lambda i, j: image[:, i * 16 + 8, j * 16 + 8]  # noqa: E731 - the centre of a cell
    assert torch.allclose(cell(1, 1), torch.tensor([0.03, 0.19, 0.42]))  # 100% of the row: dark blue
    assert torch.allclose(cell(1, 0), torch.ones(3))  # 0%: white
    assert cell(0, 0).sum() < cell(0, 1).sum()  # 80% darker than 20%
    assert "| **0** | 8 | 2 |" in confusion_markdown(matrix)
    # Many classes: smaller cells, so the picture stays at most 400 pixels a side.
    assert confusion_image(torch.eye(100, dtype=torch.long)).shape == (3, 400, 400)
    assert confusion_image(torch.eye(1000, dtype=torch.long)).shape == (3, 1000, 1000)


def test_predictions_grid_frames_right_green_and_wrong_red():
    inputs = torch.randn(4, 1, 8, 8)
    grid = predictions_grid(inputs, labels=torch.tensor([1, 2, 3, 4]), preds=torch.tensor([1, 0, 3, 0]))
    assert grid.shape[0] == 3
    # first image (right): its top-left border pixel (after make_grid's 2 px padding) is green
    assert grid[1, 2, 2] > 0.7 and grid[0, 2, 2] < 0.2
    second = 2 + (32 + 2 * 2) + 2  # padding + first framed image + padding
    assert grid[0, 2, second] > 0.8 and grid[1, 2, second] < 0.2  # wrong: red
    assert predictions_grid(torch.randn(4, 5, 8, 8), torch.zeros(4), torch.zeros(4)) is None  # not an image


@pytest.mark.parametrize("channels", [1, 3])
def test_logged_image_decodes_to_the_same_pixels(tmp_path, channels):
    # The logger encodes PNGs itself (faster than add_image): TensorBoard's reader must get
    # back exactly the pixels, and floats in [0, 1] map to 0..255.
    import io

    import numpy as np
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from expkit.loggers import TensorBoardLogger

    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (channels, 7, 11), dtype=torch.uint8, generator=generator)
    logger = TensorBoardLogger(save_dir=str(tmp_path))
    logger.log_image("exact", pixels, step=3)
    logger.log_image("floats", pixels.float() / 255, step=4)
    logger.finalize()
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    for tag, step in (("exact", 3), ("floats", 4)):
        (event,) = events.Images(tag)
        assert (event.step, event.width, event.height) == (step, 11, 7)
        decoded = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)))
        expected = pixels.permute(1, 2, 0).numpy()
        assert np.array_equal(decoded, expected[:, :, 0] if channels == 1 else expected)


def test_fast_event_checksums_equal_tensorboards_own_and_files_still_verify(tmp_path):
    import os

    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as pure_python
    from tensorboard.summary.writer import record_writer

    from expkit.loggers import TensorBoardLogger
    from expkit.loggers.tensorboard import use_fast_event_checksums

    assert use_fast_event_checksums()  # google-crc32c's C extension is a dependency
    assert record_writer.masked_crc32c is not pure_python
    for data in (b"", b"a", os.urandom(3), os.urandom(8193), bytes(1000)):
        assert record_writer.masked_crc32c(data) == pure_python(data)
    # TensorBoard's reader recomputes every record's checksum and refuses a mismatch.
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    logger = TensorBoardLogger(save_dir=str(tmp_path))
    logger.log_metrics({"val/acc": 0.5}, step=1)
    logger.log_image("picture", torch.rand(3, 20, 30), step=1)
    logger.finalize()
    (event_file,) = tmp_path.glob("events.out.tfevents.*")
    read = list(EventFileLoader(str(event_file)).Load())
    assert any(v.tag == "picture" for event in read for v in event.summary.value)


def test_the_picture_worker_writes_labelled_pictures_into_the_run(tmp_path):
    import numpy as np
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from expkit.loggers.plots import PictureWorker

    worker = PictureWorker(str(tmp_path), after_existing=False)
    worker.submit("confusion", "cm", 3, [[9, 1], [0, 10]], ["cat", "dog"])
    worker.submit("predictions", "grid", 3, np.random.rand(4, 8, 8), [0, 1, 0, 1], [0, 1, 1, 1], ["0", "1"])
    worker.submit("confusion", "cm", 5, [[10, 0], [0, 10]], ["cat", "dog"])
    worker.close()
    worker.finish()
    assert worker.idle and not worker.errors and worker.busy_seconds > 0
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    assert [i.step for i in events.Images("cm")] == [3, 5] and [i.step for i in events.Images("grid")] == [3]
    for image in events.Images("cm") + events.Images("grid"):
        assert _png_size(image.encoded_image_string) == (image.width, image.height) and image.width <= 600


def test_the_confusion_matrix_tints_a_single_error_and_writes_the_counts():
    """Reads matplotlib's own figure: each non-zero cell has its count, a single error is
    clearly coloured, zeros are white, both axes are labelled with the class names."""
    from expkit.loggers.plots import confusion_figure, confusion_png

    fig = confusion_figure([[30, 1], [0, 29]], ["cat", "dog"])
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["1", "29", "30"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted class", "true class")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog"]
    image = ax.images[0]
    one_error = image.cmap(image.norm(1))
    assert sum(one_error[:3]) < 2.45  # a clear blue, not near-white (white is 3.0)
    assert tuple(image.cmap.get_bad()[:3]) == (1.0, 1.0, 1.0)  # zeros are white
    png, width, height = confusion_png([[30, 1], [0, 29]], ["cat", "dog"])
    assert png[:4] == b"\x89PNG" and width <= 600


def test_the_graph_traced_without_the_check_is_the_one_add_graph_writes(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard._pytorch_graph import graph

    from expkit.loggers import TensorBoardLogger
    from expkit.models import CNN

    torch.manual_seed(0)
    model, example = CNN((1, 8, 8), 10).eval(), torch.randn(2, 1, 8, 8)
    logger = TensorBoardLogger(save_dir=str(tmp_path))
    logger.log_model_graph(model, example)
    logger.finalize()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    written, expected = events.Graph(), graph(model, example)[0]  # what SummaryWriter.add_graph(model) writes
    assert [(n.name, n.op, list(n.input)) for n in written.node] == [(n.name, n.op, list(n.input)) for n in expected.node]
    assert len(written.node) > 10 and model.training is False
