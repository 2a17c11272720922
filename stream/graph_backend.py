"""What the backends that run an export directory's step graphs share (ONNX Runtime, TensorRT).

States come from the graphs' metadata (``GraphInfo``), inputs are checked once here, and
a subclass only implements ``_run(graph, feeds, batch) -> outputs`` in the graph's output
order. Torch- and onnxruntime-free.
"""
from __future__ import annotations

import numpy as np

from llmcodec.export.metadata import GraphInfo

from .backend import ModelFacts, State, check_codes, check_pcm, check_state


class GraphStepBackend:
    """The ``Backend`` steps over ``self.info`` (``{"encoder": GraphInfo, "decoder": GraphInfo}``)."""

    facts: ModelFacts
    info: dict[str, GraphInfo]

    def init_encoder_state(self, batch: int) -> State:
        return self.info["encoder"].zero_state(batch)

    def init_decoder_state(self, batch: int) -> State:
        return self.info["decoder"].zero_state(batch)

    def state_shapes(self, part: str) -> dict[str, tuple[int, ...]]:
        return dict(self.info[part].state_shapes)

    def encode_step(self, pcm: np.ndarray, state: State) -> tuple[list[np.ndarray], State]:
        """pcm float32 [B, block_size] -> codes int64 [B, n_l] per level, new state."""
        pcm = check_pcm(self.facts, pcm)
        outs = self._step("encoder", {"pcm": pcm}, state, pcm.shape[0])
        n = len(self.facts.tokens_per_block)
        return [np.asarray(o).astype(np.int64, copy=False) for o in outs[:n]], \
            dict(zip(self.info["encoder"].state_names, outs[n:]))

    def decode_step(self, codes: list[np.ndarray], state: State) -> tuple[np.ndarray, State]:
        """codes int64 [B, n_l] per level -> pcm float32 [B, block_size], new state."""
        check_codes(self.facts, codes, blocks=1)
        feeds = {f"codes{i}": np.ascontiguousarray(c, dtype=np.int64) for i, c in enumerate(codes)}
        outs = self._step("decoder", feeds, state, int(np.asarray(codes[0]).shape[0]))
        return outs[0], dict(zip(self.info["decoder"].state_names, outs[1:]))

    def _step(self, graph: str, feeds: dict[str, np.ndarray], state: State, batch: int) -> list[np.ndarray]:
        feeds.update(check_state(graph, self.info[graph].state_shapes, state, batch))
        return self._run(graph, feeds, batch)

    def _run(self, graph: str, feeds: dict[str, np.ndarray], batch: int) -> list[np.ndarray]:
        """The runtime's call: every input of ``graph`` in ``feeds`` -> its outputs, in order."""
        raise NotImplementedError
