"""bench/area_per_q.py: the nextpnr device options it passes are the ones the board build uses."""

from qjoule.hw.boards import board, platform_for


def test_device_options_name_the_package_as_nextpnr_does(load_bench):
    bench = load_bench("area_per_q")
    # (the board build's script: `--85k --package CABGA381`, `--up5k --package sg48`)
    ulx3s, icebreaker = board("ulx3s-85f"), board("icebreaker")
    assert bench.nextpnr_device_args(ulx3s, platform_for(ulx3s, 100.0)) == ["--85k", "--package", "CABGA381"]
    assert bench.nextpnr_device_args(icebreaker, platform_for(icebreaker, 42.0)) == ["--up5k", "--package", "sg48"]
