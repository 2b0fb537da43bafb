"""The project's analysis frames, one setting for the data path (`supernet.data.features`) and the
waveform front-end ops (`ops.frontend`): 16 kHz audio, 25 ms windows (400 samples) every 10 ms (160
samples), each windowed frame zero-padded to a 512-point FFT.

Why 512 and not 400 (torchaudio's `MelSpectrogram` default): Kaldi, and the toolkits that follow it
(ESPnet, NeMo, WeNet, Lhotse), take the FFT of the 400-sample window padded to the next power of two
(`round_to_power_of_two`), so a speech researcher expects 257 bins 31.25 Hz apart. Measured with
the framing aligned and Kaldi's window set to a Hann window, no pre-emphasis and no DC removal, the
per-utterance-normalised 80-bin log-mels of torchaudio were this far (mean |difference|) from
`torchaudio.compliance.kaldi.fbank`'s: 3 s of white noise 0.003 at n_fft 512 and 0.077 at 400, a
voiced glide 0.003 and 0.077, a chirp (one tone: most bands hold only leakage) 0.099 and 0.130. The
FFT size was nearly all of the difference. With Kaldi's own defaults (Povey window, pre-emphasis),
which dominate, 512 was still the closer one (noise 0.4376 vs 0.4383, correlation 0.815 vs 0.809).

Features recorded before this setting (checkpoints and exported models that do not say their
n_fft) used n_fft 400 on the data path: `supernet.data.features.LEGACY_N_FFT`.
"""

from __future__ import annotations


def padded_fft_size(window: int) -> int:
    """The smallest power of two that holds ``window`` samples (Kaldi's ``round_to_power_of_two``)."""
    if window < 1:
        raise ValueError(f"a window has at least one sample, got {window}")
    return 1 << (window - 1).bit_length()


SAMPLE_RATE = 16000
WINDOW_MS, HOP_MS = 25.0, 10.0
WINDOW = round(SAMPLE_RATE * WINDOW_MS / 1000)  # 400 samples
HOP = round(SAMPLE_RATE * HOP_MS / 1000)  # 160 samples
N_FFT = padded_fft_size(WINDOW)  # 512
LOG_FLOOR = 1e-6  # log-mels are log(mel power + LOG_FLOOR)
