"""Word n-gram language models and CTC beam search for decoding with them.

``kneser_ney`` estimates a model, ``arpa`` writes and reads ARPA files, ``build`` makes one from a
corpus' training transcripts (``supernet lm build``), ``lexicon`` spells words in a model's tokens
and ``beam`` is the beam-search decoder (torchaudio's flashlight ``ctc_decoder``).
"""
