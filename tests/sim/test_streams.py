"""The cocotb stream driver/monitor against a real FIFO in Icarus, and the runner's outcome."""

from pathlib import Path

import pytest
from amaranth import Module
from amaranth.back import verilog
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from qjoule.sim.runner import check_simulator, run_cocotb
from qjoule.errors import UserError

HERE = Path(__file__).parent


class _StreamFifo(wiring.Component):
    w: In(stream.Signature(16))
    r: Out(stream.Signature(16))

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = q = fifo.SyncFIFOBuffered(width=16, depth=4)
        m.d.comb += [q.w_data.eq(self.w.payload), q.w_en.eq(self.w.valid), self.w.ready.eq(q.w_rdy),
                     self.r.payload.eq(q.r_data), self.r.valid.eq(q.r_rdy), q.r_en.eq(self.r.ready)]
        return m


@pytest.fixture(scope="module")
def fifo_verilog(tmp_path_factory, yosys_env):
    top = _StreamFifo()
    text = verilog.convert(top, name="stream_fifo", emit_src=False)
    path = tmp_path_factory.mktemp("fifo") / "stream_fifo.v"
    path.write_text(text)
    return path


@pytest.mark.rtl
@pytest.mark.parametrize("seed", [1, 2])
def test_fifo_passes_words_under_backpressure(fifo_verilog, tmp_path, seed):
    outcome = run_cocotb(verilog_path=fifo_verilog, toplevel="stream_fifo", test_module="tb_stream_fifo",
                         build_root=tmp_path, extra_env={"TB_SEED": str(seed)}, python_path=[HERE])
    assert outcome.tests == 1 and outcome.failed == 0, (outcome.build_dir / "sim.log").read_text()[-3000:]


def test_unknown_simulator_is_one_line():
    with pytest.raises(UserError, match="unknown simulator 'modelsim'; expected one of icarus, verilator"):
        check_simulator("modelsim")
