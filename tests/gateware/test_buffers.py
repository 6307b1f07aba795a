"""Activation and wide buffers in the Amaranth simulator: lane writes, halves, bank mapping."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from qjoule.config import AccelConfig
from qjoule.gateware.buffers import ActivationBuffer, PipelinedMemory, WideBuffer, bram_piece_depth
from qjoule.program import layout_codes


def _run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_lane_writes_and_halves():
    cfg = AccelConfig(q=4, datapath=16, rows=2, cols=1, act_buffer_bits=2 * 2 * 8 * 16)
    dut = ActivationBuffer(cfg)
    assert dut.bank_depth == 8
    seen = {}

    async def bench(ctx):
        # bank 0 half 0 addr 3: whole word; bank 1 half 1 addr 3: lanes 1 and 3 only.
        ctx.set(dut.wr_half, 0)
        ctx.set(dut.wr_addr[0], 3)
        ctx.set(dut.wr_data[0], 0x1234)
        ctx.set(dut.wr_en[0], 0b1111)
        await ctx.tick()
        ctx.set(dut.wr_en[0], 0)
        ctx.set(dut.wr_half, 1)
        ctx.set(dut.wr_addr[1], 3)
        ctx.set(dut.wr_data[1], 0xABCD)
        ctx.set(dut.wr_en[1], 0b1010)
        await ctx.tick()
        ctx.set(dut.wr_data[1], 0x5555)
        ctx.set(dut.wr_en[1], 0b0001)
        await ctx.tick()
        ctx.set(dut.wr_en[1], 0)
        for half in (0, 1):
            ctx.set(dut.rd_half, half)
            ctx.set(dut.rd_addr[0], 3)
            ctx.set(dut.rd_addr[1], 3)
            await ctx.tick()
            seen[half] = (ctx.get(dut.rd_data[0]), ctx.get(dut.rd_data[1]))

    _run(dut, bench)
    assert seen[0] == (0x1234, 0)
    assert seen[1] == (0, 0xA0C5)


def test_preloaded_map_reads_by_layout():
    cfg = AccelConfig(q=2, datapath=8, rows=3, cols=1, act_buffer_bits=2 * 3 * 64 * 8)
    codes = np.random.default_rng(0).integers(0, 4, size=(6, 2, 7))
    layout, banks = layout_codes(codes, cfg)
    dut = ActivationBuffer(cfg, init=banks)
    got = {}

    async def bench(ctx):
        ctx.set(dut.rd_half, 0)
        for h in range(2):
            for w0 in range(0, 7 - 2):  # three consecutive columns -> three banks, one cycle
                for g in range(layout.groups):
                    for r in range(3):
                        bank, addr = layout.locate(h, w0 + r, g)
                        ctx.set(dut.rd_addr[bank], addr)
                    await ctx.tick()
                    for r in range(3):
                        bank, _ = layout.locate(h, w0 + r, g)
                        got[h, w0 + r, g] = ctx.get(dut.rd_data[bank])

    _run(dut, bench)
    for (h, w, g), word in got.items():
        for s in range(4):
            assert (word >> (2 * s)) & 3 == (codes[g * 4 + s, h, w] if g * 4 + s < 6 else 0)


def test_wide_buffer():
    dut = WideBuffer(40, 5, init=[1, 2, 3])
    got = []

    async def bench(ctx):
        ctx.set(dut.wr_addr, 4)
        ctx.set(dut.wr_data, (1 << 39) | 7)
        ctx.set(dut.wr_en, 1)
        await ctx.tick()
        ctx.set(dut.wr_en, 0)
        for a in (2, 4):
            ctx.set(dut.rd_addr, a)
            await ctx.tick()
            got.append(ctx.get(dut.rd_data))

    _run(dut, bench)
    assert got == [3, (1 << 39) | 7]


def test_bram_piece_depths_follow_the_dp16kd_geometry():
    # 16k x 1, 8k x 2, 4k x 4 (3-bit lanes too), 2k x 9, 1k x 18 and anything wider
    assert [bram_piece_depth(g) for g in (1, 2, 3, 4, 5, 8, 9, 10, 16, 128)] == \
        [16384, 8192, 4096, 4096, 2048, 2048, 2048, 1024, 1024, 1024]


def test_pipelined_memory_reads_after_its_latency_across_pieces():
    """A read issued every cycle returns, 1 + pipeline cycles later, what a reference memory
    holds, while random lane writes land anywhere, across piece boundaries too (a 2,500-word
    memory: pieces of 2,048 + 452 words at 8-bit lanes, 1,024 + 1,024 + 452 at whole words). A
    write is seen by reads issued the next cycle, or two cycles later with pipeline 2 (its write
    port is registered per piece). An 80-bit word is selected in three slices (36, 36 and 8 bits),
    each by its own copy of the piece select."""
    rng = np.random.default_rng(3)
    depth = 2500

    def word(width):
        return sum(int(rng.integers(0, 1 << 16)) << (16 * k) for k in range(width // 16))

    for width, gran, pipeline, pieces in ((16, 8, 0, 1), (16, 8, 1, 1), (16, 8, 2, 2), (16, 16, 2, 3),
                                          (80, 40, 2, 3)):
        init = [word(width) for _ in range(depth)]
        dut = PipelinedMemory(width, depth, granularity=gran, pipeline=pipeline, init=init)
        assert len(dut.pieces) == pieces
        lanes = width // gran
        # addresses around the piece boundaries, so reads often meet recent writes
        spots = [0, 1, 1023, 1024, 1025, 2047, 2048, 2049, 2499, int(rng.integers(0, depth))]
        ops = [(int(rng.choice(spots)), int(rng.choice(spots)), word(width), int(rng.integers(0, 1 << lanes)))
               for _ in range(400)]
        got = []

        async def bench(ctx):
            for rd_addr, wr_addr, data, en in ops:
                ctx.set(dut.rd_addr, rd_addr)
                ctx.set(dut.wr_addr, wr_addr)
                ctx.set(dut.wr_data, data)
                ctx.set(dut.wr_en, en)
                await ctx.tick()
                got.append(ctx.get(dut.rd_data))
            ctx.set(dut.wr_en, 0)
            for _ in range(pipeline):
                await ctx.tick()
                got.append(ctx.get(dut.rd_data))

        _run(dut, bench)
        write_lag = 2 if pipeline == 2 else 1
        mem, applied, reads = list(init), 0, []
        for k, (rd_addr, _, _, _) in enumerate(ops):
            while applied <= k - write_lag:
                _, wa, wd, we = ops[applied]
                for lane in range(lanes):
                    if we >> lane & 1:
                        mask = ((1 << gran) - 1) << (lane * gran)
                        mem[wa] = (mem[wa] & ~mask) | (wd & mask)
                applied += 1
            reads.append(mem[rd_addr])
        assert got[pipeline:] == reads, (width, gran, pipeline)


# -- SPRAM-backed buffers (act_memory / weight_memory "spram": the SB_SPRAM256KA model) ------------

def test_spram_activation_buffer_matches_a_reference():
    """Random lane writes into the output half while the input half is read, against a dict
    reference: each read returns what the writes left there (nibble masks per lane), whatever
    half the other port writes in the same cycle."""
    import pytest

    from qjoule.config import SPRAM_WORDS

    for q, d in ((4, 16), (8, 16), (16, 16), (4, 8)):
        cfg = AccelConfig(q=q, datapath=d, rows=2, cols=1, act_buffer_bits=2 * 2 * 64 * d, act_memory="spram")
        s = d // q
        rng = np.random.default_rng(q * 100 + d)
        init = [[int(v) for v in rng.integers(0, 1 << d, size=2 * 64)] for _ in range(2)]
        dut = ActivationBuffer(cfg, init=init)
        assert dut.bank_depth == 64 and all(len(halves) == 2 for halves in dut.banks)
        ref = {(b, h, a): int(init[b][h * 64 + a]) for b in range(2) for h in range(2) for a in range(64)}
        ops = []
        for step in range(120):
            rd_half = step // 40 % 2  # the input half; writes go to the other one
            ops.append((rd_half, [int(rng.integers(0, 64)) for _ in range(2)], [int(rng.integers(0, 64)) for _ in range(2)],
                        [int(rng.integers(0, 1 << d)) for _ in range(2)], [int(rng.integers(0, 1 << s)) for _ in range(2)]))
        expected, got = [], []
        for rd_half, rd_addr, wr_addr, wr_data, wr_en in ops:
            expected.append([ref[b, rd_half, rd_addr[b]] for b in range(2)])
            for b in range(2):
                old = ref[b, 1 - rd_half, wr_addr[b]]
                lanes = sum(((1 << q) - 1) << (q * k) for k in range(s) if wr_en[b] >> k & 1)
                ref[b, 1 - rd_half, wr_addr[b]] = (old & ~lanes) | (wr_data[b] & lanes)

        async def bench(ctx):
            for rd_half, rd_addr, wr_addr, wr_data, wr_en in ops:
                ctx.set(dut.rd_half, rd_half)
                ctx.set(dut.wr_half, 1 - rd_half)
                for b in range(2):
                    ctx.set(dut.rd_addr[b], rd_addr[b])
                    ctx.set(dut.wr_addr[b], wr_addr[b])
                    ctx.set(dut.wr_data[b], wr_data[b])
                    ctx.set(dut.wr_en[b], wr_en[b])
                await ctx.tick()
                got.append([ctx.get(dut.rd_data[b]) for b in range(2)])
            # and every word at the end, both halves
            for b in range(2):
                ctx.set(dut.wr_en[b], 0)
            for h in range(2):
                for a in range(64):
                    ctx.set(dut.rd_half, h)
                    for b in range(2):
                        ctx.set(dut.rd_addr[b], a)
                    await ctx.tick()
                    got.append([ctx.get(dut.rd_data[b]) for b in range(2)])

        _run(dut, bench)
        final = [[ref[b, h, a] for b in range(2)] for h in range(2) for a in range(64)]
        assert got == expected + final, (q, d)
    assert SPRAM_WORDS == 16384


def test_spram_config_refusals():
    import pytest

    from qjoule.errors import UserError

    with pytest.raises(UserError, match="act_memory 'spram' needs q a multiple of 4.*q=2"):
        AccelConfig(q=2, datapath=16, rows=1, cols=1, act_buffer_bits=64 * 1024, act_memory="spram")
    with pytest.raises(UserError, match=r"act_memory 'spram'.*32768 words"):
        AccelConfig(q=4, datapath=16, rows=1, cols=1, act_buffer_bits=1024 * 1024, act_memory="spram")
    with pytest.raises(UserError, match="weight_memory 'spram' holds at most 16384 words"):
        AccelConfig(q=4, datapath=16, rows=1, cols=1, weight_buffer_bits=512 * 1024, weight_memory="spram")
    with pytest.raises(UserError, match="act_memory must be one of 'bram', 'spram', got 'dram'"):
        AccelConfig(act_memory="dram")
    # Defaults stay out of the JSON (existing configs keep their config_id); others round-trip.
    assert "act_memory" not in AccelConfig().to_dict()
    cfg = AccelConfig(q=4, datapath=16, rows=1, cols=1, act_buffer_bits=64 * 1024, act_memory="spram",
                      layer_table="words")
    assert AccelConfig.from_dict(cfg.to_dict()) == cfg and cfg.to_dict()["layer_table"] == "words"


def test_spram_wide_buffer_writes_whole_words_and_reads_back():
    """40-bit words over three SPRAMs; a write cycle's read data is not the old word (the
    hardware's is undefined), the next read is."""
    from qjoule.gateware.buffers import SPRAM_WRITE_CYCLE_DATA

    dut = WideBuffer(40, 100, init=[1, 2, 3], memory="spram")
    assert len(dut.memory) == 3
    got = []

    async def bench(ctx):
        ctx.set(dut.rd_addr, 2)
        await ctx.tick()
        got.append(ctx.get(dut.rd_data))
        ctx.set(dut.wr_addr, 99)
        ctx.set(dut.wr_data, (1 << 39) | (0xBEEF << 16) | 7)
        ctx.set(dut.wr_en, 1)
        await ctx.tick()
        got.append(ctx.get(dut.rd_data))
        ctx.set(dut.wr_en, 0)
        for a in (99, 1):
            ctx.set(dut.rd_addr, a)
            await ctx.tick()
            got.append(ctx.get(dut.rd_data))

    _run(dut, bench)
    all_ones = sum(SPRAM_WRITE_CYCLE_DATA << (16 * k) for k in range(3)) & ((1 << 40) - 1)
    assert got == [3, all_ones, (1 << 39) | (0xBEEF << 16) | 7, 2]


