"""The user's training code: fetched into /opt/ml/code and its ``requirements.txt`` installed.

Where the code comes from, first match wins (sagemaker-training's ``download_and_extract``, plus the
``code`` channel this project accepts for jobs whose source lies in S3):

1. /opt/ml/code already holds files (SDK local mode with local code mounts the source there): used as is;
2. ``sagemaker_submit_directory``: a local folder, a ``.tar.gz`` file or a ``file://`` URL of either;
3. a ``code`` channel: its files, or the one ``.tar.gz`` archive it holds (the SDK's ``sourcedir.tar.gz``).

An ``s3://`` submit directory cannot be downloaded here (no AWS SDK in the images): without a ``code``
channel that is a clear failure, never a silent fallback.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from serving_common.settings import PIP_INDEX_URL, PIP_WHEELHOUSE, TrainingSettings
from serving_common.uris import local_path

log = logging.getLogger("training")

CODE_CHANNEL = "code"
REQUIREMENTS = "requirements.txt"
PIP_TIMEOUT_S = 900
TAIL_CHARS = 700


class UserCodeError(Exception):
    """The user's code cannot be fetched or its requirements cannot be installed; the message says why."""


def _check_member(member: tarfile.TarInfo) -> None:
    # By hand: tarfile's "data" filter needs Python 3.11.4; Debian bookworm's is 3.11.2.
    parts = Path(member.name).parts
    if member.name.startswith("/") or ".." in parts:
        raise UserCodeError(f"the code archive holds {member.name!r}, a path outside the code folder")
    if member.issym() or member.islnk():
        link = Path(member.linkname)
        if member.linkname.startswith("/") or ".." in (Path(member.name).parent / link).parts:
            raise UserCodeError(f"the code archive holds a link {member.name!r} -> {member.linkname!r} that "
                                "points outside the code folder")
    elif not (member.isfile() or member.isdir()):
        raise UserCodeError(f"the code archive holds {member.name!r}, which is neither a file nor a folder")


def _extract(archive: Path, target: Path) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member)
            tar.extractall(target, members=members)
    except (tarfile.TarError, OSError) as exc:
        raise UserCodeError(f"cannot extract the code archive {archive.name}: {exc}") from None


def _copy_into(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True, symlinks=True)
    elif tarfile.is_tarfile(source):
        _extract(source, target)
    else:
        shutil.copy2(source, target)


def fetch(code_dir: Path, submit_directory: str | None, code_channel: Path | None) -> str:
    """Put the user's code into ``code_dir``; returns where it came from (for the log)."""
    code_dir.mkdir(parents=True, exist_ok=True)
    if any(code_dir.iterdir()):
        return f"{code_dir} (already there)"
    local = local_path(submit_directory) if submit_directory else None
    if local is not None:
        if local.resolve() == code_dir.resolve():
            raise UserCodeError(f"sagemaker_submit_directory={submit_directory!r} is empty")
        if not local.exists():
            raise UserCodeError(f"sagemaker_submit_directory={submit_directory!r} does not exist")
        _copy_into(local, code_dir)
        return str(submit_directory)
    if code_channel is not None and code_channel.is_dir():
        entries = [p for p in code_channel.iterdir() if not p.name.startswith(".")]
        archives = [p for p in entries if p.is_file() and p.name.endswith((".tar.gz", ".tgz"))]
        if len(entries) == 1 and archives:
            _extract(archives[0], code_dir)
        else:
            _copy_into(code_channel, code_dir)
        return f"the {CODE_CHANNEL} channel"
    if submit_directory:
        raise UserCodeError(
            f"sagemaker_submit_directory={submit_directory!r} cannot be downloaded by this image (no AWS SDK); "
            f"give the code as a '{CODE_CHANNEL}' channel (the S3 prefix of sourcedir.tar.gz) or use local code")
    raise UserCodeError(f"no training code: {code_dir} is empty and neither sagemaker_submit_directory nor a "
                        f"'{CODE_CHANNEL}' channel was given")


def pip_command(requirements: Path, settings: TrainingSettings) -> list[str]:
    """``python -m pip install -r requirements.txt`` from the wheelhouse or index the user named
    (``SMKIT_PIP_WHEELHOUSE``, ``SMKIT_PIP_INDEX_URL``)."""
    command = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
               "-r", str(requirements)]
    if settings.pip_wheelhouse:
        command += ["--no-index", "--find-links", settings.pip_wheelhouse]
    elif settings.pip_index_url:
        command += ["--index-url", settings.pip_index_url]
    return command


def _pip_available() -> bool:
    return subprocess.run([sys.executable, "-c", "import pip"], capture_output=True).returncode == 0


def install_requirements(code_dir: Path, settings: TrainingSettings) -> None:
    """Install ``requirements.txt`` once; a failure raises with pip's last lines (never retried)."""
    requirements = code_dir / REQUIREMENTS
    if not requirements.is_file():
        return
    if not _pip_available():
        raise UserCodeError(f"InstallRequirementsError: {REQUIREMENTS} cannot be installed: this image has no pip "
                            "(put the packages in the image, or remove the file)")
    command = pip_command(requirements, settings)
    log.info("installing %s: %s", REQUIREMENTS, " ".join(command))
    try:
        result = subprocess.run(command, cwd=code_dir, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise UserCodeError(f"InstallRequirementsError: pip install -r {REQUIREMENTS} took longer than "
                            f"{PIP_TIMEOUT_S} s") from None
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        tail = (result.stderr.strip() or result.stdout.strip())[-TAIL_CHARS:]
        hint = ""
        if not settings.pip_wheelhouse and not settings.pip_index_url:
            hint = f" (no {PIP_WHEELHOUSE} or {PIP_INDEX_URL} given: pip used its default index)"
        raise UserCodeError(f"InstallRequirementsError: pip install -r {REQUIREMENTS} exited with "
                            f"{result.returncode}{hint}: {tail}")
