"""The checker: RTL outputs against the golden model, exact equality, first difference named."""

from __future__ import annotations

from typing import Any

import numpy as np


def first_difference(expected: np.ndarray, got: np.ndarray) -> dict[str, Any] | None:
    """The first index (row-major) where two integer arrays differ, or None when equal."""
    expected, got = np.asarray(expected), np.asarray(got)
    if expected.shape != got.shape:
        return {"index": None, "expected": f"shape {expected.shape}", "got": f"shape {got.shape}"}
    diff = np.argwhere(expected != got)
    if not len(diff):
        return None
    index = tuple(int(i) for i in diff[0])
    return {"index": list(index), "expected": int(expected[index]), "got": int(got[index]),
            "differing": int(len(diff)), "of": int(expected.size)}


def compare_image(model, expected, image: int, logits: np.ndarray, layers: dict[str, np.ndarray]) -> dict[str, Any]:
    """Compare one image's dumped layer codes (in layer order) and logits with the golden result."""
    compared, first = [], None
    for layer in model.layers[:-1]:
        name = layer["name"]
        if name not in layers:
            continue
        compared.append(name)
        diff = first_difference(expected.outputs[name][image], layers[name])
        if diff is not None and first is None:
            first = {"layer": name, **diff}
    compared.append("logits")
    diff = first_difference(expected.logits[image], logits)
    if diff is not None and first is None:
        first = {"layer": "logits", **diff}
    return {"image": image, "match": first is None, "compared": compared, "first_mismatch": first,
            "logits": [int(v) for v in logits], "prediction": int(np.argmax(logits))}


def failures(tb: dict[str, Any] | None) -> list[str]:
    """Every way a testbench result falls short of an exact whole-network match, one line each
    (empty: every image of every job matched on every layer and the logits)."""
    if tb is None:
        return ["the testbench wrote no result"]
    if tb["error"] is not None:
        return [str(tb["error"])]
    found = []
    for job in tb["jobs"]:
        for image in job["images"]:
            where = f"{job['model']} image {image['image']}"
            if not image["match"]:
                found.append(f"{where}: {image['first_mismatch']}")
            elif image["compared"][-1] != "logits" or len(image["compared"]) < 2:
                found.append(f"{where}: compared only {image['compared']}")
    return found
