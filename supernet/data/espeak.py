"""A small ctypes binding to the espeak-ng library bundled in the `espeakng-loader` wheel.

Why ctypes and not a system package: the wheel ships `libespeak-ng.so` and its data folder, so
`pip install` is the whole set-up and every machine synthesises with the same espeak-ng build.

espeak-ng keeps process-global state: initialise it once per process (`Espeak()`, one per pool
worker). That state also carries over from one utterance to the next (wave phase, pitch flutter,
Klatt filters, its random generator), so the same text comes out differently depending on what
was spoken before. For output that depends only on its arguments, `IsolatedEspeak` keeps a small
process with freshly initialised espeak-ng and forks it once per utterance (POSIX only; about
10 ms an utterance, as long as that process stays small: start it before importing torch).
"""

from __future__ import annotations

import ctypes
import os
import pickle
import struct
from functools import cache
from pathlib import Path

import numpy as np

AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_DONT_EXIT = 0x8000
CHARS_UTF8 = 1
POS_CHARACTER = 1
EE_OK = 0
# espeak_PARAMETER
RATE, VOLUME, PITCH, RANGE, PUNCTUATION, CAPITALS, WORDGAP = 1, 2, 3, 4, 5, 6, 7

# int callback(short *wav, int numsamples, espeak_EVENT *events): return 0 to go on.
SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


@cache
def data_path() -> Path:
    """The `espeak-ng-data` folder of the bundled library."""
    import espeakng_loader

    return Path(espeakng_loader.get_data_path())


@cache
def _library() -> ctypes.CDLL:
    import espeakng_loader

    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetSynthCallback.argtypes = [SYNTH_CALLBACK]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p,  # text
        ctypes.c_size_t,  # size
        ctypes.c_uint,  # position
        ctypes.c_int,  # position type
        ctypes.c_uint,  # end position
        ctypes.c_uint,  # flags
        ctypes.c_void_p,  # unique identifier (out)
        ctypes.c_void_p,  # user data
    ]
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_Info.restype = ctypes.c_char_p
    lib.espeak_Info.argtypes = [ctypes.c_void_p]
    return lib


def version() -> str:
    """The espeak-ng version string (no initialisation needed)."""
    return _library().espeak_Info(None).decode()


def language_voices() -> dict[str, str]:
    """Language voice name -> its file under `espeak-ng-data/lang` (for example `es` -> `roa/es`)."""
    root = data_path() / "lang"
    return {p.name: p.relative_to(root).as_posix() for p in sorted(root.rglob("*")) if p.is_file()}


def voice_variants() -> list[str]:
    """Names of the voice variants (`m3`, `f2`, `klatt`, ...) that can follow `+` in a voice name."""
    return sorted(p.name for p in (data_path() / "voices" / "!v").iterdir() if p.is_file())


class Espeak:
    """espeak-ng in this process, synchronous mode: `synth(...)` gives int16 samples at `sample_rate` Hz."""

    def __init__(self) -> None:
        self.lib = _library()
        path = str(data_path()).encode()
        self.sample_rate = self.lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, path, INITIALIZE_DONT_EXIT)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialise with data at {data_path()}")
        self._chunks: list[np.ndarray] = []
        self._callback = SYNTH_CALLBACK(self._collect)  # keep a reference: C holds only the pointer
        self.lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, numsamples: int, events) -> int:
        if wav and numsamples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        return 0

    def synth(
        self, text: str, voice: str, rate: int, pitch: int, pitch_range: int, seed: int = 0
    ) -> np.ndarray:
        """Speak `text` with `voice` (`en+m3`): rate in words/min, pitch and range 0..100, random seed.

        The samples also depend on what this process spoke before (see the module docstring).
        """
        if self.lib.espeak_SetVoiceByName(voice.encode()) != EE_OK:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        for param, value in ((RATE, rate), (PITCH, pitch), (RANGE, pitch_range), (VOLUME, 100), (WORDGAP, 0)):
            self.lib.espeak_SetParameter(param, int(value), 0)
        self.lib.espeak_ng_SetRandSeed(int(seed))
        data = text.encode("utf-8") + b"\0"
        self._chunks = []
        err = self.lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
        chunks, self._chunks = self._chunks, []
        if err != EE_OK:
            raise RuntimeError(f"espeak_Synth failed (error {err}) on {text!r} with voice {voice!r}")
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


def _send(fd: int, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(struct.pack("<Q", len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _receive(fd: int):
    """The next message on `fd`, or None at end of file."""
    header = _read_exactly(fd, 8)
    if header is None:
        return None
    body = _read_exactly(fd, struct.unpack("<Q", header)[0])
    return None if body is None else pickle.loads(body)


def _read_exactly(fd: int, n: int) -> bytes | None:
    parts, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


class IsolatedEspeak:
    """espeak-ng that speaks every utterance from the same freshly initialised state.

    A forked server process initialises espeak-ng once and never speaks itself; for each request
    it forks a child that speaks and sends the samples back. Create it early, while this process
    is small: the server is a copy of it, and forks once per utterance.
    """

    def __init__(self) -> None:
        request_read, self._request = os.pipe()
        self._response, response_write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the server: never returns into the caller's code
            os.close(self._request)
            os.close(self._response)
            status = 1
            try:
                _serve(request_read, response_write)
                status = 0
            finally:
                os._exit(status)
        os.close(request_read)
        os.close(response_write)
        self.sample_rate = _receive(self._response)
        if not isinstance(self.sample_rate, int):
            self.close()
            raise RuntimeError(f"espeak-ng server failed to start: {self.sample_rate}")

    def synth(
        self, text: str, voice: str, rate: int, pitch: int, pitch_range: int, seed: int = 0
    ) -> np.ndarray:
        """Speak `text` with `voice` (for example `en+m3`): rate in words/min, pitch and range 0..100."""
        _send(self._request, (text, voice, int(rate), int(pitch), int(pitch_range), int(seed)))
        reply = _receive(self._response)
        if reply is None:
            raise RuntimeError("the espeak-ng server process died")
        if isinstance(reply, str):
            raise RuntimeError(reply)
        return np.frombuffer(reply, dtype="<i2").astype(np.int16)

    def close(self) -> None:
        """Stop the server (it also stops by itself when this process exits)."""
        if self.pid:
            os.close(self._request)
            os.close(self._response)
            os.waitpid(self.pid, 0)
            self.pid = 0


def _serve(requests: int, responses: int) -> None:
    """Initialise once, then fork a speaking child per request, until the request pipe closes."""
    try:
        engine = Espeak()
    except Exception as err:  # report it instead of leaving the parent waiting
        _send(responses, f"{type(err).__name__}: {err}")
        return
    _send(responses, engine.sample_rate)
    while (request := _receive(requests)) is not None:
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                try:
                    reply = engine.synth(*request).astype("<i2").tobytes()
                except Exception as err:
                    reply = f"{type(err).__name__}: {err}"
                _send(responses, reply)
                status = 0
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            _send(responses, f"espeak-ng crashed on {request[0]!r} with voice {request[1]!r}")
