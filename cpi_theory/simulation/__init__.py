"""cpi_theory.simulation."""
