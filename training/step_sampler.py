"""Which samples each process sees at each step: a pure function of (seed, micro-step, rank).

A resumed run therefore reads exactly the batches the uninterrupted run would have read
(no dataloader state to save), every rank reads a different shard, and each item gets
its own seed for random patch positions. Epochs are consecutive permutations of the
dataset seeded by ``seed + epoch``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

from petct_pipeline.errors import InputError

__all__ = ["StepBatchSampler", "item_seed"]


def item_seed(seed: int, micro_step: int, rank: int, slot: int) -> int:
    digest = hashlib.blake2b(f"{seed}:{micro_step}:{rank}:{slot}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields, for micro-steps ``start .. stop - 1``, lists of (dataset index, item seed) of length ``batch_size``."""

    def __init__(
        self, num_samples: int, batch_size: int, world_size: int, rank: int, seed: int, start: int, stop: int
    ) -> None:
        if num_samples < 1:
            raise InputError("the dataset is empty: no usable study to train on")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self.start = start
        self.stop = stop
        self._epoch = -1
        self._permutation = np.arange(num_samples)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def epoch_of(self, micro_step: int) -> int:
        return (micro_step * self.world_size * self.batch_size) // self.num_samples

    def _index(self, position: int) -> int:
        epoch, offset = divmod(position, self.num_samples)
        if epoch != self._epoch:
            self._permutation = np.random.default_rng(self.seed + epoch).permutation(self.num_samples)
            self._epoch = epoch
        return int(self._permutation[offset])

    def batch(self, micro_step: int) -> list[tuple[int, int]]:
        first = (micro_step * self.world_size + self.rank) * self.batch_size
        return [
            (self._index(first + slot), item_seed(self.seed, micro_step, self.rank, slot))
            for slot in range(self.batch_size)
        ]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for micro_step in range(self.start, self.stop):
            yield self.batch(micro_step)
