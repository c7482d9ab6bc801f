"""Getting the accuracy back after converting: measure it (:mod:`.fidelity`), start closer to the
original (:mod:`.calibrate`), distil the rest (:mod:`.distill`), on one process or many
(:mod:`.distributed`)."""
