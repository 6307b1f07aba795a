"""One hidden conv3x3 layer (and the pixel layer before it) run by the sequencer from its buffers,
every output code equal to the golden model's conv3x3_acc + postprocess."""

import numpy as np
import pytest

from qjoule.config import AccelConfig, default_datapath
from qjoule.sw import golden


def _cfg(q, rows, cols, **changes):
    fields = dict(q=q, datapath=default_datapath(q), rows=rows, cols=cols, act_buffer_bits=32 * 1024,
                  weight_buffer_bits=32 * 1024, max_channels=32, max_height=16, max_width=16,
                  max_dense_inputs=512, max_classes=8, name="test")
    return AccelConfig(**{**fields, **changes})


# (q, R, C, hidden input channels, hidden output channels): S = 16/q lanes at q | 16, 5 at q = 3.
CASES = [
    (4, 2, 2, 8, 5),    # input channels fill the lanes (S=4, G=2); partial last output tile
    (4, 3, 1, 3, 4),    # 3 of 4 lanes; R=3 does not divide W=5
    (2, 1, 3, 8, 7),    # S=8 filled; C=3
    (8, 2, 3, 2, 3),    # S=2 filled
    (1, 3, 2, 16, 3),   # Q=1: XNOR lanes, S=16 filled
    (1, 2, 1, 5, 2),    # Q=1, 5 of 16 lanes (masked lanes must add 0, not -1)
    (3, 2, 2, 4, 3),    # Q=3: D=15, S=5
    (5, 3, 2, 3, 2),    # Q=5: D=15, S=3 filled
    (16, 2, 1, 2, 3),   # Q=16: one lane, one pass
]


# memory_pipeline 2 (the ulx3s setting: registered buffer reads, the feeder's wide copy a cycle
# after its take, per-lane write indices stepped as registers) on partial lanes and odd R, C
@pytest.mark.parametrize("q, rows, cols, cin, cout, pipeline", [(*case, 0) for case in CASES]
                         + [(4, 3, 1, 3, 4, 2), (2, 1, 3, 8, 7, 2), (1, 2, 1, 5, 2, 2), (3, 2, 2, 4, 3, 2)])
def test_conv_layer_matches_golden(model_builder, accel_run, q, rows, cols, cin, cout, pipeline):
    cfg = _cfg(q, rows, cols, memory_pipeline=pipeline)
    model = model_builder(q, (2, 4, 5), [cin, cout], classes=3, seed=q * 100 + rows * 10 + cols)
    image = np.random.default_rng(7).integers(0, 256, size=(2, 4, 5), dtype=np.uint8)
    (logits, layers), = accel_run(model, cfg, [image])[0]
    x = golden.run(model, image[None])
    hidden = model.layer("L1")
    acc = golden.conv3x3_acc(x.outputs["L0"], model.arrays[hidden["weight"]], q)
    expected = golden.postprocess(acc, model.arrays[hidden["pp_mult"]], model.arrays[hidden["pp_bias"]],
                                  hidden["pp_shift"], q, hidden["act"])[0]
    assert len(np.unique(expected)) > 1  # the test would not see a stuck output otherwise
    assert np.array_equal(layers["L0"], x.outputs["L0"][0])
    assert np.array_equal(layers["L1"], expected)
    assert np.array_equal(logits, x.logits[0])


def test_conv_with_gaps_and_backpressure(model_builder, accel_run):
    cfg = _cfg(4, 2, 2)
    model = model_builder(4, (1, 5, 4), [4, 6], classes=3, seed=5)
    image = np.random.default_rng(3).integers(0, 256, size=(1, 5, 4), dtype=np.uint8)
    (logits, layers), = accel_run(model, cfg, [image], gap_seed=11)[0]
    x = golden.run(model, image[None])
    for name in ("L0", "L1"):
        assert np.array_equal(layers[name], x.outputs[name][0])
    assert np.array_equal(logits, x.logits[0])


@pytest.mark.parametrize("q, rows, cols, pipeline", [(4, 1, 2, 0), (1, 3, 1, 0), (2, 3, 2, 0), (8, 2, 2, 0), (4, 4, 2, 0),
                                                     (2, 6, 1, 0), (4, 1, 2, 2), (2, 3, 2, 2), (4, 4, 2, 2)])
