"""Microphone capture with sounddevice (PortAudio: Debian ``libportaudio2``).

``MicCapture`` opens an input stream at the device's own rate and yields
float32 mono chunks as an async iterator; the server resamples. sounddevice is
imported only when a microphone is used.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np


class MicError(ValueError):
    """No usable input device (or no PortAudio); the message says what to do."""


def _sounddevice():
    try:
        import sounddevice as sd
    except ImportError as e:
        raise MicError(f"the microphone needs the 'sounddevice' package and PortAudio "
                       f"(pip install sounddevice; Debian: apt-get install libportaudio2): {e}") from None
    except OSError as e:  # sounddevice raises OSError when libportaudio is missing
        raise MicError(f"PortAudio is not installed ({e}); on Debian: apt-get install libportaudio2") from None
    return sd


def input_devices() -> list[dict[str, Any]]:
    """Every device with input channels: index, name, channels, default rate."""
    sd = _sounddevice()
    return [{"index": i, "name": d["name"], "channels": d["max_input_channels"],
             "sample_rate": int(d["default_samplerate"])}
            for i, d in enumerate(sd.query_devices()) if d["max_input_channels"] > 0]


def resolve_device(device: int | str | None = None) -> tuple[int | str | None, int]:
    """The input device to use and its default sample rate; MicError when there is none."""
    sd = _sounddevice()
    try:
        info = sd.query_devices(device, kind="input")
    except (ValueError, sd.PortAudioError) as e:
        devices = input_devices()
        listing = "; ".join(f"{d['index']}: {d['name']}" for d in devices) or "none"
        what = "no audio input device found" if device is None else f"input device {device!r} not found"
        raise MicError(f"{what} ({e}); input devices: {listing}. Connect a microphone, "
                       "pick one with --device, or stream a file with 'llmcodec stream FILE'") from None
    return device, int(info["default_samplerate"])


class MicCapture:
    """``async with MicCapture() as mic: async for chunk in mic: ...`` (float32 mono [T])."""

    def __init__(self, device: int | str | None = None, sample_rate: int | None = None,
                 chunk_ms: float = 20.0, max_queue: int = 500):
        self.device, default_rate = resolve_device(device)
        self.sample_rate = int(sample_rate or default_rate)
        self.blocksize = max(1, int(self.sample_rate * chunk_ms / 1000))
        self.overflows = 0
        self._queue: asyncio.Queue[np.ndarray | None] = asyncio.Queue(max_queue)
        self._stream = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _callback(self, indata, frames, time_info, status) -> None:  # PortAudio thread
        if status:
            self.overflows += 1
        chunk = indata.mean(axis=1, dtype=np.float32) if indata.shape[1] > 1 else indata[:, 0].copy()
        self._loop.call_soon_threadsafe(self._put, chunk)

    def _put(self, chunk: np.ndarray | None) -> None:
        if self._queue.full():
            self.overflows += 1  # the consumer stalled: drop the oldest audio
            self._queue.get_nowait()
        self._queue.put_nowait(chunk)

    async def __aenter__(self) -> "MicCapture":
        sd = _sounddevice()
        self._loop = asyncio.get_running_loop()
        try:
            self._stream = sd.InputStream(device=self.device, samplerate=self.sample_rate, channels=1,
                                          dtype="float32", blocksize=self.blocksize, callback=self._callback)
            self._stream.start()
        except sd.PortAudioError as e:
            raise MicError(f"cannot open input device {self.device!r} at {self.sample_rate} Hz: {e}") from None
        return self

    async def __aexit__(self, *exc) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None
        self._put(None)

    def __aiter__(self) -> AsyncIterator[np.ndarray]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[np.ndarray]:
        while True:
            chunk = await self._queue.get()
            if chunk is None:
                return
            yield chunk
