"""The PyTorch backend: the reference runtime, eager on CPU or CUDA."""
from __future__ import annotations

import numpy as np
import torch

from llmcodec.checkpoint import LoadedCodec, load_model
from llmcodec.state import StreamState

from .backend import ModelFacts, State, check_codes


def facts_of(loaded: LoadedCodec) -> ModelFacts:
    cfg = loaded.model.cfg
    return ModelFacts(cfg.name, cfg.sample_rate, cfg.block_size, cfg.hop, cfg.vq_strides,
                      cfg.tokens_per_block, cfg.level_sizes, cfg.llm_name)


class TorchBackend:
    name = "torch"

    def __init__(self, loaded: LoadedCodec | None = None, device: str = "cpu", threads: int | None = None):
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be >= 1, got {threads}")
            torch.set_num_threads(threads)  # process-wide: torch has one intra-op pool
        self.loaded = loaded or load_model(device=device)
        self.model = self.loaded.model
        self.device = torch.device(device)
        self.facts = facts_of(self.loaded)
        self.vocab = self.loaded.vocab  # llmcodec.vocab.Vocabulary, or None
        if not self.model.cfg.causal:
            raise ValueError(f"model {self.model.cfg.name!r} is not causal and cannot stream")

    def _to_torch(self, state: State) -> StreamState:
        return StreamState({k: torch.from_numpy(np.ascontiguousarray(v)).to(self.device)
                            for k, v in state.items()})

    @staticmethod
    def _to_numpy(state: StreamState) -> State:
        return {k: v.detach().cpu().numpy() for k, v in state.tensors.items()}

    def init_encoder_state(self, batch: int) -> State:
        return self._to_numpy(self.model.init_encoder_state(batch, self.device))

    def state_shapes(self, part: str) -> dict[str, tuple[int, ...]]:
        layer = {"encoder": self.model.encoder, "decoder": self.model.decoder}[part]
        return {k: tuple(v) for k, v in layer.state_shapes().items()}

    def init_decoder_state(self, batch: int) -> State:
        return self._to_numpy(self.model.init_decoder_state(batch, self.device))

    @torch.inference_mode()
    def encode_step(self, pcm: np.ndarray, state: State) -> tuple[list[np.ndarray], State]:
        x = torch.from_numpy(np.ascontiguousarray(pcm, dtype=np.float32)).to(self.device)
        codes, new = self.model.encode_step(x, self._to_torch(state))
        return [c.cpu().numpy() for c in codes], self._to_numpy(new)

    @torch.inference_mode()
    def decode_step(self, codes: list[np.ndarray], state: State) -> tuple[np.ndarray, State]:
        check_codes(self.facts, codes, blocks=1)
        tc = [torch.from_numpy(np.asarray(c, dtype=np.int64)).to(self.device) for c in codes]
        y, new = self.model.decode_step(tc, self._to_torch(state))
        return y.cpu().numpy(), self._to_numpy(new)
