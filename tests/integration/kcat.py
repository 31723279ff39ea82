"""kcat for the tests that run the README's kcat line: Debian's package, fetched once with
`apt-get download` (no root needed) and unpacked into the cache beside Kafka's jars."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from streams.kafka.broker import cache_dir

PACKAGES = ("kcat", "librdkafka1", "libyajl2")  # kcat and the libraries a bare Debian lacks


def ensure_kcat() -> Path:
    """A folder holding a `kcat` that runs (a wrapper setting its library path)."""
    root = cache_dir() / "kcat"
    wrapper = root / "bin" / "kcat"
    if wrapper.exists():
        return wrapper.parent
    apt_get, dpkg_deb = shutil.which("apt-get"), shutil.which("dpkg-deb")
    assert apt_get and dpkg_deb, "the kcat test fetches Debian's kcat package: it needs apt-get and dpkg-deb"
    partial = root.with_name("kcat.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    fetched = subprocess.run([apt_get, "download", *PACKAGES], cwd=partial, capture_output=True, text=True)
    assert fetched.returncode == 0, f"apt-get download {' '.join(PACKAGES)} failed:\n{fetched.stderr}"
    for deb in partial.glob("*.deb"):
        subprocess.run([dpkg_deb, "-x", str(deb), str(partial / "root")], check=True)
    (partial / "bin").mkdir()
    (lib,) = {p.parent.relative_to(partial) for p in (partial / "root").rglob("librdkafka.so.1")}
    (partial / "bin" / "kcat").write_text(
        f'#!/bin/sh\nLD_LIBRARY_PATH="{root / lib}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}" '
        f'exec "{root}/root/usr/bin/kcat" "$@"\n'
    )
    (partial / "bin" / "kcat").chmod(0o755)
    shutil.rmtree(root, ignore_errors=True)
    partial.rename(root)
    return wrapper.parent
