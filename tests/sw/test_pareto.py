"""Pareto fronts and minimum-energy selection on sets whose answer is known."""

from qjoule.sw.pareto import min_energy_at, pareto_front


def test_front_of_a_known_set():
    #            0     1     2     3     4     5     6
    errors = [0.10, 0.05, 0.05, 0.20, 0.02, 0.08, 0.10]
    energy = [5.0, 10.0, 12.0, 1.0, 50.0, 10.0, 5.0]
    # 4 (0.02, 50) best error; 1 (0.05, 10) beats 2 and dominates 5 (0.08, 10);
    # 0 and 6 are equal points: the first stays; 3 (0.20, 1) least energy.
    assert pareto_front(errors, energy) == [4, 1, 0, 3]


def test_front_trivial_cases():
    assert pareto_front([], []) == []
    assert pareto_front([0.3], [7.0]) == [0]
    assert pareto_front([0.1, 0.2, 0.3], [3.0, 2.0, 1.0]) == [0, 1, 2]
    assert pareto_front([0.1, 0.2, 0.3], [1.0, 2.0, 3.0]) == [0]


def test_min_energy_at_target():
    errors = [0.10, 0.05, 0.05, 0.20, 0.02]
    energy = [5.0, 10.0, 10.0, 1.0, 50.0]
    assert min_energy_at(errors, energy, 0.20) == 3
    assert min_energy_at(errors, energy, 0.19) == 0
    assert min_energy_at(errors, energy, 0.05) == 1        # tie in energy with 2: lower index
    assert min_energy_at(errors, energy, 0.04) == 4
    assert min_energy_at(errors, energy, 0.01) is None
    assert min_energy_at([1 - 0.95], [1.0], 0.05) == 0    # float noise in 1 - accuracy is tolerated
