"""The PyTorch backend: the reference runtime, eager on CPU or CUDA.

On the CPU, PyTorch's convolutions pick other kernels for other batch sizes, and the
codec amplifies their last-bit differences into a different token now and then. So on
the CPU each row of a batch runs as its own batch-1 step (``exact=True``, the default):
the tokens of a stream never depend on which other streams share its batch. On CUDA the
batch runs whole (``exact=False``); ``bench/gpu_check.sh`` measures what that gives.
"""
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

    def __init__(self, loaded: LoadedCodec | None = None, device: str = "cpu", threads: int | None = None,
                 exact: bool | None = None):
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be >= 1, got {threads}")
            torch.set_num_threads(threads)  # process-wide: torch has one intra-op pool
        self.loaded = loaded or load_model(device=device)
        self.model = self.loaded.model
        self.device = torch.device(device)
        self.exact = self.device.type == "cpu" if exact is None else bool(exact)
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
        pcm = np.ascontiguousarray(pcm, dtype=np.float32)
        if self.exact and pcm.shape[0] > 1:
            outs, new = _by_row(self.encode_step, [[pcm[i:i + 1]] for i in range(pcm.shape[0])], state)
            return [np.concatenate([o[l] for o in outs]) for l in range(len(outs[0]))], new
        codes, new = self.model.encode_step(torch.from_numpy(pcm).to(self.device), self._to_torch(state))
        return [c.cpu().numpy() for c in codes], self._to_numpy(new)

    @torch.inference_mode()
    def decode_step(self, codes: list[np.ndarray], state: State) -> tuple[np.ndarray, State]:
        check_codes(self.facts, codes, blocks=1)
        rows = np.asarray(codes[0]).shape[0]
        if self.exact and rows > 1:
            outs, new = _by_row(self.decode_step, [[[np.asarray(c)[i:i + 1] for c in codes]] for i in range(rows)],
                                state)
            return np.concatenate(outs), new
        tc = [torch.from_numpy(np.asarray(c, dtype=np.int64)).to(self.device) for c in codes]
        y, new = self.model.decode_step(tc, self._to_torch(state))
        return y.cpu().numpy(), self._to_numpy(new)


def _by_row(step, rows: list[list], state: State) -> tuple[list, State]:
    """``step(*rows[i], state_i)`` for each row alone (its batch-1 state), and the new states
    concatenated in row order: exactly what batch-1 steps give."""
    outs, news = [], []
    for i, args in enumerate(rows):
        out, new = step(*args, {k: np.ascontiguousarray(v[i:i + 1]) for k, v in state.items()})
        outs.append(out)
        news.append(new)
    return outs, {k: np.concatenate([n[k] for n in news]) for k in news[0]}