def test_maxpool_layers_odd_sizes(model_builder, accel_run, q, rows, cols, pipeline):
    # 5x7 input: both pools drop an odd last row/column (floor), R = 3 makes the two input
    # columns of an output wrap around the banks; R = 4, 6 pool R/2 output columns per step.
    # memory_pipeline 2: the pool's rotated inputs and its pooled words are registered too.
    cfg = _cfg(q, rows, cols, memory_pipeline=pipeline)
    model = model_builder(q, (1, 5, 7), [5, 6], classes=3, seed=q + rows, pool_after=(0, 1))
    image = np.random.default_rng(q).integers(0, 256, size=(1, 5, 7), dtype=np.uint8)
    (logits, layers), = accel_run(model, cfg, [image])[0]
    x = golden.run(model, image[None])
    assert layers["P0"].shape == (5, 2, 3) and layers["P1"].shape == (6, 1, 1)
    for name in ("L0", "P0", "L1", "P1"):
        assert np.array_equal(layers[name], x.outputs[name][0]), name
    assert np.array_equal(logits, x.logits[0])


def test_short_tiles_under_output_backpressure(model_builder, accel_run):
    # Q=16 (one lane), R=1, C=3: the dense layer's tiles last 3 cycles while sending a tile's
    # logits takes 6 words under random backpressure, so the drain backs up into the array.
    cfg = _cfg(16, 1, 3)
    model = model_builder(16, (1, 4, 4), [5, 3], classes=7, seed=3, pool_after=(0, 1))
    image = np.random.default_rng(1).integers(0, 256, size=(1, 4, 4), dtype=np.uint8)
    (logits, layers), = accel_run(model, cfg, [image], gap_seed=6)[0]
    x = golden.run(model, image[None])
    for name in layers:
        assert np.array_equal(layers[name], x.outputs[name][0]), name
    assert np.array_equal(logits, x.logits[0])


def _probe_value(ctx, probe):
    if isinstance(probe, dict):
        return {key: _probe_value(ctx, value) for key, value in probe.items()}
    if isinstance(probe, tuple):
        return tuple(_probe_value(ctx, value) for value in probe)
    return ctx.get(probe)


def _array_inputs(model, cfg, image, fields=None):
    """Per cycle while a run is busy: (layer, en, row_valid, lane_valid) at the MacArray's input ports
    (the sequencer's registered controls, which the array's edge registers take together), or
    with `fields` a dict of those sequencer probes' values (a tuple or dict of signals alike)."""
    from amaranth.sim import Simulator

    from qjoule.gateware.top import QjouleAccel
    from qjoule.program import encode

    prog = encode(model, cfg, debug=False)
    words = list(prog.setup_words) + prog.image_words(image)
    n_out = prog.output_word_count()
    dut = QjouleAccel(cfg)
    trace = []

    async def source(ctx):
        for word in words:
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, word)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def sink(ctx):
        probes = dut.sequencer.probes
        ctx.set(dut.o.ready, 1)
        received, started = 0, False
        for _ in range(50_000):
            busy = ctx.get(dut.busy)
            if busy:
                started = True
                if fields is None:
                    trace.append((ctx.get(dut.layer), ctx.get(probes["en"]), ctx.get(probes["row_valid"]),
                                  ctx.get(probes["lane_valid"])))
                else:
                    trace.append({name: _probe_value(ctx, probes[name]) for name in fields})
            received += ctx.get(dut.o.valid)
            await ctx.tick()
            if started and not busy and received >= n_out:
                return
        raise TimeoutError("the run did not end")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    return prog, trace


