#!/usr/bin/env bash
# Fills .whl/ (git-ignored) with the wheels the device image lacks, for `run --carry .whl`:
# jsonargparse with its signatures extras, jiwer, soundfile, espeakng-loader, wordfreq and optuna,
# with their needs, for the image's Python 3.12 on x86-64 Linux. What the image already has
# (numpy, PyYAML, packaging, tqdm, typing-extensions) is left out: a copy in /tmp/site would
# shadow it. wordfreq keeps only the en/es/de lists, so the carry stays under its 64 MiB.
#   usage (on this machine, from the repository root): bash scripts/device/wheels.sh
set -euo pipefail
dest=.whl
rm -rf "$dest" && mkdir -p "$dest"
python3 -m pip download -q --dest "$dest" --only-binary=:all: --python-version 3.12 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform any "jsonargparse[signatures]" jiwer soundfile espeakng-loader wordfreq optuna 2>&1 \
  | grep -v "^WARNING: Location" || true
rm -f "$dest"/numpy-* "$dest"/packaging-* "$dest"/pyyaml-* "$dest"/PyYAML-* "$dest"/tqdm-* "$dest"/typing_extensions-*
wheel=$(ls "$dest"/wordfreq-*.whl)
unpacked=$(mktemp -d)
(cd "$unpacked" && python3 -m zipfile -e "$OLDPWD/$wheel" . \
  && find wordfreq/data -type f ! -name '*_en.*' ! -name '*_es.*' ! -name '*_de.*' -delete \
  && rm "$OLDPWD/$wheel" && python3 -m zipfile -c "$OLDPWD/$wheel" ./*)
rm -rf "$unpacked"
du -sh "$dest"
