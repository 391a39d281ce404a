#!/usr/bin/env bash
# Installs the Debian packages that watermark synthesis and `unmark bench engine` draw photos, fonts and logos from
# (bot/lab/assets.py lists which file belongs to the train, val or test split). Idempotent: packages already
# installed are skipped, and with all of them present nothing is downloaded. About 380 MB of .debs in all.
#
#   sudo benchmarks/assets.sh      (or as root; Debian 12 "bookworm")
set -euo pipefail

PACKAGES=(
  # photos: train
  mate-backgrounds               # 12 nature photos
  plasma-workspace-wallpapers    # 11 photos (7 train, 4 val) + 19 artworks
  opencv-doc                     # 22 small photos (18 train, 4 val), text photos (segmented words; val: 3 more; test: scenetext01-06)
  ukui-wallpapers                # 12 artworks
  # photos: validation (never trained on, never the benchmark's table)
  lomiri-wallpapers-20.04        # 2 photos
  # photos: test (held out)
  lomiri-wallpapers-16.04        # 14 photos
  # fonts: train
  fonts-dejavu-core fonts-dejavu-extra fonts-liberation2 fonts-noto-core fonts-wqy-microhei
  # fonts: validation (never trained on)
  fonts-freefont-ttf fonts-roboto-unhinted
  # fonts: test (held out)
  fonts-lato fonts-open-sans fonts-inter fonts-urw-base35 fonts-wqy-zenhei
  # logos: train (Oxygen icons), test (GNOME icons; opencv-doc's OpenCV logos)
  oxygen-icon-theme gnome-icon-theme
)

missing=()
for package in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "benchmark assets: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
echo "benchmark assets: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
