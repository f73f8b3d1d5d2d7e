"""Read number images with RapidOCR (a peer, for the numbers benchmark; run with a Python
that has ``pip install rapidocr onnxruntime``): ``python rapidocr_read.py LIST OUT.csv
[--det]``. LIST has one image path a line; OUT gets ``path,text,score`` (the digits of
what it read, separators dropped) and the seconds it took on its last line."""

import csv
import re
import sys
import time

import numpy as np
from PIL import Image
from rapidocr import RapidOCR


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        paths = f.read().split()
    detect = "--det" in sys.argv
    engine = RapidOCR()
    engine(np.full((32, 64, 3), 255, np.uint8), use_det=detect, use_cls=False, use_rec=True)
    t0 = time.perf_counter()
    with open(sys.argv[2], "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["path", "text", "score"])
        for path in paths:
            image = np.asarray(Image.open(path).convert("RGB"))
            got = engine(image, use_det=detect, use_cls=False, use_rec=True)
            texts = [t for t in (got.txts or ()) if t]
            scores = [s for s in (got.scores or ())]
            text = re.sub(r"\D", "", "".join(texts))
            out.writerow([path, text, min(scores) if scores else 0.0])
        out.writerow(["#seconds", f"{time.perf_counter() - t0:.3f}", ""])


if __name__ == "__main__":
    main()
