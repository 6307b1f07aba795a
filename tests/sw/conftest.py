"""Shared fixtures of the sw tests: torch on one thread, small digits networks trained once per session."""

import pytest


@pytest.fixture(scope="session", autouse=True)
def _torch_one_thread():
    try:
        import torch
    except ImportError:  # energy tests do not need torch
        return
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits():
    from qjoule.sw import data
    return data.load("digits")


@pytest.fixture(scope="session")
def trained_digits(digits):
    """`trained_digits(q, blocks)` -> a QNN trained 3·blocks epochs on digits (width 16), cached per session."""
    from qjoule.sw.train import TrainConfig, fit
    cache = {}

    def get(q, blocks=1):
        if (q, blocks) not in cache:
            cache[q, blocks] = fit(TrainConfig(q=q, blocks=blocks, width=16, epochs=3 * blocks, seed=0), digits, progress=False)
        return cache[q, blocks]
    return get


def _codes_to_input(codes, q_in):
    """The real values the torch layer reads for the golden model's codes."""
    import torch
    from qjoule.sw.quant import act_scale

    codes = torch.as_tensor(codes, dtype=torch.float64)
    if q_in == 8:
        return codes / 255.0
    return 2 * codes - 1 if q_in == 1 else codes * act_scale(q_in)


def _tie_distance(v, act):
    """Distance of the float value (in output units) to the nearest rounding boundary."""
    import numpy as np
    return np.abs(v) if act == "sign" else np.abs(v - np.floor(v) - 0.5)


def layerwise_mismatches(qnn, model, images, check_layer=None) -> tuple[int, int]:
    """Every layer of the golden model vs the float64 torch layer fed the golden codes.

    A code may differ only where the float value lies within the fixed-point error of a rounding
    boundary (a measured tie); max-pool outputs must be equal. `check_layer(stage, layer)` runs on
    each conv/dense layer while the network is in float64. Returns (differing codes, all codes).
    """
    import numpy as np
    import torch
    from qjoule.sw import golden
    from qjoule.sw.export import LOGIT_SCALE
    from qjoule.sw.quant import act_codes

    result = golden.run(model, images)
    ref = qnn.double()
    mismatches = 0
    try:
        x = images
        for spec, stage, layer in zip(ref.specs, ref.stages, model.layers):
            out = result.outputs[layer["name"]]
            if spec["kind"] == "maxpool2x2":
                assert np.array_equal(out, golden.maxpool2x2(x))
                x = out
                continue
            if check_layer is not None:
                check_layer(stage, layer)
            with torch.no_grad():
                inp = _codes_to_input(x, layer["q_in"])
                pre = (stage["bn"](stage["conv"](inp)) if spec["kind"] == "conv3x3"
                       else stage["bn"](stage["linear"](torch.flatten(inp, 1))))
            if layer["act"] == "none":
                v = pre.numpy() * LOGIT_SCALE
                float_out = np.floor(v + 0.5).astype(np.int64)
            else:
                q = layer["q_out"]
                v = pre.numpy() * (1 if q == 1 else 2 ** q - 1)
                float_out = act_codes(stage["act"](pre), q).numpy()
            differ = float_out != out
            bound = (np.abs(result.accs[layer["name"]]) + 1.0) * 2.0 ** -(layer["pp_shift"] + 1) + 1e-9 * (1 + np.abs(v))
            assert np.all(_tie_distance(v[differ], layer["act"]) <= bound[differ]), \
                f"{layer['name']}: a code differs away from a rounding tie"
            mismatches += int(differ.sum())
            x = out
    finally:
        qnn.float()
    return mismatches, sum(o.size for o in result.outputs.values())


@pytest.fixture(scope="session")
def layerwise():
    """`layerwise(qnn, model, images, check_layer=None)` -> (differing codes, all codes); see above."""
    return layerwise_mismatches
