"""Download the official BBQ files (nyu-mll/BBQ at a pinned commit), cached and sha256-checked."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Mapping

from interp.errors import InterpError
from interp.paths import home

BBQ_COMMIT = "bea11bd"  # nyu-mll/BBQ commit the checksums below were taken from
BBQ_BASE = f"https://github.com/nyu-mll/BBQ/raw/{BBQ_COMMIT}/"

# local name -> (path in the repository, sha256)
BBQ_FILES: dict[str, tuple[str, str]] = {
    "data/Age.jsonl": ("data/Age.jsonl", "46e805b3fc2d8cbd26eeb8e8430d98cf7b2dc9c83574ff3674e8ce4f0fca2a60"),
    "data/Disability_status.jsonl": ("data/Disability_status.jsonl", "375d40d9b71f056150264445ec189b13934998f3f49a1e311aa7578eb3b45e5f"),
    "data/Nationality.jsonl": ("data/Nationality.jsonl", "a583e74666aec0341ded8aa3983e7cad694eb24de72c254d28b2df3035720090"),
    "data/Physical_appearance.jsonl": ("data/Physical_appearance.jsonl", "e48d7e13508565f4801574e611043470c25c95a0a62af3699cb5ee7cb02608fb"),
    "data/Religion.jsonl": ("data/Religion.jsonl", "cb9555f9f3454a52cd2df85956b59bd7fcca5aa922c8527693b1164d08417616"),
    "data/Sexual_orientation.jsonl": ("data/Sexual_orientation.jsonl", "2c71036b9e7584fe589c42aef32c1a42bc01b9a5e9b1b8704342630cdb08cefd"),
    "templates/Age.csv": ("templates/new_templates - Age.csv", "bf7b0d47514ddf4df73ccfc7598499887d74ab15565e0526ab9030b5defedaa5"),
    "templates/Disability_status.csv": ("templates/new_templates - Disability_status.csv", "db1c4251f71a2ec68516f59b12c5db8a6677c762813c6a4d79aac42d665163aa"),
    "templates/Nationality.csv": ("templates/new_templates - Nationality.csv", "56cf260c15bc36e4627857c4379dacdbe4432eaeed5bd98e7c84646675656289"),
    "templates/Physical_appearance.csv": ("templates/new_templates - Physical_appearance.csv", "9110eedc41f63639e79604c9a3f48f12361de0b58c7be5a19d854c9683192397"),
    "templates/Religion.csv": ("templates/new_templates - Religion.csv", "0b5091c3f2da84028bb676aacb36fb90de2f334fd5cfc7581ac99029730ef314"),
    "templates/Sexual_orientation.csv": ("templates/new_templates - Sexual_orientation.csv", "c10bb25d2162b65f551e04a563971cc41418f3837a556cf482c594ef23836f84"),
    # the other five categories' templates: no JSONL here, but their questions feed the organism's
    # question-swap data (interp.organisms.causal_lm.aux_question_pool), so a download builds the same organism
    "templates/Gender_identity.csv": ("templates/new_templates - Gender_identity.csv", "7ece33ce9820c36a7786a95e2cb7faf6b176ad4cf9f07223105a486e4791aba8"),
    "templates/Race_ethnicity.csv": ("templates/new_templates - Race_ethnicity.csv", "9e5318d28ae3251dae72e459367a9366d33242bf53ee3643056adeaaf136577b"),
    "templates/Race_x_SES.csv": ("templates/new_templates - Race_x_SES.csv", "075f27b88a961779ca5e6902a830ef59d4be4fc4a6925b1434d251618ba7dfab"),
    "templates/Race_x_gender.csv": ("templates/new_templates - Race_x_gender.csv", "0da43be55f1bdcee64f41ea6e3783410a55220cd96d24eca782d9e5aa5cd399f"),
    "templates/SES.csv": ("templates/new_templates - SES.csv", "6d7d206febc93fe85171231bc70ac7fc45022559d699fd2c2b7057dbddeb4f9e"),
}


class DownloadError(InterpError, RuntimeError):
    pass


def default_bbq_cache() -> Path:
    return home() / "bbq"


def sha256(path: Path) -> str:
    """The hex sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def first_mismatch(folder: Path, expected: Mapping[str, str]) -> tuple[str, str] | None:
    """The first file of ``expected`` (name -> hex sha256) that is ``"missing"`` from ``folder`` or ``"changed"``,
    as ``(name, what)``; None when every file matches. Callers raise their own named error."""
    for name, want in expected.items():
        f = Path(folder) / name
        if not f.is_file():
            return name, "missing"
        if sha256(f) != want:
            return name, "changed"
    return None


def download_bbq(dest: str | os.PathLike | None = None, force: bool = False, timeout: float = 30.0) -> Path:
    """Fetch every pinned file into ``dest`` (default ``$INTERP_HOME/bbq``); return its ``data/`` folder.

    Files already present with the right checksum are kept. A file is written to a temporary name and
    moved into place only after its checksum matches, so an interrupted download leaves nothing half-done."""
    root = Path(dest) if dest else default_bbq_cache()
    for local, (remote, digest) in BBQ_FILES.items():
        target = root / local
        if target.exists() and not force and sha256(target) == digest:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        url = BBQ_BASE + urllib.parse.quote(remote)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                data = resp.read()
        except (urllib.error.URLError, OSError) as e:
            raise DownloadError(
                f"could not download {url} ({e}). Offline? Copy the official BBQ files by hand and set "
                f"INTERP_BBQ_DIR to the folder holding <Category>.jsonl."
            ) from None
        got = hashlib.sha256(data).hexdigest()
        if got != digest:
            raise DownloadError(f"checksum mismatch for {url}: expected {digest}, got {got}")
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    return root / "data"


def ensure_bbq_dir(log=print) -> Path:
    """The BBQ data folder: ``$INTERP_BBQ_DIR`` when set (the offline option), else the download cache, filled
    once from the pinned, checksummed official files; sets ``$INTERP_BBQ_DIR`` for the rest of the process."""
    env = os.environ.get("INTERP_BBQ_DIR")
    if env:
        return Path(env)
    if not any(default_bbq_cache().glob("data/*.jsonl")):
        log("INTERP_BBQ_DIR is not set: downloading the official BBQ files (pinned, checksummed) ...")
    d = download_bbq()
    os.environ["INTERP_BBQ_DIR"] = str(d)
    return Path(d)