def test_spram_is_the_ice40_primitive_on_ice40_and_cannot_be_initialized():
    import gc
    import warnings

    import pytest
    from amaranth.hdl import Instance, UnusedElaboratable

    from qjoule.gateware.buffers import SPRAM, SPRAMModel

    class UP5K:
        device = "iCE40UP5K"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)  # elaborated here, never simulated
        prim, _ = SPRAM().elaborate(UP5K())._named_submodules["spram"]
        assert isinstance(prim, Instance) and prim.type == "SB_SPRAM256KA"
        model, _ = SPRAM().elaborate(None)._named_submodules["model"]  # no platform: the model
        assert isinstance(model, SPRAMModel)
        with pytest.raises(ValueError, match="cannot be initialized"):
            SPRAM(init=[1]).elaborate(UP5K())
        del prim, model
        gc.collect()


@pytest.mark.parametrize("pipeline", [0, 1, 2])
def test_chunked_buffer_reads_whole_words_written_chunk_by_chunk(pipeline):
    """The param buffer: 32-bit chunks written one at a time (any order), the whole 80-bit word
    read back `param_read_latency` cycles after its address (with pipeline 2 each chunk's memory
    has its own registered copy of the address: one cycle more)."""
    from qjoule.config import variant
    from qjoule.gateware.top import ChunkedBuffer

    latency = variant("tiny", 4, memory_pipeline=pipeline).param_read_latency
    assert latency == {0: 1, 1: 2, 2: 4}[pipeline]
    rng = np.random.default_rng(pipeline)
    depth, bits = 40, 80
    dut = ChunkedBuffer(bits, depth, pipeline=pipeline)
    words = [int(rng.integers(0, 1 << 40)) << 40 | int(rng.integers(0, 1 << 40)) for _ in range(depth)]
    order = [(a, k) for a in range(depth) for k in range(3)]
    rng.shuffle(order)
    reads = [int(a) for a in rng.integers(0, depth, size=60)]
    got = []

    async def bench(ctx):
        for a, k in order:
            ctx.set(dut.wr_addr, a)
            ctx.set(dut.wr_data, words[a] >> (32 * k) & 0xFFFF_FFFF)
            ctx.set(dut.wr_en, 1 << k)
            await ctx.tick()
        ctx.set(dut.wr_en, 0)
        for _ in range(3):
            await ctx.tick()
        for a in reads + [0] * latency:
            ctx.set(dut.rd_addr, a)
            await ctx.tick()
            got.append(ctx.get(dut.rd_data))

    _run(dut, bench)
    # the read data after the tick that follows an address's `latency`-th edge
    assert got[latency - 1:latency - 1 + len(reads)] == [words[a] for a in reads]
