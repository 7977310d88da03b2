"""Check that the packaged EfficientNet-Lite0 weights (expt[lite0], arch.weights=efficientnet-lite0)
map onto timm's tf_efficientnet_lite0 correctly: classify Imagenette validation images with the
ImageNet head and count how often the top-1 of the 1000 ImageNet classes is the image's own
(Imagenette's ten classes are ImageNet synsets). Wrongly mapped weights score near 0%.

    python scripts/check_lite0.py --root ../shared/data/imagenette --per-class 40
"""

import argparse
import time
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

from expt.models.timm import timm_model

# Imagenette's synsets and their ImageNet-1k class indices
IMAGENET_INDEX = {"n01440764": 0, "n02102040": 217, "n02979186": 482, "n03000684": 491, "n03028079": 497,
                  "n03394916": 566, "n03417042": 569, "n03425413": 571, "n03445777": 574, "n03888257": 701}


def load(path: Path, size: int = 224) -> torch.Tensor:
    """Short side to size * 256/224, centre crop size x size: ImageNet's evaluation transform."""
    image = Image.open(path).convert("RGB")
    scale = size * 256 / 224 / min(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
    left, top = (image.width - size) // 2, (image.height - size) // 2
    return pil_to_tensor(image.crop((left, top, left + size, top + size))).float() / 255


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="../shared/data/imagenette")
    parser.add_argument("--per-class", type=int, default=40)
    args = parser.parse_args()
    model = timm_model(3, 1000, name="tf_efficientnet_lite0", weights="efficientnet-lite0", input_size=None)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in model.input_norm)
    model.eval()
    correct = total = 0
    start = time.perf_counter()
    for synset, index in IMAGENET_INDEX.items():
        files = sorted((Path(args.root) / "val" / synset).glob("*.JPEG"))[:args.per_class]
        x = torch.stack([load(f) for f in files])
        with torch.no_grad():
            top1 = model((x - mean) / std).argmax(1)
        hits = int((top1 == index).sum())
        correct, total = correct + hits, total + len(files)
        print(f"{synset} (ImageNet {index}): {hits}/{len(files)}")
    print(f"top-1 over 1000 ImageNet classes: {correct}/{total} = {correct / total:.1%} "
          f"(norm {model.input_norm[0]}, {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
