"""Test helpers shared across modules: system tools the suite requires, and running a command as a normal user.

Every test runs: a missing system tool fails with the command that installs it, and permission checks run as root
too (without root's capabilities), so a CI run as root in a private home checks what a user would see.
"""

from __future__ import annotations

import os
import shutil

import pytest


def system_tool(*names: str) -> str:
    """The path of the first of `names` on PATH; fails the test (naming the installer) when none is there."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        f"{names[0]} is not installed; run scripts/system_packages.sh (make install and CI run it)",
        pytrace=False,
    )


def without_root_privileges(cmd: list[str]) -> list[str]:
    """`cmd` run so that file permissions bind it: as is for a normal user; for root, with every capability
    dropped (root writes into a 0555 folder through CAP_DAC_OVERRIDE; without it, root is the folder's owner
    and owner bits without w apply). Unlike switching to `nobody`, this keeps read access to a checkout and
    a Python that live under root's private home (/root/.pyenv is mode 700)."""
    if os.geteuid() != 0:
        return cmd
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (Debian util-linux) is needed to run a command without root's capabilities"
    return [setpriv, "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--", *cmd]
