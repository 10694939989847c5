#!/usr/bin/env bash
# Install the Debian packages tagan uses, when missing: Open Clip Art (offline tagging data),
# exiftool (independent XMP reader for tests), Fashion-MNIST (optional DCGAN dataset), Chromium (renders the
# --report contact sheet headless in tests), WordNet 3.0 (the open vocabulary), GCompris' data and Scratch's media library (real photos
# of the photo_eval stage).
set -euo pipefail
need=()
[ -d /usr/share/openclipart/svg ] || need+=(openclipart-svg)
[ -d /usr/share/openclipart/png ] || need+=(openclipart-png)
command -v exiftool >/dev/null || need+=(libimage-exiftool-perl)
[ -d /usr/share/datasets/fashion-mnist ] || need+=(dataset-fashion-mnist)
command -v chromium >/dev/null || need+=(chromium)
[ -f /usr/share/wordnet/data.noun ] || need+=(wordnet-base)
[ -f /usr/share/wordnet/index.sense ] || need+=(wordnet-sense-index)
[ -f /usr/share/gcompris-qt/rcc/categorization.rcc ] || need+=(gcompris-qt-data)
[ -d /usr/share/scratch/Media/Backgrounds ] || need+=(scratch)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${need[*]}; install them with: sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${need[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
