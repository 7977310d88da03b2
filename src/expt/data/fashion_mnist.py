"""Fashion-MNIST from the four official IDX files; the official test split is the validation set."""

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from ..errors import DataError
from . import ImageData, channel_stats, check_subsets, default_places, explicit_root, first
from .idx import read_idx

FILES = {  # role -> official file name (without .gz)
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "valid_x": "t10k-images-idx3-ubyte",
    "valid_y": "t10k-labels-idx1-ubyte",
}
OFFICIAL_GZ_MD5 = {
    "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
}
URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
SYSTEM_DATA = "/usr/share/datasets"  # Debian/Ubuntu: `apt install dataset-fashion-mnist`


def cache_dir() -> Path:
    return Path.home() / ".cache" / "expt" / "fashion_mnist"


def search_dirs() -> list[Path]:
    """Where to look without data.root, in order: $EXPT_DATA/fashion_mnist, ~/.cache, Debian's package."""
    return default_places("fashion_mnist", system_dir())


def system_dir() -> Path:
    """Debian's copy (`apt install dataset-fashion-mnist`); EXPT_SYSTEM_DATA moves (or, set to an empty
    folder, hides) the system's datasets folder, /usr/share/datasets."""
    return Path(os.environ.get("EXPT_SYSTEM_DATA", SYSTEM_DATA)) / "fashion-mnist"


def find_files(folder: Path) -> dict[str, Path] | None:
    """The four files in `folder` (each gzipped or raw), or None if any is missing."""
    found = {}
    for role, name in FILES.items():
        options = [folder / (name + ".gz"), folder / name]
        path = next((p for p in options if p.is_file()), None)
        if path is None:
            return None
        found[role] = path
    return found


def download(folder: Path, timeout_s: float = 30) -> dict[str, Path]:
    """Fetch the official gzipped files into `folder`, checking each file's MD5."""
    from torchvision.datasets.utils import download_url

    folder.mkdir(parents=True, exist_ok=True)
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)
    try:
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            for name, md5 in OFFICIAL_GZ_MD5.items():
                download_url(URL + name + ".gz", tmp, md5=md5)
            for name in OFFICIAL_GZ_MD5:
                shutil.move(Path(tmp) / (name + ".gz"), folder / (name + ".gz"))
    finally:
        socket.setdefaulttimeout(old_timeout)
    return find_files(folder)


APT_PACKAGE = "dataset-fashion-mnist"


def apt_command() -> list[str] | None:
    """How to run apt-get here: as root, through passwordless sudo, or not at all."""
    if shutil.which("apt-get") is None:
        return None
    if os.geteuid() == 0:
        return ["apt-get"]
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n", "apt-get"]
    return None


def apt_install(apt: list[str], timeout_s: float = 900) -> bool:
    """Install Debian's package (updating the package lists first when apt does not know it)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    policy = subprocess.run(["apt-cache", "policy", APT_PACKAGE], capture_output=True, text=True, env=env)
    steps = [] if "Candidate:" in policy.stdout and "(none)" not in policy.stdout else [[*apt, "-qq", "update"]]
    steps.append([*apt, "-qq", "install", "-y", "--no-install-recommends", APT_PACKAGE])
    try:
        return all(subprocess.run(step, env=env, timeout=timeout_s).returncode == 0 for step in steps)
    except (OSError, subprocess.TimeoutExpired):
        return False


def fetch(log=print) -> Path:
    """`expt data fashion_mnist`: a copy where expt looks (searched as `expt train` does); else Debian's
    package where apt can install it; else the official files, checksummed, into ~/.cache/expt."""
    for folder in search_dirs():
        if find_files(folder):
            log(f"Fashion-MNIST is in {folder}")
            return folder
    apt = apt_command()
    if apt is not None:
        log(f"installing Debian's {APT_PACKAGE} with {' '.join(apt)}")
        if apt_install(apt) and find_files(system_dir()):
            log(f"Fashion-MNIST is in {system_dir()}")
            return system_dir()
        log("apt could not install it; downloading the official files instead")
    files = locate(None, allow_download=True)  # the one-line DataError when this fails too
    log(f"Fashion-MNIST is in {files['train_x'].parent}")
    return files["train_x"].parent


HINT = "point it at the folder with the four IDX files (train-images-idx3-ubyte[.gz], ...)"


def locate(root: str | None, allow_download: bool) -> dict[str, Path]:
    """The four files: in data.root when given (or refused), else the first place of search_dirs()
    that has them, else downloaded into the cache."""
    if root:
        folder = Path(root).expanduser()
        if files := find_files(folder) if folder.is_dir() else None:
            return files
        missing = [name for name in FILES.values() if not any((folder / n).is_file() for n in (name, name + ".gz"))]
        raise explicit_root(root, missing, HINT)
    dirs = search_dirs()
    for folder in dirs:
        if files := find_files(folder):
            return files
    problem = ""
    if allow_download:
        try:
            return download(cache_dir())
        except Exception as e:  # no network, checksum mismatch, disk full: all end in the same advice
            problem = f"; download failed ({type(e).__name__}: {e})".replace("\n", " ")
    searched = ", ".join(str(d) for d in dirs)
    raise DataError(f"Fashion-MNIST not found (looked in {searched}{problem}). Get it with "
                    "`expt data fashion_mnist` (on Debian/Ubuntu: apt install dataset-fashion-mnist), or put the "
                    "four IDX files in a folder and pass data.root=FOLDER (or set EXPT_DATA to its parent)")


def load(root: str | None = None, train_subset: int | None = None, valid_subset: int | None = None,
         download: bool = True) -> ImageData:
    """Read Fashion-MNIST as uint8 (N, 1, 28, 28) images; the 10,000 test images validate."""
    check_subsets(train_subset, valid_subset)
    files = locate(root, download)
    arrays = {role: read_idx(path) for role, path in files.items()}
    for split in ("train", "valid"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{files[split + '_x'].parent}: {split} images {tuple(x.shape)} and labels "
                            f"{tuple(y.shape)} do not match; fetch the official files again")
        if len(y) and int(y.max()) >= len(CLASSES):
            raise DataError(f"{files[split + '_y']}: label {int(y.max())} is not one of the 10 classes; "
                            "fetch the official files again")
    train_x, valid_x = arrays["train_x"].unsqueeze(1), arrays["valid_x"].unsqueeze(1)
    mean, std = channel_stats(train_x)
    return ImageData(
        train_x=first(train_x, train_subset), train_y=first(arrays["train_y"], train_subset).long(),
        valid_x=first(valid_x, valid_subset), valid_y=first(arrays["valid_y"], valid_subset).long(),
        classes=list(CLASSES), mean=mean, std=std, root=str(files["train_x"].parent))
