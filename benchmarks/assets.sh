#!/usr/bin/env bash
# Installs the Debian packages that watermark synthesis and `unmark bench engine` draw photos, fonts and logos from
# (bot/lab/assets.py lists which file belongs to the train, val or test split). Idempotent: packages already
# installed are skipped, and with all of them present nothing is downloaded. About 380 MB of .debs for the photos,
# fonts and logos, and about 450 MB more (with their dependencies) for issue 25's photos and clean images of every
# kind (greyscale, product shots, screenshots, documents, illustrations).
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
  # issue 25, photos (crc32 of the file name picks val and test; the rest train)
  endless-sky-data               # 273 land, city, interior photos, 720x360 (train 197 + 22 as grey, val 26, test 28)
  endless-sky-high-dpi           # the same photos at 1440x720, used where installed
  kphotoalbum                    # 23 demo photos of people and places (train); its handbook's screenshots (test)
  scratch                        # 54 stage photos, 6 drawn stages, 1 grey photo (train)
  # issue 25, product shots on plain grounds
  argyll-doc                     # 35 colorimeters and spectrometers (18 train, 8 val, 9 test)
  # issue 25, screenshots
  kalzium-data                   # its handbook's screenshots (train)
  cimg-doc                       # demo screenshots (train)
  xsane-common                   # its manual's screenshots (val)
  # issue 25, documents (pages rendered with pdftoppm)
  poppler-utils                  # pdftoppm
  r-doc-pdf                      # the R manuals, every 8th page (train)
  gnuplot-doc                    # gnuplot's manual, 13 pages (val)
  asymptote-doc                  # Asymptote's manual, 13 pages (test)
  debian-refcard                 # the Debian reference card in 38 languages (22 val, 16 test)
  # issue 25, illustrations
  pysiogame                      # art4apps clip art (train; people: val; food: test)
  gnome-backgrounds              # 16 drawn backgrounds (val)
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
