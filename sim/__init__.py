"""qjoule.sim — cocotb testbenches for the generated RTL and activity capture."""
