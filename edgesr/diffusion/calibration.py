"""A diffusion calibration set: the inputs each graph of a sampler sees while it samples.

A UNet is never run on images: it sees noisy latents at every timestep, with the conditioning.
So ``record_trajectories`` samples a few calibration images with the FP32 sampler and records
every feed of every graph it opens (``RecordingSession``): for SD x4, the UNet's ``sample``,
``timestep``, ``encoder_hidden_states`` and ``class_labels`` at each step, and the VAE's
``latent_sample``; for SR3, the denoiser's ``x`` and ``noise_level``. ``FeedSet`` hands one
graph's feeds to the FP16 overflow guard (``batches``).
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from edgesr.diffusion.sessions import Session, SessionFactory


class RecordingSession:
    """A Session that keeps a copy of each feed it runs in ``feeds``."""

    def __init__(self, inner: Session, feeds: list[dict[str, np.ndarray]]) -> None:
        self.inner, self.feeds = inner, feeds
        self.precision = inner.precision

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.feeds.append({k: np.array(v) for k, v in inputs.items()})
        return self.inner.run(inputs)

    def metadata(self) -> dict[str, str]:
        return self.inner.metadata()


@dataclass(frozen=True)
class FeedSet:
    """Recorded feeds of one graph (named inputs -> arrays), as a calibration set."""

    feeds: list[dict[str, np.ndarray]]

    def __len__(self) -> int:
        return len(self.feeds)

    def batches(self, batch_size: int = 1) -> Iterator[dict[str, np.ndarray]]:
        """The feeds as they were run (``batch_size`` is the sampler's, not chosen here)."""
        return iter(self.feeds)


def record_trajectories(open_sampler, sessions: SessionFactory, images: Iterable[np.ndarray],
                        *, limit: int = 64) -> dict[str, FeedSet]:
    """Sample each [1, C, H, W] image with ``open_sampler(factory)`` (a sampler whose graphs
    are opened by ``sessions``, recorded) and return each graph's feeds by file name: at most
    ``limit``, evenly spaced over all images and timesteps."""
    recorded: dict[str, list[dict[str, np.ndarray]]] = {}
    sampler = open_sampler(
        lambda path: RecordingSession(sessions(path), recorded.setdefault(path.name, [])))
    for image in images:
        sampler.sample(image[0])
    picked = {}
    for name, feeds in recorded.items():
        keep = np.unique(np.linspace(0, len(feeds) - 1, min(limit, len(feeds))).round())
        picked[name] = FeedSet([feeds[int(i)] for i in keep])
    return picked
