"""qjoule.hw — turns gateware into artifacts: Verilog, synthesis, reports, bitstreams."""
