"""The board top in Icarus, driven over its UART by the real host driver (sim/tb_host.py).

End to end through the serial line at 4 clocks per bit: reset, STATUS, program, weights, images,
logits read back and compared with the golden model, exactly. One WRITE frame is corrupted on the
way (a bit flipped in its payload): the board NAKs it, the driver retries, nothing of the bad
frame reaches the accelerator (the words counted at its input stream are exactly the words sent),
and the results are still exact.
"""

import json

import numpy as np
import pytest

from qjoule.config import variant
from qjoule.sim.runner import run_cocotb
from qjoule.sim.simulate import icarus_time0_safe
from qjoule.sw import golden, intmodel

pytestmark = pytest.mark.rtl

TOPLEVEL = "qjoule_host"
DIVISOR = 4


def _run(tmp_path, *, images, corrupt, width=2, q=4, seed=3, cfg=None, reset_mid_run=False):
    from qjoule.gateware.host_top import HostTop
    from qjoule.hw.verilog import emit_verilog

    cfg = cfg or variant("tiny", q=q)
    model = intmodel.random_model((1, 8, 8), 10, 1, width, q, seed=seed)
    model_path, images_path = tmp_path / "model.qjm", tmp_path / "images.npy"
    intmodel.save(model, model_path)
    np.save(images_path, images)
    verilog = tmp_path / f"{TOPLEVEL}.sim.v"
    verilog.write_text(icarus_time0_safe(emit_verilog(HostTop(cfg, divisor=DIVISOR), TOPLEVEL)))
    (tmp_path / "accel.json").write_text(cfg.to_json())
    case = {"config": str(tmp_path / "accel.json"), "model": str(model_path), "images": str(images_path),
            "divisor": DIVISOR, "corrupt": corrupt, "timeout_cycles": 200_000, "result": str(tmp_path / "tb.json"),
            "reset_mid_run": reset_mid_run}
    (tmp_path / "case.json").write_text(json.dumps(case))
    outcome = run_cocotb(verilog_path=verilog, toplevel=TOPLEVEL, test_module="qjoule.sim.tb_host",
                         build_root=tmp_path / "build", waves=False,
                         extra_env={"QJOULE_TB_CASE": str(tmp_path / "case.json")})
    result = json.loads((tmp_path / "tb.json").read_text())
    return model, cfg, outcome, result


@pytest.mark.parametrize("memory_pipeline, compact", [(0, False), (2, False), (0, True)])
def test_program_images_and_a_corrupted_frame_over_the_uart(tmp_path, memory_pipeline, compact):
    # (memory_pipeline 2, the ULX3S setting, also puts a register stage between the link and the
    # accelerator's input stream; compact_control, the icebreaker's, one whose ready is a flop too)
    images = np.random.default_rng(5).integers(0, 256, size=(2, 1, 8, 8), dtype=np.uint8)
    # writes: 0 RESET, 1 STATUS, 2 the program (one frame), 3 the first image: flip a bit in its
    # 11th byte (payload: pixels of an IMAGE section, which would start a run if it got through)
    cfg = variant("tiny", q=4, memory_pipeline=memory_pipeline, compact_control=compact)
    model, cfg, outcome, result = _run(tmp_path, images=images, corrupt={"frame": 3, "byte": 10}, cfg=cfg)
    assert result["error"] is None, result["error"]
    assert outcome.passed
    expected = golden.run(model, images).logits
    assert np.array_equal(np.array(result["logits"], dtype=np.int64), expected)
    assert len(set(expected[0].tolist())) > 1 and not np.array_equal(expected[0], expected[1])
    # the corrupted frame: one NAK for its CRC, one retry, and not one of its words went in
    assert result["corrupted"] is not None
    assert result["naks"] == {"crc": 1} and result["retried"] == 1 and result["lost"] == 0
    assert result["accel_words"] == result["words_sent"]
    from qjoule.sw.hostlink import config_id
    assert result["status_before"]["config_id"] == config_id(cfg)
    assert result["status_after"]["frames_nak"] == 1
    assert result["status_after"]["frames_ok"] == result["frames"]  # every frame ACKed once in the end
    assert result["framing_errors"] == 0


@pytest.mark.parametrize("memory_pipeline", [0, 2])
def test_reset_while_the_accelerator_runs(tmp_path, memory_pipeline):
    # A RESET frame when half of the first image's words went in, then the program and both
    # images again: exact logits, so no state of the aborted run survived. memory_pipeline 2 (ULX3S) resets the
    # accelerator asynchronously (its own domain), 0 through a synchronous reset.
    images = np.random.default_rng(8).integers(0, 256, size=(2, 1, 8, 8), dtype=np.uint8)
    cfg = variant("tiny", q=4, memory_pipeline=memory_pipeline)
    model, cfg, outcome, result = _run(tmp_path, images=images, corrupt=None, cfg=cfg, reset_mid_run=True)
    assert result["error"] is None, result["error"]
    assert outcome.passed
    # the accelerator had taken the program and half the image when the RESET came
    assert result["reset_after_words"]["taken"] == result["reset_after_words"]["sent"]
    expected = golden.run(model, images).logits
    assert not np.array_equal(expected[0], expected[1])
    assert np.array_equal(np.array(result["logits"], dtype=np.int64), expected)


@pytest.mark.slow
def test_external_weights_and_a_corrupted_answer(tmp_path):
    """Weights of two layers stream in with every image (the image WRITE drains while the run goes
    on); the answer to the first READ is corrupted on its way back, so the driver repeats the READ
    and the board must answer with the same words (and drop them only at the next new frame)."""
    import math

    from qjoule.program import encode

    cfg = variant("tiny", q=4).replace(weight_buffer_bits=128 * 32)
    model = intmodel.random_model((1, 8, 8), 10, 1, 8, 4, seed=2)
    program = encode(model, cfg)
    assert [program.layers[i].name for i in program.external] == ["B1", "C1"]
    images = np.random.default_rng(9).integers(0, 256, size=(2, 1, 8, 8), dtype=np.uint8)
    frames = lambda words: math.ceil(len(words) / 256)  # noqa: E731
    # bytes read before the first READ's answer: RESET and STATUS answers, the program's ACKs,
    # the image's ACKs; corrupt that answer's sequence-number byte
    first_read = 7 + 27 + 7 * frames(program.setup_words) + 7 * frames(program.image_words(images[0]))
    model, cfg, outcome, result = _run(tmp_path, images=images, corrupt={"answer_byte": first_read + 2},
                                       width=8, seed=2, cfg=cfg)
    assert result["error"] is None, result["error"]
    assert outcome.passed
    assert np.array_equal(np.array(result["logits"], dtype=np.int64), golden.run(model, images).logits)
    assert result["corrupted_answer"] is not None
    assert result["lost"] == 1 and result["retried"] == 1 and result["naks"] == {}
    assert result["accel_words"] == result["words_sent"]
