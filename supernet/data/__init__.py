"""Speech data: manifests, the synthetic espeak-ng corpus, LibriSpeech import, tokenizers,
features and SpecAugment, duration buckets, checks before training, and the data module."""
