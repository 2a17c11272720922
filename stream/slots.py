"""Persistent per-slot state rows: one ``[capacity, ...]`` array per state tensor.

The batcher keeps every stream's encoder (or decoder) state as one row of a
``StatePool``. A step gathers the rows of its batch into contiguous arrays
(``gather``), runs, and writes the new rows back (``scatter``): one copy per
state tensor per step, instead of stacking and splitting one small array per
stream per tensor. Capacity doubles when every slot is taken.

A slot belongs to at most one step at a time (the batcher's rule), so two step
workers touch disjoint rows.
"""
from __future__ import annotations

import threading

import numpy as np

from .backend import State


class StatePool:
    """Rows of one part's state (encoder or decoder), each starting as ``initial`` (batch 1)."""

    def __init__(self, initial: State, capacity: int = 8):
        if not initial:
            raise ValueError("a state pool needs at least one state tensor")
        self._initial = {k: np.ascontiguousarray(v[0], dtype=np.float32) for k, v in initial.items()}
        self._rows = {k: np.empty((capacity, *v.shape), np.float32) for k, v in self._initial.items()}
        self._free = list(range(capacity - 1, -1, -1))
        self._lock = threading.Lock()  # resizing swaps the arrays under a step's feet otherwise

    @property
    def capacity(self) -> int:
        return next(iter(self._rows.values())).shape[0]

    @property
    def in_use(self) -> int:
        return self.capacity - len(self._free)

    def acquire(self) -> int:
        """A free slot, holding the initial state."""
        with self._lock:
            if not self._free:
                old = self.capacity
                self._rows = {k: np.concatenate([v, np.empty_like(v)]) for k, v in self._rows.items()}
                self._free = list(range(2 * old - 1, old - 1, -1))
            slot = self._free.pop()
            for k, v in self._rows.items():
                v[slot] = self._initial[k]
        return slot

    def release(self, slot: int) -> None:
        with self._lock:
            if slot in self._free or not 0 <= slot < self.capacity:
                raise ValueError(f"slot {slot} is not in use")
            self._free.append(slot)

    def gather(self, slots: list[int]) -> State:
        """The rows ``slots`` as contiguous ``[len(slots), ...]`` arrays (copies)."""
        idx = np.asarray(slots, dtype=np.intp)
        with self._lock:
            return {k: v[idx] for k, v in self._rows.items()}

    def scatter(self, slots: list[int], state: State) -> None:
        """Write a step's new state ``[len(slots), ...]`` back into the rows ``slots``."""
        idx = np.asarray(slots, dtype=np.intp)
        with self._lock:
            for k, v in self._rows.items():
                v[idx] = state[k]