@pytest.mark.parametrize("rows", [1, 2, 3])
def test_registered_tap_is_the_walks_tap_at_every_conv_issue(model_builder, rows):
    # memory_pipeline keeps the current tap's constants (and the next tap's) in registers, not
    # selected from (kh, kw) in the issue cycle: at every conv issue they must equal the layer's
    # tap table at (kh, kw), from a layer's first issue (INIT lasts long enough for the table to
    # settle first) and across folded, 3x3 and group steps. L1's groups differ from L0's, so a
    # stale tap from the previous layer would show.
    cfg = _cfg(4, rows, 2, memory_pipeline=2)
    model = model_builder(4, (2, 4, 5), [16, 5], classes=3, seed=rows)
    image = np.random.default_rng(rows).integers(0, 256, size=(2, 4, 5), dtype=np.uint8)
    fields = {"issue": None, "conv": None, "kh": None, "kw": None, "tap": None, "tap_table": None}
    trace = _array_inputs(model, cfg, image, fields)[1]
    checked = 0
    for probe in trace:
        if probe["issue"] and probe["conv"]:
            assert probe["tap"] == probe["tap_table"][probe["kh"], probe["kw"]], probe
            checked += 1
    # every conv issue was checked, ceil(20 / R) pixel tiles of: L0 (folded 9-fold: centre tap
    # only; 2 · 9 = 18 virtual channels = 5 groups, 2 passes of the 8-bit pixels, 8 output
    # tiles) and L1 (16 channels = 4 groups, 9 taps, 3 output tiles)
    assert checked == -(-20 // rows) * (8 * 2 * 5 + 3 * 4 * 9)


def test_masks_at_the_first_issued_cycle_of_each_layer(model_builder):
    # The layer shapes of tests/sim/test_activity.py (Q = 4: S = 4 lanes, R = C = 2, 4x4 maps):
    # L0 3 -> 8 (folded 9-fold: 27 virtual channels, 7 groups, the last 3 lanes), L1 8 -> 4,
    # L2 4 -> 5, L3 5 -> 4 (second group 1 lane), fc 64 -> 5 (row 0 only, 3 column tiles).
    cfg = _cfg(4, 2, 2)
    model = model_builder(4, (3, 4, 4), [8, 4, 5, 4], classes=5, seed=3)
    image = np.random.default_rng(0).integers(0, 256, size=(3, 4, 4), dtype=np.uint8)
    prog, trace = _array_inputs(model, cfg, image)
    assert prog.fold == 9 and cfg.first_layer_passes == 2
    issued = [(layer, rowv, lanev) for layer, en, rowv, lanev in trace if en]
    first = {}
    for layer, rowv, lanev in issued:
        first.setdefault(layer, (rowv, lanev))
    last = {layer: (rowv, lanev) for layer, rowv, lanev in issued}
    # First issue: h = 0, pixels w = 0, 1, group 0. L0 issues only the centre tap (both pixels in
    # the image); L1..L3 start at kh = 0, above the image (no row valid); fc runs on row 0.
    assert first == {0: (0b11, 0b1111), 1: (0b00, 0b1111), 2: (0b00, 0b1111), 3: (0b00, 0b1111), 4: (0b01, 0b1111)}
    # ... which differ from the previous layer's last issue where a stale mask would show.
    assert last[0] == (0b11, 0b0111) and last[3] == (0b00, 0b0001)
    # Lane MACs per layer, by hand: valid 3x3 taps of a 4x4 map (sum over pixels) = 10 · 10.
    lane_macs = {}
    for layer, rowv, lanev in issued:
        lane_macs[layer] = lane_macs.get(layer, 0) + bin(rowv).count("1") * bin(lanev).count("1") * cfg.cols
    assert lane_macs == {0: 16 * 27 * 2 * 8,    # pixels · virtual channels · passes · outputs
                         1: 100 * 8 * 4, 2: 100 * 4 * 6,  # L2: 5 outputs on 3 tiles of C = 2 columns
                         3: 100 * 5 * 4, 4: 64 * 6}


# Raster layout: a pixel tile is R consecutive raster positions, so it spans row ends (and, for
# maps narrower than R, several rows); (q, R, C, input shape (C, H, W), hidden channels in, out).
RASTER_CASES = [
    (4, 4, 2, (1, 3, 5), 4, 3),    # W = 5, R = 4: tiles (0,4)(1,0)(1,1)(1,2) pad on both sides
    (4, 4, 2, (2, 2, 7), 8, 4),    # W = 7
    (2, 8, 2, (1, 3, 14), 8, 3),   # W = 14, R = 8 (the ulx3s rows)
    (4, 8, 2, (1, 4, 7), 4, 2),    # W = 7 < R: a tile covers the end of one row and most of the next
    (8, 8, 1, (1, 4, 3), 2, 2),    # W = 3: a tile spans three rows; last tile partial
    (1, 4, 1, (1, 3, 5), 16, 3),   # Q = 1 (XNOR): padded rows must add 0
]


@pytest.mark.parametrize("q, rows, cols, shape, cin, cout", RASTER_CASES)
def test_conv_raster_tiles_across_row_ends(model_builder, accel_run, q, rows, cols, shape, cin, cout):
    cfg = _cfg(q, rows, cols)
    model = model_builder(q, shape, [cin, cout], classes=3, seed=q * 7 + rows + shape[2])
    image = np.random.default_rng(shape[2]).integers(0, 256, size=shape, dtype=np.uint8)
    (logits, layers), = accel_run(model, cfg, [image])[0]
    x = golden.run(model, image[None])
    assert len(np.unique(x.outputs["L1"])) > 1
    for name in ("L0", "L1"):
        assert np.array_equal(layers[name], x.outputs[name][0]), name
    assert np.array_equal(logits, x.logits[0])


@pytest.mark.parametrize("q, rows, cols, shape", [(4, 8, 2, (1, 6, 14)), (2, 8, 1, (1, 5, 11)), (4, 4, 2, (1, 6, 10))])
def test_maxpool_raster_rows_of_any_width(model_builder, accel_run, q, rows, cols, shape):
    # R = 8 vector pool: 4 output words per step, output rows of 7 and 5 words wrap the banks;
    # R = 4 with W_out = 5 (pool fusion off: the pool runs as its own layer); R = 8 also with
    # memory_pipeline 2 (the ulx3s setting)
    cfg = _cfg(q, rows, cols, fuse_pool=False, memory_pipeline=2 if rows == 8 and q == 4 else 0)
    model = model_builder(q, shape, [4, 3], classes=3, seed=rows + shape[2], pool_after=(0,))
    image = np.random.default_rng(q).integers(0, 256, size=shape, dtype=np.uint8)
    (logits, layers), = accel_run(model, cfg, [image])[0]
    x = golden.run(model, image[None])
    for name in ("L0", "P0", "L1"):
        assert np.array_equal(layers[name], x.outputs[name][0]), name
    assert np.array_equal(logits, x.logits[0])


def test_row_valid_of_a_tile_across_a_row_end(model_builder):
    # R = 4, a 2x5 map: hidden layer L1 (4 -> 2 channels: one group, one output tile, 9 cycles a
    # tile). Tile 1 holds raster positions 4..7 = (0,4) (1,0) (1,1) (1,2): row 0 is at the right
    # edge and has no row above, rows 1..3 are in the last row; tile 2 holds (1,3) (1,4) only.
    cfg = _cfg(4, 4, 2)
    model = model_builder(4, (1, 2, 5), [4, 2], classes=3, seed=1)
    image = np.random.default_rng(0).integers(0, 256, size=(1, 2, 5), dtype=np.uint8)
    _, trace = _array_inputs(model, cfg, image)
    l1 = [rowv for layer, en, rowv, _ in trace if en and layer == 1]
    assert len(l1) == 3 * 9
    # taps (kh, kw) row-major; bit r = row r
    assert l1[9:18] == [0b1100, 0b1110, 0b1110,
                        0b1101, 0b1111, 0b1110,
                        0b0001, 0b0001, 0b0000]
    assert l1[18:27] == [0b0011, 0b0011, 0b0001,
                         0b0011, 0b0011, 0b0001,
                         0b0000, 0b0000, 0b0000]


# Pool fusion: a conv followed by a 2x2 max-pool on a map of even width runs as one layer whose
# writer stores the pooled map; its debug dump is compared with the golden model's pool output.
# (q, R, C, input shape (C, H, W), hidden channels in, out, pools after, the layers the program runs)
FUSED_CASES = [
    # 28 wide at R = 8: pair partner 14 pairs back (3 tiles + 2 pairs: slots t-3 / t-4); then 14 wide
    (4, 8, 2, (1, 4, 28), 4, 3, (0, 1), ["L0+P0", "L1+P1", "fc"]),
    # Q = 1 (XNOR, sign codes), 6 wide on R = 4, odd height (the last conv row is dropped); then
    # a 3-wide map: odd width, the pool stays a layer of its own
    (1, 4, 1, (1, 5, 6), 16, 3, (0, 1), ["L0+P0", "L1", "P1", "fc"]),
    # 6 wide on R = 8: tiles span two row ends, partners in the same tile (bypass) and the one
    # before; 36 positions: the last tile is partial
    (2, 8, 2, (1, 6, 6), 8, 3, (0,), ["L0+P0", "L1", "fc"]),
    # 2 wide on R = 8: a tile is four conv rows (two pooled pixels); 3 rows: odd height, partial tile
    (4, 8, 1, (1, 3, 2), 4, 2, (0,), ["L0+P0", "L1", "fc"]),
    # 4 wide on R = 8, then 2 wide on R = 8 with one pooled pixel
    (8, 8, 2, (1, 4, 4), 2, 3, (0, 1), ["L0+P0", "L1+P1", "fc"]),
    # R = 2, C = 1, Q = 8: one pair per tile; 4 wide then 2 wide
    (8, 2, 1, (1, 4, 4), 2, 2, (0, 1), ["L0+P0", "L1+P1", "fc"]),
    # C = 3 on S = 4 lanes: output tiles share words (lane_skip, partial lane enables), 5 outputs
    (4, 4, 3, (2, 4, 8), 8, 5, (0, 1), ["L0+P0", "L1+P1", "fc"]),
    # Q = 2 (S = 8), R = 4: 10 wide (Wo = 5 = 2 tiles + 1 pair); 7 wide stays unfused
    (2, 4, 2, (1, 4, 10), 8, 9, (0,), ["L0+P0", "L1", "fc"]),
    # Q = 4, R = 2, C = 2: 14 wide, 7 rows (odd), then 7 wide (odd: a pool layer of its own)
    (4, 2, 2, (1, 7, 14), 8, 5, (0, 1), ["L0+P0", "L1", "P1", "fc"]),
]


@pytest.mark.parametrize("q, rows, cols, shape, cin, cout, pools, labels", FUSED_CASES)
def test_fused_conv_pool_matches_golden(model_builder, accel_run, q, rows, cols, shape, cin, cout, pools, labels):
    from qjoule.program import encode

    cfg = _cfg(q, rows, cols, max_width=32)
    model = model_builder(q, shape, [cin, cout], classes=3, seed=q * 11 + rows + shape[2], pool_after=pools)
    prog = encode(model, cfg, debug=True)
    assert [plan.label for plan in prog.layers] == labels
    image = np.random.default_rng(shape[2] + rows).integers(0, 256, size=shape, dtype=np.uint8)
    (logits, layers), = accel_run(model, cfg, [image], gap_seed=rows)[0]
    x = golden.run(model, image[None])
    # every layer the program runs is dumped: a fused conv as its pool's output
    dumped = {label.split("+")[-1] for label in labels[:-1]}
    assert set(layers) == dumped
    for name in dumped:
        assert x.outputs[name].size < 8 or len(np.unique(x.outputs[name])) > 1, name  # (else blind to a stuck value)
        assert np.array_equal(layers[name], x.outputs[name][0]), name
    assert np.array_equal(logits, x.logits[0])


def test_fused_and_unfused_programs_give_the_same_codes(model_builder, accel_run):
    # The same network with fusion on and off: the pooled maps and the logits agree, and the fused
    # run skips the pool layers' cycles.
    model = model_builder(4, (1, 6, 12), [4, 4], classes=3, seed=9, pool_after=(0, 1))
    image = np.random.default_rng(2).integers(0, 256, size=(1, 6, 12), dtype=np.uint8)
    runs = {}
    for fuse in (True, False):
        (logits, layers), = (res := accel_run(model, _cfg(4, 4, 2, fuse_pool=fuse), [image]))[0]
        runs[fuse] = (logits, layers, res[2])
    assert set(runs[True][1]) == {"P0", "P1"} and set(runs[False][1]) == {"L0", "P0", "L1", "P1"}
    for name in ("P0", "P1"):
        assert np.array_equal(runs[True][1][name], runs[False][1][name])
    assert np.array_equal(runs[True][0], runs[False][0])
    fused, plain = runs[True][2].layer_cycles, runs[False][2].layer_cycles
    # layers: fused L0+P0, L1+P1, fc; unfused L0, P0, L1, P1, fc. A fused conv costs about its conv.
    assert fused[0][0] <= plain[0][0] + 4 and fused[1][0] <= plain[2][0] + 4
    assert fused[0][0] + fused[1][0] < plain[0][0] + plain[1][0] + plain[2][0] + plain[3][0]


@pytest.mark.parametrize("rows, fuse, fused", [(4, True, True), (4, False, False), (3, True, False), (6, True, False),
                                               (1, True, False), (2, True, True)])
def test_pool_fusion_needs_a_power_of_two_rows_and_the_config_field(rows, fuse, fused):
    from qjoule.program import LAYER_BITS, layer_fields

    cfg = _cfg(4, rows, 2, fuse_pool=fuse)
    assert cfg.pool_fusion == fused
    names = [name for name, _ in layer_fields(cfg)]
    assert ("fused_pool" in names) == fused
    assert sum(bits for _, bits in layer_fields(cfg)) == LAYER_BITS + fused


@pytest.mark.parametrize("qs, rows", [((4, 2, 8, 4), 2), ((2, 4, 2, 4), 4), ((4, 1, 1, 1), 2)])
def test_fused_pool_at_the_output_maps_mode(accel_run, qs, rows):
    # Per-layer modes: a fused conv's pooled map is packed at the next layer's container (out_q),
    # the max taken lane-wise at that width (B1 at mode 4 writing 2-bit codes into 8-bit lanes for C1;
    # 1-bit sign codes behind a 4-bit layer).
    from qjoule.program import encode, variant_for_model
    from qjoule.sw.intmodel import random_model

    model = random_model((1, 8, 8), 10, 1, 8, 4, seed=sum(qs) + rows, q_per_layer=list(qs))
    cfg = variant_for_model("tiny", model).replace(rows=rows)
    prog = encode(model, cfg, debug=True)
    assert [plan.label for plan in prog.layers] == ["A1+A.pool", "B1+B.pool", "C1+C.pool", "fc"]
    images = np.random.default_rng(rows).integers(0, 256, size=(1, 1, 8, 8), dtype=np.uint8)
    (logits, layers), = accel_run(model, cfg, images)[0]
    x = golden.run(model, images)
    assert set(layers) == {"A.pool", "B.pool", "C.pool"}
    for name, codes in layers.items():
        assert np.array_equal(codes, x.outputs[name][0]), name
    assert np.array_equal(logits, x.logits[0])


@pytest.mark.parametrize("pipeline, rows", [(1, 8), (2, 8), (2, 2)])
def test_fused_pool_with_registered_buffer_reads(model_builder, accel_run, pipeline, rows):
    # memory_pipeline (the ulx3s variant's 2): reads come later, the drain waits on skid rows and
    # the fused writer registers its line-buffer read (one more stage). 28 then 14 wide on R = 8
    # (4 line-buffer banks) and R = 2 (one), every dump compared.
    cfg = _cfg(4, rows, 2, max_width=32, memory_pipeline=pipeline)
    model = model_builder(4, (1, 4, 28), [4, 3], classes=3, seed=40 + pipeline, pool_after=(0, 1))
    image = np.random.default_rng(pipeline).integers(0, 256, size=(1, 4, 28), dtype=np.uint8)
    (logits, layers), = accel_run(model, cfg, [image], gap_seed=pipeline)[0]
    x = golden.run(model, image[None])
    assert set(layers) == {"P0", "P1"}
    for name in layers:
        assert np.array_equal(layers[name], x.outputs[name][0]), name
    assert np.array_equal(logits, x.logits[0])
