#!/usr/bin/env bash
# Google Research Football (gfootball 2.10.2) for `env=football/...`, into the active Python.
#
# gfootball ships as a source package whose C++ engine builds against SDL2 and Boost: this
# script installs the Debian packages its README lists (with sudo when not root), then
# builds it with pip (about 11 minutes on 2 cores the first time; pip caches the wheel, so
# later installs take seconds). CMake may find the system's Python headers rather than the
# active interpreter's; with the same minor version (3.11 here) the engine loads fine.
#
#   bash recipes/benchmarks/install_football.sh          # then: python recipes/train.py env=football/academy_3_vs_1_with_keeper
set -euo pipefail

packages=(build-essential cmake libsdl2-dev libsdl2-image-dev libsdl2-ttf-dev libsdl2-gfx-dev
          libboost-all-dev libdirectfb-dev libst-dev mesa-utils xvfb)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if (( ${#missing[@]} )); then
    sudo=""; (( EUID == 0 )) || sudo="sudo"
    echo "install_football: apt-get install ${missing[*]}"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
fi

# gfootball imports six and psutil without declaring them, and its setup.py needs them (and
# setuptools) at build time, hence --no-build-isolation.
python -m pip install -q six psutil setuptools wheel
python -m pip install -q --no-build-isolation "gfootball==2.10.2"
python -c "from gfootball.env import football_env; print('install_football: gfootball', football_env.__name__, 'ok')"
